"""Batches kept on disk (Arrow IPC stream) until a rule has finished, then replayed in order.

Used where a rule's rows must land together but holding them in memory would
grow with the window: SQLite (one transaction per rule and table, taken only
when the rule is done, so rules never hold one database while waiting for
another) and whole-table plugin writers.

The IPC *stream* format, not the file format: each batch carries its own
dictionaries (severities, labels), which change from batch to batch; the file
format refuses a dictionary that changes.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.ipc as ipc


class Spill:
    """Append batches; read them back once."""

    def __init__(self, folder: str, name: str):
        os.makedirs(folder, exist_ok=True)
        fd, self.path = tempfile.mkstemp(prefix=f".{name}.", suffix=".spill", dir=folder)
        self.sink = pa.OSFile(self.path, "wb")
        os.close(fd)
        self.writer: ipc.RecordBatchStreamWriter | None = None
        self.rows = 0
        self.schema: pa.Schema | None = None      # of the first table written, rows or none

    def write(self, table: pa.Table) -> None:
        if self.writer is None:
            self.schema = table.schema
            self.writer = ipc.new_stream(self.sink, table.schema)
        self.writer.write_table(table)
        self.rows += table.num_rows

    def batches(self) -> Iterator[pa.Table]:
        """The tables written, in order (memory-mapped, so they cost no heap)."""
        if self.writer is None:
            return
        self.writer.close()
        self.sink.close()
        with pa.memory_map(self.path) as source:
            for batch in ipc.open_stream(source):
                yield pa.Table.from_batches([batch])

    def table(self) -> pa.Table | None:
        parts = list(self.batches())
        return pa.concat_tables(parts, promote_options="permissive") if parts else None

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.sink.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
