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
import os
import re
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from vmrules.sources.result import FetchError, QueryResult, label_key, series_labels

BATCH_BYTES = 4 << 20
_RESULT = b'"result":['
_METRIC = b'{"metric":'
_VALUES = b',"values":['
_CLOSE = ord("]")
_TO_LINES = bytes.maketrans(b"]", b"\n")
_CSV_READ = pacsv.ReadOptions(column_names=["_", "t", "v"], block_size=1 << 24)
# The quotes are gone by then (translate deletes them): a parser that does not look for them is ~25 % faster.
_CSV_PARSE = pacsv.ParseOptions(quote_char=False)
_CSV_CONVERT = pacsv.ConvertOptions(include_columns=["t", "v"], column_types={"t": pa.float64(), "v": pa.float64()},
                                    null_values=[], strings_can_be_null=False)


class NotCompact(Exception):
    """The answer is not in the compact matrix layout (or not a matrix at all)."""


class MatrixStream:
    """Feed bytes of a query_range answer; get QueryResult batches of complete series."""

    def __init__(self, batch_bytes: int | None = BATCH_BYTES):
        self.batch_bytes = batch_bytes
        self.buf = bytearray()
        self.envelope = _Envelope()
        self.head: bytes | None = None      # the answer up to the result array
        self.trailer: bytearray | None = None   # the answer after it
        self.close = -1                     # where in `buf` the result array ended
        self.seen: set[tuple[tuple[str, str], ...]] = set()
        self.series = 0

    def feed(self, chunk: bytes) -> list[QueryResult]:
        """Take more bytes; return the batches they completed (often none)."""
        if self.trailer is not None:          # past the result array: only the envelope's tail is left
            self.trailer += chunk
            return []
        self.buf += chunk
        if self.head is None:
            at = self.envelope.find_result(self.buf)
            if at < 0:
                if len(self.buf) > (1 << 20):
                    raise NotCompact("no data.result array in the first MiB")
                return []
            self.head = bytes(self.buf[:at])
            del self.buf[:at + 1]
        if self.trailer is None and self.batch_bytes is not None and len(self.buf) >= self.batch_bytes:
            return self._drain()
        return []

    def finish(self) -> tuple[list[QueryResult], dict[str, Any]]:
        """The last batches and the answer's envelope (checked by the caller)."""
        if self.head is None:
            raise NotCompact("no result array")
        out: list[QueryResult] = []
        if self.trailer is None:            # nothing is cut from `buf` here: a fallback may need it all
            metrics, regions, counts, _ = self._scan()
            if self.trailer is None:
                raise NotCompact("the result array does not end")
            out = [self._build(metrics, regions, counts)] if metrics else []
        mark = os.urandom(8).hex()         # stands for the array cut out; no answer can know it
        try:
            envelope = json.loads(self.head + f'"{mark}"'.encode() + bytes(self.trailer))
        except ValueError as exc:
            raise NotCompact(f"invalid JSON around the result array: {exc}") from None
        data = envelope.get("data") if isinstance(envelope, dict) else None
        if not isinstance(data, dict) or data.get("result") != mark:    # e.g. a second "data" key, which wins
            raise NotCompact("the array cut out is not the answer's data.result")
        data["result"] = []
        self.buf = bytearray()              # parsed and checked: no fallback will need it
        return out, envelope

    def raw(self) -> bytes:
        """Every byte fed so far, while no batch has been handed out (for a fallback parse)."""
        if self.head is None:
            return bytes(self.buf)
        if self.trailer is None:
            return self.head + b"[" + bytes(self.buf)
        return self.head + b"[" + bytes(self.buf[:self.close + 1]) + bytes(self.trailer)

    def _drain(self) -> list[QueryResult]:
        """Complete series out of `buf` as one batch; bytes leave `buf` only in a batch handed out."""
        metrics, regions, counts, used = self._scan()
        if not metrics:
            return []
        out = [self._build(metrics, regions, counts)]
        del self.buf[:used]
        return out

    def _scan(self) -> tuple[list[bytes], list[bytes | bytearray], list[int], int]:
        """Complete series at the start of the buffer; sets the trailer when the array ends."""
        buf, pos = self.buf, 0
        metrics: list[bytes] = []
        regions: list[bytes | bytearray] = [b""]
        counts: list[int] = []
        while True:
            if buf[pos:pos + 1] == b"]" and not metrics and pos == 0:
                self.trailer, self.close = bytearray(buf[1:]), 0
                return metrics, regions, counts, len(buf)
            if len(buf) - pos < len(_METRIC):
                return metrics, regions, counts, pos
            if not buf.startswith(_METRIC, pos):
                raise NotCompact(f"unexpected bytes at a series start: {bytes(buf[pos:pos + 20])!r}")
            vpos = buf.find(_VALUES, pos)
            start = vpos + len(_VALUES)
            if vpos < 0 or len(buf) < start + 3:
                return metrics, regions, counts, pos
            if buf[start] == _CLOSE:                  # "values":[] - a series without points
                rend = start - 1
            else:
                # The first `]]` ends the values, and `}` must follow. (Looking for `]]}` is faster, but then
                # what comes between an earlier `]]` and it is read as points: keys after the values can
                # be made to parse as numbers.)
                rend = buf.find(b"]]", start)
                if rend < 0 or len(buf) < rend + 4:
                    return metrics, regions, counts, pos
            if buf[rend + 2:rend + 3] != b"}":
                raise NotCompact("unexpected bytes after a series' values")
            metrics.append(bytes(buf[pos + len(_METRIC):vpos]))
            region = buf[start:rend + 1]
            if region:
                regions.append(region)
            counts.append(region.count(b"]"))
            pos = rend + 3
            sep = buf[pos:pos + 1]
            if sep == b",":
                pos += 1
            elif sep == b"]":
                self.trailer, self.close = bytearray(buf[pos + 1:]), pos
                return metrics, regions, counts, len(buf)
            else:
                raise NotCompact("unexpected bytes between series")

    def _build(self, metrics: list[bytes], regions: list[bytes | bytearray], counts: list[int]) -> QueryResult:
        try:
            labels = [series_labels(json.loads(m)) for m in metrics]
        except ValueError as exc:
            raise NotCompact(f"series labels are not JSON: {exc}") from None
        for lab in labels:
            key = label_key(lab)
            if key in self.seen:
                raise FetchError(f"the answer holds the series {dict(key)} twice (duplicate label set)")
            self.seen.add(key)
        total = sum(counts)
        self.series += len(labels)
        series_id = np.repeat(np.arange(len(labels), dtype=np.int32), counts)
        if total == 0:
            return QueryResult(labels, series_id, np.empty(0, np.int64), np.empty(0, np.float64))
        text = b",".join(regions).translate(_TO_LINES, b'["')
        try:
            table = pacsv.read_csv(io.BytesIO(text), read_options=_CSV_READ, parse_options=_CSV_PARSE,
                                   convert_options=_CSV_CONVERT)
        except pa.ArrowInvalid as exc:
            raise NotCompact(f"values are not numbers: {exc}") from None
        if table.num_rows != total:
            raise NotCompact("values and timestamps do not pair up")
        ts_ms = np.round(table.column("t").to_numpy() * 1000.0).astype(np.int64)
        return QueryResult(labels, series_id, ts_ms, table.column("v").to_numpy())


