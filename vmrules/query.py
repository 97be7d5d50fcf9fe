"""`vmrules query`: ad-hoc queries without rule files, written as the targets write rows, or previewed."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc

from vmrules.api import query_tables
from vmrules.durations import format_time_ms
from vmrules.errors import Location
from vmrules.fetch.result import FetchError
from vmrules.http import HttpError
from vmrules.model import Datasource, Target
from vmrules.report import series_text
from vmrules.targets.atomic import atomic_path

PREVIEW_ROWS = 20


def run_query(exprs: list[str], url: str, headers: Mapping[str, str], from_ms: int | None, to_ms: int | None,
              step_ms: int, instant: bool, fmt: str, output: str | None, log: Callable[[str], None] | None,
              stdout: IO[bytes]) -> str:
    """Fetch each expression; write every row (csv, jsonl, parquet) or return a preview (table).

    Rows are written batch by batch as they arrive, so memory does not grow with the answer.
    """
    ds = Datasource(url=url if url.startswith("file:") else url.rstrip("/"), headers=dict(headers))
    batches = _batches(exprs, ds, from_ms, to_ms, step_ms, instant, log)
    if fmt == "table":
        if output is None:
            return preview(batches)
        with atomic_path(output) as tmp:
            return preview(_tee(batches, tmp))
    if output is not None:
        with atomic_path(output) as tmp:
            _write(batches, _sink(fmt, tmp))
        return ""
    with tempfile.TemporaryDirectory(prefix="vmrules-query-") as folder:
        path = os.path.join(folder, f"rows.{fmt}")
        _write(batches, _sink(fmt, path))
        with open(path, "rb") as f:
            shutil.copyfileobj(f, stdout)
        stdout.flush()
    return ""


def _sink(fmt: str, path: str) -> Any:
    from vmrules import targets

    sink_type = targets.get(fmt).sink
    assert sink_type is not None
    return sink_type(path, Target("query", fmt, {}, Location("<query>")))


def _batches(exprs: list[str], ds: Datasource, from_ms: int | None, to_ms: int | None, step_ms: int,
             instant: bool, log: Callable[[str], None] | None) -> Iterator[pa.Table]:
    for e in exprs:
        try:
            yield from query_tables(e, ds, start=from_ms, end=to_ms, step=step_ms, instant=instant, log=log)
        except (FetchError, HttpError) as exc:
            raise FetchError(f"query {e!r}: {exc}") from None


def _write(batches: Iterable[pa.Table], sink: Any) -> None:
    try:
        for t in batches:
            if t.num_rows:
                sink.write(t)
    finally:
        sink.close()


def _tee(batches: Iterable[pa.Table], path: str) -> Iterator[pa.Table]:
    """The batches, also written as CSV to `path` on their way to the preview."""
    sink = _sink("csv", path)
    try:
        for t in batches:
            if t.num_rows:
                sink.write(t)
            yield t
    finally:
        sink.close()


def preview(tables: Iterable[pa.Table], limit: int = PREVIEW_ROWS) -> str:
    """The first rows as an aligned table, then how many rows and series there are in all."""
    rows: list[tuple[str, str, str]] = []
    total, series = 0, set[str]()
    for t in tables:
        total += t.num_rows
        keys = pc.binary_join_element_wise(*(t.column(c).cast(pa.string()) for c in ("rule", "metric", "labels")),
                                           "\x00")
        series.update(pc.unique(keys).to_pylist())
        for r in t.slice(0, max(0, limit - len(rows))).to_pylist():
            stamp = format_time_ms(int(r["timestamp"].timestamp() * 1000))
            rows.append((stamp, series_text(r["metric"], json.loads(r["labels"])), repr(r["value"])))
    if not total:
        return "no series in the window (check the metric and label names)"
    head = ("timestamp", "series", "value")
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(3)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [head, *rows]]
    if total > len(rows):
        lines.append(f"... {total - len(rows)} more")
    lines.append(f"{total} rows, {len(series)} series")
    return "\n".join(lines)
