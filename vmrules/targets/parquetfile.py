"""Target `parquet`: timestamp[ms, UTC], dictionary-encoded strings, snappy by default, one row group per batch."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from vmrules.model import Target
from vmrules.targets.registry import TargetType


class Sink:
    """A Parquet file written row group by row group, so memory does not grow with the window."""

    def __init__(self, path: str, target: Target):
        self.path = path
        self.compression = _codec(target.options.get("compression", "snappy"))
        self.writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> None:
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema, compression=self.compression,
                                           **writer_options(table.schema))
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def merge(parts: list[str], path: str, target: Target | None = None) -> None:
    """One Parquet file from the parts of several rules, row group by row group."""
    codec = _codec(target.options.get("compression", "snappy") if target else "snappy")
    writer: pq.ParquetWriter | None = None
    try:
        for part in parts:
            f = pq.ParquetFile(part)
            if writer is None:
                writer = pq.ParquetWriter(path, f.schema_arrow, compression=codec, **writer_options(f.schema_arrow))
            for i in range(f.num_row_groups):
                writer.write_table(f.read_row_group(i))
    finally:
        if writer is not None:
            writer.close()


def writer_options(schema: pa.Schema) -> dict[str, list[str]]:
    """Dictionaries for every column but floats (values seldom repeat); min/max statistics for the
    columns a reader filters on by range (timestamp, value, alert), none for the label strings.

    Measured on W1's 1.44 M rows: 0.18 s -> 0.09 s per file, the same size.
    """
    plain = {f.name for f in schema if pa.types.is_floating(f.type)}
    ranged = {f.name for f in schema if not (pa.types.is_string(f.type) or pa.types.is_dictionary(f.type))}
    return {"use_dictionary": [f.name for f in schema if f.name not in plain],
            "write_statistics": [f.name for f in schema if f.name in ranged]}


def _codec(name: str) -> str | None:
    return None if name == "none" else name


def write(table: pa.Table, path: str, target: Target) -> None:
    sink = Sink(path, target)
    sink.write(table)
    sink.close()


TYPE = TargetType("parquet", "file", write, description="Parquet file (a row group per batch)", sink=Sink, merge=merge)
