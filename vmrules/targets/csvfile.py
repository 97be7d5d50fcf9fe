"""Target `csv`: a header row, RFC 3339 timestamps, label cells safe from spreadsheet formulas."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.csv as pacsv

from vmrules.model import ROW_COLUMNS, Target
from vmrules.targets.text import no_formulas, timestamps

KIND = "file"


def write(table: pa.Table, path: str, target: Target) -> None:
    cols = {}
    for name in table.column_names:
        col = table.column(name)
        if name == "timestamp":
            col = timestamps(col)
        elif name not in ROW_COLUMNS:
            col = no_formulas(col)
        cols[name] = col
    pacsv.write_csv(pa.table(cols), path)
