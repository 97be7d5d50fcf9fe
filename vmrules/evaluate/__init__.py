"""From samples to rows: valid, where, thresholds with their alert state (alertstate.py), episodes, routes
(rows.py). Light to import: numpy and pyarrow load with rows.py, not here."""
