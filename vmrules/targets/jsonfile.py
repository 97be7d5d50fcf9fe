"""Targets `json` (one array of row objects) and `jsonl` (one object per line).

Timestamps are RFC 3339 strings; NaN and infinities, which JSON lacks, are the
strings "NaN", "+Inf" and "-Inf", as in the Prometheus API.
"""

from __future__ import annotations

import os
import shutil

import pyarrow as pa

from vmrules.model import Target
from vmrules.targets.registry import TargetType
from vmrules.targets.text import json_rows

_OPEN, _CLOSE, _SEP = b"[\n", b"\n]\n", b",\n"


class LinesSink:
    """JSON lines, appended batch by batch."""

    def __init__(self, path: str, target: Target):
        self.f = open(path, "wb")  # noqa: SIM115 - closed in close()

    def write(self, table: pa.Table) -> None:
        for buf in json_rows(table, "\n"):
            self.f.write(memoryview(buf))

    def close(self) -> None:
        self.f.close()


class ArraySink:
    """One JSON array, appended batch by batch: every row ends with `,\\n`; the last one is cut at close."""

    def __init__(self, path: str, target: Target):
        self.f = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.f.write(_OPEN)
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        for buf in json_rows(table, ",\n"):
            self.f.write(memoryview(buf))
        self.rows += table.num_rows

    def close(self) -> None:
        if self.rows:
            self.f.seek(-len(_SEP), os.SEEK_END)
            self.f.truncate()
        self.f.write(_CLOSE if self.rows else b"]\n")
        self.f.close()


def merge_lines(parts: list[str], path: str, target: Target | None = None) -> None:
    with open(path, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)


def merge_arrays(parts: list[str], path: str, target: Target | None = None) -> None:
    """One array from the arrays of several rules, copied without parsing."""
    with open(path, "wb") as out:
        out.write(_OPEN)
        first = True
        for part in parts:
            size = os.path.getsize(part)
            if size <= len(_OPEN) + len(b"]\n"):
                continue                                  # an empty array
            if not first:
                out.write(_SEP)
            with open(part, "rb") as f:
                f.seek(len(_OPEN))
                left = size - len(_OPEN) - len(_CLOSE)
                while left > 0:
                    block = f.read(min(left, 1 << 20))
                    out.write(block)
                    left -= len(block)
            first = False
        out.write(b"\n]\n" if not first else b"]\n")


def write_json(table: pa.Table, path: str, target: Target) -> None:
    sink = ArraySink(path, target)
    sink.write(table)
    sink.close()


def write_jsonl(table: pa.Table, path: str, target: Target) -> None:
    sink = LinesSink(path, target)
    sink.write(table)
    sink.close()


JSON = TargetType("json", "file", write_json, description="JSON file holding one array of rows", sink=ArraySink,
                  merge=merge_arrays)
JSONL = TargetType("jsonl", "file", write_jsonl, description="JSON lines, one row per line", sink=LinesSink,
                   merge=merge_lines)
