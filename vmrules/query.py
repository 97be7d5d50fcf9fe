"""`vmrules query`: ad-hoc queries without rule files, written as the targets write rows, or previewed."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from typing import IO

import pyarrow as pa

from vmrules.api import query_tables
from vmrules.durations import format_time_ms
from vmrules.errors import Location
from vmrules.fetch.result import FetchError
from vmrules.http import HttpError
from vmrules.model import Datasource, Target
from vmrules.targets.atomic import atomic_path

PREVIEW_ROWS = 20


def run_query(exprs: list[str], url: str, headers: Mapping[str, str], from_ms: int | None, to_ms: int | None,
              step_ms: int, instant: bool, fmt: str, output: str | None, log: Callable[[str], None] | None,
              stdout: IO[bytes]) -> str:
    """Fetch each expression; write every row (csv, jsonl, parquet) or return a preview (table)."""
    ds = Datasource(url=url if url.startswith("file:") else url.rstrip("/"), headers=dict(headers))
    tables = _tables(exprs, ds, from_ms, to_ms, step_ms, instant, log)
    if fmt == "table":
        return preview(tables if output is None else _tee(tables, output))
    target = Target("query", fmt, {}, Location("<query>"))
    from vmrules import targets

    sink_type = targets.get(fmt).sink
    assert sink_type is not None
    if output is not None:
        with atomic_path(output) as tmp:
            _write(tables, sink_type(tmp, target))
        return ""
    with tempfile.TemporaryDirectory(prefix="vmrules-query-") as folder:
        path = os.path.join(folder, f"rows.{fmt}")
        _write(tables, sink_type(path, target))
        with open(path, "rb") as f:
            shutil.copyfileobj(f, stdout)
        stdout.flush()
    return ""


def _tables(exprs: list[str], ds: Datasource, from_ms: int | None, to_ms: int | None, step_ms: int,
            instant: bool, log: Callable[[str], None] | None) -> list[pa.Table]:
    out: list[pa.Table] = []
    for e in exprs:
        try:
            out += query_tables(e, ds, start=from_ms, end=to_ms, step=step_ms, instant=instant, log=log)
        except (FetchError, HttpError) as exc:
            raise FetchError(f"query {e!r}: {exc}") from None
    return out


def _write(tables: list[pa.Table], sink: object) -> None:
    try:
        for t in tables:
            if t.num_rows:
                sink.write(t)  # type: ignore[attr-defined]
    finally:
        sink.close()  # type: ignore[attr-defined]


def _tee(tables: list[pa.Table], output: str) -> list[pa.Table]:
    """The preview's rows, also written whole to `output` as CSV."""
    from vmrules.targets.csvfile import Sink

    with atomic_path(output) as tmp:
        _write(tables, Sink(tmp, Target("query", "csv", {}, Location("<query>"))))
    return tables


def preview(tables: list[pa.Table], limit: int = PREVIEW_ROWS) -> str:
    """The first rows as an aligned table, then how many rows and series there are in all."""
    rows: list[tuple[str, str, str]] = []
    total, series = 0, set[tuple[str, str, str]]()
    for t in tables:
        total += t.num_rows
        keys = zip(t.column("rule").to_pylist(), t.column("metric").to_pylist(), t.column("labels").to_pylist(),
                   strict=True)
        series.update(keys)
        for r in t.slice(0, max(0, limit - len(rows))).to_pylist():
            labels = ", ".join(f"{k}={json.dumps(v)}" for k, v in json.loads(r["labels"]).items())
            stamp = format_time_ms(int(r["timestamp"].timestamp() * 1000))
            rows.append((stamp, f"{r['metric']}{{{labels}}}", repr(r["value"])))
    if not total:
        return "no series in the window (check the metric and label names)"
    head = ("timestamp", "series", "value")
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(3)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [head, *rows]]
    if total > len(rows):
        lines.append(f"... {total - len(rows)} more")
    lines.append(f"{total} rows, {len(series)} series")
    return "\n".join(lines)
