"""`vmrules query`: ad-hoc queries without rule files, written as the targets write rows, or previewed."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc

from vmrules.commands.apply import ApplyOptions, rule_batches
from vmrules.delivery.atomic import atomic_path
from vmrules.durations import Time, format_time_ms, parse_duration_ms, time_ms
from vmrules.errors import Location, UsageError
from vmrules.evaluate.rows import evaluate, series_keys
from vmrules.model import ROW_COLUMNS, Datasource, Rule, Target, partition_problems, series_text
from vmrules.net.http import Env, HttpError, variables
from vmrules.sources import normalize_url, url_problem
from vmrules.sources.result import FetchError
from vmrules.window import rule_window

PREVIEW_ROWS = 20



def query_tables(query: str, datasource: str | Datasource, *, start: Time = None, end: Time = None,
                 step: str | int = "1m", instant: bool = False, env: Mapping[str, str] | None = None,
                 log: Callable[[str], None] | None = None) -> Iterator[pa.Table]:
    """The query's answer as row tables (the columns every target receives), batch by batch.

    `rule` holds the query text; severity is null and alert false (no thresholds).
    Default window: the hour before `end` (default now).
    """
    now = int(time.time() * 1000)
    end_ms = time_ms(end, now) if end is not None else now
    start_ms = time_ms(start, now) if start is not None else end_ms - 3_600_000
    step_ms = step if isinstance(step, int) else parse_duration_ms(step)
    if start_ms > end_ms:
        raise UsageError("the window's start is later than its end")
    ds = Datasource(url=normalize_url(datasource)) if isinstance(datasource, str) else datasource
    rule = Rule(name=query, query=query, location=None, step_ms=step_ms, instant=instant)  # type: ignore[arg-type]
    window = rule_window(rule, start_ms, end_ms)
    options = ApplyOptions(env=Env(os.environ if env is None else env))   # the caller's own headers: trusted
    for batch in rule_batches(rule, ds, window, options, log or (lambda _m: None)):
        yield evaluate(rule, batch, {}).table


def fetch_table(query: str, datasource: str | Datasource, *, start: Time = None, end: Time = None,
          step: str | int = "1m", instant: bool = False, env: Mapping[str, str] | None = None) -> pa.Table:
    """The query's answer as one row table (see `query_tables`); FetchError when it cannot be had."""
    tables = list(query_tables(query, datasource, start=start, end=end, step=step, instant=instant, env=env))
    return pa.concat_tables(tables, promote_options="permissive").combine_chunks()




def run_query(exprs: list[str], url: str, headers: Mapping[str, str], from_ms: int | None, to_ms: int | None,
              step_ms: int, instant: bool, fmt: str, output: str | None, log: Callable[[str], None] | None,
              stdout: IO[bytes], partition_by: Sequence[str] = ()) -> str:
    """Fetch each expression; write every row (csv, jsonl, parquet) or return a preview (table). With
    `partition_by`, the rows are added to the Parquet dataset whose folder `output` names.

    Rows are written batch by batch as they arrive, so memory does not grow with the answer.
    """
    if why := url_problem(url):
        raise UsageError(f"--datasource {why}")
    for name, value in headers.items():
        for var in variables(value):
            if var not in os.environ:
                raise UsageError(f"-H {name}: environment variable {var} is not set")
    ds = Datasource(url=normalize_url(url), headers=dict(headers))
    if partition_by:
        assert output is not None and fmt == "parquet"
        if problems := partition_problems(tuple(partition_by), ROW_COLUMNS, "timestamp"):
            raise UsageError(f"--partition-by {partition_by[problems[0][0]]}: {problems[0][1]}")
        if os.path.lexists(output) and not os.path.isdir(output):
            raise UsageError(f"-o {output} is a file; --partition-by adds a dataset's files to a folder")
    batches = _batches(exprs, ds, from_ms, to_ms, step_ms, instant, log)
    if partition_by:
        assert output is not None
        _write_dataset(batches, output, tuple(partition_by), log or (lambda _m: None))
        return ""
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


def _write_dataset(batches: Iterable[pa.Table], root: str, keys: tuple[str, ...], log: Callable[[str], None]) -> None:
    """The rows into a dataset's folder, through a hidden folder beside it; each file renamed into place."""
    from vmrules.delivery.outputs import commit, place_dataset
    from vmrules.delivery.state import Rename, remove_files
    from vmrules.targets.parquetfile import DatasetSink, dataset

    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(root))}.", suffix=".query", dir=parent)
    renames: list[Rename] = []
    try:
        part = os.path.join(work, "rows.parquet")
        target = Target("query", "parquet", {"partition_by": list(keys)}, Location("<query>"))
        _write(batches, DatasetSink(part, target))         # more than 1,024 partitions refused as it goes
        made = os.path.join(work, "dataset")
        files = dataset([part] if os.path.exists(part) else [], made, target)
        stamp = f"{datetime.now(UTC):%Y%m%d_%H%M%S}_{uuid.uuid4().hex[:6]}"     # queries at once never meet
        place_dataset(made, files, root, f"part-{stamp}_query", renames, lambda _ready: None)
        commit(renames, log)
    except BaseException:
        remove_files(r.ready for r in renames)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _sink(fmt: str, path: str) -> Any:
    from vmrules.targets import registry

    sink_type = registry.get(fmt).sink
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
        keys = pc.binary_join_element_wise(t.column("rule").cast(pa.string()), series_keys(t).cast(pa.string()),
                                           "\x00")                  # a series per expression
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
