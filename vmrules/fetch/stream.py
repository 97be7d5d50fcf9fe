"""Parse a query_range answer while it arrives, complete series at a time, in bounded memory.

The answer is fed in chunks; whenever enough bytes of complete series have
gathered, they are parsed in one go (bytes searches, one `translate`, one
pyarrow CSV read) and handed out as a QueryResult batch, and their bytes are
dropped. Series never span batches, so each batch can be evaluated on its own.
Any layout other than the compact one servers write raises NotCompact, and the
caller reads the answer whole instead.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from vmrules.fetch.result import FetchError, QueryResult, label_key

BATCH_BYTES = 4 << 20
_RESULT = b'"result":['
_METRIC = b'{"metric":'
_VALUES = b',"values":['
_TO_LINES = bytes.maketrans(b"]", b"\n")
_CSV_READ = pacsv.ReadOptions(column_names=["_", "t", "v"], block_size=1 << 24)
_CSV_CONVERT = pacsv.ConvertOptions(include_columns=["t", "v"], column_types={"t": pa.float64(), "v": pa.float64()},
                                    null_values=[], strings_can_be_null=False)


class NotCompact(Exception):
    """The answer is not in the compact matrix layout (or not a matrix at all)."""


class MatrixStream:
    """Feed bytes of a query_range answer; get QueryResult batches of complete series."""

    def __init__(self, batch_bytes: int | None = BATCH_BYTES):
        self.batch_bytes = batch_bytes
        self.buf = bytearray()
        self.head: bytes | None = None      # the answer up to the result array
        self.trailer: bytearray | None = None   # the answer after it
        self.seen: set[tuple[tuple[str, str], ...]] = set()
        self.series = 0

    def feed(self, chunk: bytes) -> list[QueryResult]:
        """Take more bytes; return the batches they completed (often none)."""
        if self.trailer is not None:          # past the result array: only the envelope's tail is left
            self.trailer += chunk
            return []
        self.buf += chunk
        if self.head is None:
            at = self.buf.find(_RESULT)
            if at < 0:
                if len(self.buf) > (1 << 20):
                    raise NotCompact("no result array in the first MiB")
                return []
            self.head = bytes(self.buf[:at + len(_RESULT) - 1])
            del self.buf[:at + len(_RESULT)]
        if self.trailer is None and self.batch_bytes is not None and len(self.buf) >= self.batch_bytes:
            return self._drain()
        return []

    def finish(self) -> tuple[list[QueryResult], dict[str, Any]]:
        """The last batches and the answer's envelope (checked by the caller)."""
        if self.head is None:
            raise NotCompact("no result array")
        out = self._drain() if self.trailer is None else []
        if self.trailer is None:
            raise NotCompact("the result array does not end")
        try:
            envelope = json.loads(self.head + b"[]" + bytes(self.trailer))
        except ValueError as exc:
            raise NotCompact(f"invalid JSON around the result array: {exc}") from None
        return out, envelope

    def raw(self) -> bytes:
        """Every byte fed so far, while no batch has been taken out (for a fallback parse)."""
        return (self.head + b"[" if self.head is not None else b"") + bytes(self.buf)

    def _drain(self) -> list[QueryResult]:
        metrics, regions, counts, used = self._scan()
        del self.buf[:used]
        return [self._build(metrics, regions, counts)] if metrics else []

    def _scan(self) -> tuple[list[bytes], list[bytes | bytearray], list[int], int]:
        """Complete series at the start of the buffer; sets the trailer when the array ends."""
        buf, pos = self.buf, 0
        metrics: list[bytes] = []
        regions: list[bytes | bytearray] = [b""]
        counts: list[int] = []
        while True:
            if buf[pos:pos + 1] == b"]" and not metrics and pos == 0:
                self.trailer = bytearray(buf[1:])
                return metrics, regions, counts, len(buf)
            if len(buf) - pos < len(_METRIC):
                return metrics, regions, counts, pos
            if not buf.startswith(_METRIC, pos):
                raise NotCompact(f"unexpected bytes at a series start: {bytes(buf[pos:pos + 20])!r}")
            vpos = buf.find(_VALUES, pos)
            rend = buf.find(b"]]", vpos) if vpos >= 0 else -1
            if rend < 0 or len(buf) < rend + 4:
                return metrics, regions, counts, pos
            if buf[rend + 2:rend + 3] != b"}":
                raise NotCompact("unexpected bytes after a series' values")
            metrics.append(bytes(buf[pos + len(_METRIC):vpos]))
            region = buf[vpos + len(_VALUES):rend + 1]
            regions.append(region)
            counts.append(region.count(b"]"))
            pos = rend + 3
            sep = buf[pos:pos + 1]
            if sep == b",":
                pos += 1
            elif sep == b"]":
                self.trailer = bytearray(buf[pos + 1:])
                return metrics, regions, counts, len(buf)
            else:
                raise NotCompact("unexpected bytes between series")

    def _build(self, metrics: list[bytes], regions: list[bytes | bytearray], counts: list[int]) -> QueryResult:
        try:
            labels = [json.loads(m) for m in metrics]
        except ValueError as exc:
            raise NotCompact(f"series labels are not JSON: {exc}") from None
        for lab in labels:
            key = label_key(lab)
            if key in self.seen:
                raise FetchError(f"the answer holds the series {dict(key)} twice (duplicate label set)")
            self.seen.add(key)
        total = sum(counts)
        series_id = np.repeat(np.arange(len(labels), dtype=np.int32), counts)
        if total == 0:
            return QueryResult(labels, series_id, np.empty(0, np.int64), np.empty(0, np.float64))
        text = b",".join(regions).translate(_TO_LINES, b'["')
        try:
            table = pacsv.read_csv(io.BytesIO(text), read_options=_CSV_READ, convert_options=_CSV_CONVERT)
        except pa.ArrowInvalid as exc:
            raise NotCompact(f"values are not numbers: {exc}") from None
        if table.num_rows != total:
            raise NotCompact("values and timestamps do not pair up")
        ts_ms = np.round(table.column("t").to_numpy() * 1000.0).astype(np.int64)
        self.series += len(labels)
        return QueryResult(labels, series_id, ts_ms, table.column("v").to_numpy())
