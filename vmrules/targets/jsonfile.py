"""Targets `json` (one array of row objects) and `jsonl` (one object per line).

Timestamps are RFC 3339 strings; NaN and infinities, which JSON lacks, are the
strings "NaN", "+Inf" and "-Inf", as in the Prometheus API.
"""

from __future__ import annotations

import pyarrow as pa

from vmrules.model import Target
from vmrules.targets.text import json_rows

KIND = "file"


def write_json(table: pa.Table, path: str, target: Target) -> None:
    with open(path, "wb") as f:
        f.write(b"[\n")
        prev = None
        for buf in json_rows(table, ",\n"):
            if prev is not None:
                f.write(memoryview(prev))
            prev = buf
        if prev is not None:
            f.write(memoryview(prev)[:-2])
            f.write(b"\n")
        f.write(b"]\n")


def write_jsonl(table: pa.Table, path: str, target: Target) -> None:
    with open(path, "wb") as f:
        for buf in json_rows(table, "\n"):
            f.write(memoryview(buf))
