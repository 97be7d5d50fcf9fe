"""Prometheus query API answers (JSON) into a QueryResult, without a Python object per sample.

The matrix fast path finds each series' `"values":[...]` region with bytes
searches, turns all regions into `,T,V` lines with one `bytes.translate`, and
reads them with pyarrow's CSV reader. Anything it does not recognise falls back
to `json.loads`, so the fast path only decides speed, never the answer.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from vmrules.sources.result import FetchError, QueryResult, check_unique, series_labels
from vmrules.sources.stream import MatrixStream, NotCompact

if TYPE_CHECKING:
    from vmrules.window import Window


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
    """The bytes-level parse of a whole answer; None when the layout is not the compact one servers write."""
    stream = MatrixStream(batch_bytes=None)
    try:
        stream.feed(body)
        batches, envelope = stream.finish()
    except NotCompact:
        return None
    return finish_matrix(batches, envelope)


def finish_matrix(batches: list[QueryResult], envelope: dict[str, Any]) -> QueryResult:
    """Check the envelope of a streamed answer and join its batches into one result."""
    data = check_envelope(envelope)
    if data.get("resultType") != "matrix":
        raise FetchError(f"expected a matrix (range query) answer, got resultType {data.get('resultType')!r}")
    if not batches:
        return QueryResult.empty()
    if len(batches) == 1:
        return sort_samples(batches[0])
    offsets = np.cumsum([0] + [len(b.labels) for b in batches[:-1]])
    return sort_samples(QueryResult([lab for b in batches for lab in b.labels],
                               np.concatenate([b.series_id + off for b, off in zip(batches, offsets, strict=True)]),
                               np.concatenate([b.ts_ms for b in batches]),
                               np.concatenate([b.values for b in batches])))


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
            labels.append(series_labels(series["metric"]))
            points = series["values"] if rtype == "matrix" else [series["value"]]
            ids += [i] * len(points)
            ts += [float(p[0]) for p in points]
            vals += [float(p[1]) for p in points]
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise FetchError(f"malformed series in the answer: {type(exc).__name__}: {exc}") from None
    check_unique(labels)
    ts_ms = np.round(np.asarray(ts, np.float64) * 1000.0).astype(np.int64)
    out = QueryResult(labels, np.asarray(ids, np.int32), ts_ms, np.asarray(vals, np.float64))
    return sort_samples(out)


def sort_samples(r: QueryResult) -> QueryResult:
    """Samples ordered by (series, timestamp), one per (series, timestamp): of repeated
    timestamps in a series, the one that comes last in the answer."""
    if len(r.ts_ms) > 1:
        d = np.diff(r.ts_ms)
        same = np.diff(r.series_id) == 0
        if np.all(d[same] > 0) and np.all(np.diff(r.series_id) >= 0):
            return r
        order = np.lexsort((r.ts_ms, r.series_id))      # stable: repeats keep the answer's order
        r.series_id, r.ts_ms, r.values = r.series_id[order], r.ts_ms[order], r.values[order]
        later = (np.diff(r.ts_ms) == 0) & (np.diff(r.series_id) == 0)
        if later.any():
            keep = np.append(~later, True)
            r.series_id, r.ts_ms, r.values = r.series_id[keep], r.ts_ms[keep], r.values[keep]
    return r


def within(r: QueryResult, window: Window) -> QueryResult:
    """Only the samples inside the window the request asked for (a server may send others)."""
    ts = r.ts_ms
    if len(ts) and (ts.min() < window.start_ms or ts.max() > window.end_ms):
        keep = (ts >= window.start_ms) & (ts <= window.end_ms)
        r.series_id, r.ts_ms, r.values = r.series_id[keep], ts[keep], r.values[keep]
    return r
