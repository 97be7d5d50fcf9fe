"""Prometheus query API answers (JSON) into a QueryResult, without a Python object per sample.

The matrix fast path finds each series' `"values":[...]` region with bytes
searches, turns all regions into `,T,V` lines with one `bytes.translate`, and
reads them with pyarrow's CSV reader. Anything it does not recognise falls back
to `json.loads`, so the fast path only decides speed, never the answer.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from vmrules.fetch.result import FetchError, QueryResult, check_unique

_RESULT = b'"result":['
_METRIC = b'{"metric":'
_VALUES = b',"values":['
_TO_LINES = bytes.maketrans(b"]", b"\n")
_CSV_READ = pacsv.ReadOptions(column_names=["_", "t", "v"], block_size=1 << 24)
_CSV_CONVERT = pacsv.ConvertOptions(include_columns=["t", "v"], column_types={"t": pa.float64(), "v": pa.float64()},
                                    null_values=[], strings_can_be_null=False)


def parse_answer(body: bytes, expect: str) -> QueryResult:
    """Parse a query or query_range answer; `expect` is "matrix" or "vector"."""
    if expect == "matrix":
        fast = _fast_matrix(body)
        if fast is not None:
            return fast
    return _slow(_load_json(body), expect)


def check_envelope(doc: Any) -> dict[str, Any]:
    """The `data` of a successful answer; FetchError for errors, partial answers and odd shapes."""
    if not isinstance(doc, dict):
        raise FetchError("the answer is not a JSON object")
    status = doc.get("status")
    if status == "error":
        raise FetchError(f"{doc.get('errorType', 'error')}: {doc.get('error', 'no message')}")
    if status != "success":
        raise FetchError(f"unexpected status {status!r} in the answer")
    if doc.get("isPartial"):
        raise FetchError("the answer is partial (isPartial: true): some storage nodes did not answer")
    if doc.get("warnings"):
        raise FetchError(f"the answer carries warnings (possibly partial): {'; '.join(map(str, doc['warnings']))}")
    data = doc.get("data")
    if not isinstance(data, dict) or "result" not in data:
        raise FetchError("the answer has no data.result")
    return data


def _load_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:
        snippet = body[:120].decode("utf-8", "replace").strip()
        raise FetchError(f"the answer is not valid JSON ({exc}); it starts with {snippet!r}") from None


def _fast_matrix(body: bytes) -> QueryResult | None:
    """The bytes-level parse; None when the layout is not the compact one servers write."""
    start = body.find(_RESULT)
    if start < 0:
        return None
    pos = start + len(_RESULT)
    metrics: list[bytes] = []
    regions: list[bytes] = [b""]
    counts: list[int] = []
    n = len(body)
    if pos < n and body[pos:pos + 1] == b"]":
        end = pos + 1
    else:
        while True:
            if not body.startswith(_METRIC, pos):
                return None
            vpos = body.find(_VALUES, pos)
            if vpos < 0:
                return None
            metrics.append(body[pos + len(_METRIC):vpos])
            rstart = vpos + len(_VALUES)
            rend = body.find(b"]]", rstart)
            if rend < 0 or body[rend + 2:rend + 3] != b"}":
                return None
            region = body[rstart:rend + 1]
            regions.append(region)
            counts.append(region.count(b"]"))
            pos = rend + 3
            sep = body[pos:pos + 1]
            if sep == b",":
                pos += 1
            elif sep == b"]":
                end = pos + 1
                break
            else:
                return None
    envelope = _load_json(body[:start + len(_RESULT) - 1] + b"[]" + body[end:])
    data = check_envelope(envelope)
    if data.get("resultType") != "matrix":
        raise FetchError(f"expected a matrix (range query) answer, got resultType {data.get('resultType')!r}")
    try:
        labels = [json.loads(m) for m in metrics]
    except ValueError:
        return None
    check_unique(labels)
    total = sum(counts)
    if total == 0:
        return QueryResult(labels, np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.float64),
                           warnings=_warnings(envelope))
    text = b",".join(regions).translate(_TO_LINES, b'["')
    try:
        table = pacsv.read_csv(io.BytesIO(text), read_options=_CSV_READ, convert_options=_CSV_CONVERT)
    except pa.ArrowInvalid:
        return None
    if table.num_rows != total:
        return None
    t = table.column("t").to_numpy()
    ts_ms = np.round(t * 1000.0).astype(np.int64)
    values = table.column("v").to_numpy()
    series_id = np.repeat(np.arange(len(labels), dtype=np.int32), counts)
    return _sorted(QueryResult(labels, series_id, ts_ms, values, warnings=_warnings(envelope)))


def _slow(doc: Any, expect: str) -> QueryResult:
    """The general parse through json.loads, for any layout and for instant answers."""
    data = check_envelope(doc)
    rtype = data.get("resultType")
    result = data["result"]
    if rtype == "scalar":
        rtype, result = "vector", [{"metric": {}, "value": result}]
    if rtype not in ("matrix", "vector"):
        raise FetchError(f"unsupported resultType {rtype!r}")
    if expect == "matrix" and rtype != "matrix":
        raise FetchError(f"expected a matrix (range query) answer, got resultType {rtype!r}")
    labels, ids, ts, vals = [], [], [], []
    try:
        for i, series in enumerate(result):
            labels.append({str(k): str(v) for k, v in series["metric"].items()})
            points = series["values"] if rtype == "matrix" else [series["value"]]
            ids += [i] * len(points)
            ts += [float(p[0]) for p in points]
            vals += [float(p[1]) for p in points]
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise FetchError(f"malformed series in the answer: {type(exc).__name__}: {exc}") from None
    check_unique(labels)
    ts_ms = np.round(np.asarray(ts, np.float64) * 1000.0).astype(np.int64)
    out = QueryResult(labels, np.asarray(ids, np.int32), ts_ms, np.asarray(vals, np.float64),
                      warnings=_warnings(doc))
    return _sorted(out)


def _warnings(doc: dict[str, Any]) -> list[str]:
    return [str(w) for w in doc.get("warnings") or []]


def _sorted(r: QueryResult) -> QueryResult:
    """Samples ordered by (series, timestamp), as evaluation needs."""
    if len(r.ts_ms) > 1:
        d = np.diff(r.ts_ms)
        same = np.diff(r.series_id) == 0
        if np.all(d[same] > 0) and np.all(np.diff(r.series_id) >= 0):
            return r
        order = np.lexsort((r.ts_ms, r.series_id))
        r.series_id, r.ts_ms, r.values = r.series_id[order], r.ts_ms[order], r.values[order]
    return r
