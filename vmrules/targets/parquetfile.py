"""Target `parquet`: timestamp[ms, UTC], dictionary-encoded strings, snappy by default."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from vmrules.model import Target

KIND = "file"


def write(table: pa.Table, path: str, target: Target) -> None:
    codec = target.options.get("compression", "snappy")
    pq.write_table(table, path, compression=None if codec == "none" else codec)
