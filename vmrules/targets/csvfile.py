"""Target `csv`: a header row, RFC 3339 timestamps, text cells safe from spreadsheet formulas."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pyarrow.csv as pacsv

from vmrules.model import Target
from vmrules.targets.registry import TargetType
from vmrules.targets.text import no_formulas, timestamps


def _text(table: pa.Table) -> pa.Table:
    """Every text column (rule, metric, labels, severity and label columns alike) with formula cells
    quoted: a series named `=HYPERLINK(...)` is as dangerous in `metric` as in a label."""
    cols = {}
    for name in table.column_names:
        col = table.column(name)
        value_type = col.type.value_type if pa.types.is_dictionary(col.type) else col.type
        if pa.types.is_timestamp(col.type):            # timestamp; start and end of episodes
            col = timestamps(col)
        elif pa.types.is_string(value_type) or pa.types.is_large_string(value_type):
            col = no_formulas(col)
        cols[name] = col
    return pa.table(cols)


class Sink:
    """Rows appended batch by batch; the header comes with the first batch."""

    def __init__(self, path: str, target: Target):
        self.path = path
        self.writer: pacsv.CSVWriter | None = None

    def write(self, table: pa.Table) -> None:
        text = _text(table)
        if self.writer is None:
            self.writer = pacsv.CSVWriter(self.path, text.schema)
        self.writer.write_table(text)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def merge(parts: list[str], path: str, target: Target | None = None) -> None:
    """One CSV from the parts of several rules (the header once; a part with other columns is refused,
    e.g. a file an earlier run wrote before `columns:` changed)."""
    header = None
    with open(path, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                line = f.readline()
                if not line:                  # a part without rows
                    continue
                if header is None:
                    header = line
                    out.write(line)
                elif line != header:
                    raise ValueError(f"its columns {header.decode().strip()} differ from the new rows' "
                                     f"{line.decode().strip()}: give the target a new path (columns: changed)")
                shutil.copyfileobj(f, out, 1 << 20)


def write(table: pa.Table, path: str, target: Target) -> None:
    sink = Sink(path, target)
    sink.write(table)
    sink.close()


TYPE = TargetType("csv", "file", write, description="CSV file with a header row", sink=Sink, merge=merge)