# A JSON token that matters for the structure: a string (keys among them) or a punctuation mark.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\]:,]', re.S)
_KEY_PATH = [b'"data"', b'"result"']


class _Envelope:
    """Follows the JSON structure of the answer's start to the array at data.result.

    A `"result":[` elsewhere (say in a `stats` object before `data`) is passed over. The
    answer's start is a few dozen bytes, so this costs nothing; it is read once, where it
    was left off, however it arrives in chunks.
    """

    def __init__(self) -> None:
        self.pos = 0                         # bytes followed so far
        self.keys: list[bytes | None] = []   # per open container: the key being read (None: an array)
        self.want_key = False

    def find_result(self, buf: bytearray) -> int:
        """Where data.result's `[` is in `buf` (-1: not yet)."""
        while (at := buf.find(_RESULT, self.pos)) >= 0:
            bracket = at + len(_RESULT) - 1
            self._follow(buf, bracket)
            if self.keys == _KEY_PATH and not self.want_key:
                return bracket
        return -1

    def _follow(self, buf: bytearray, end: int) -> None:
        keys = self.keys
        for m in _TOKEN.finditer(buf, self.pos, end):
            tok = m.group()
            if tok == b"{":
                keys.append(b"")
                self.want_key = True
            elif tok == b"[":
                keys.append(None)
            elif tok in (b"}", b"]"):
                if keys:
                    keys.pop()
            elif tok == b":":
                self.want_key = False
            elif tok == b",":
                self.want_key = bool(keys) and keys[-1] is not None
            elif self.want_key and keys:
                keys[-1] = tok
        self.pos = end
