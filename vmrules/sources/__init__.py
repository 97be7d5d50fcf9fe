"""Where samples come from: a Prometheus-compatible query API (prometheus.py over transport.py, answers
parsed while they arrive by stream.py/parse.py) and VictoriaMetrics export files (exportfile.py); both give
QueryResult batches (result.py)."""
