"""The library in a few calls: fetch a query into an Arrow table, evaluate a rule on a table, write a table.

(`load_ruleset`, `validate_paths` and `apply` are the other entry points.) Every
call goes through the same code as `vmrules apply`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vmrules.durations import format_time_ms, parse_duration_ms, parse_time_ms
from vmrules.errors import UsageError
from vmrules.evaluate import Evaluation, evaluate, series_keys
from vmrules.fetch.result import QueryResult
from vmrules.http import Env, rule_env
from vmrules.model import Datasource, Rule, Target
from vmrules.run import ApplyOptions, Output, rule_batches
from vmrules.validate import rule_template_context
from vmrules.window import rule_window

Time = int | str | datetime | None     # unix ms, "now-1h", RFC 3339, unix seconds as text, or a datetime


def query_tables(query: str, datasource: str | Datasource, *, start: Time = None, end: Time = None,
                 step: str | int = "1m", instant: bool = False, env: Mapping[str, str] | None = None,
                 log: Callable[[str], None] | None = None) -> Iterator[pa.Table]:
    """The query's answer as row tables (the columns every target receives), batch by batch.

    `rule` holds the query text; severity is null and alert false (no thresholds).
    Default window: the hour before `end` (default now).
    """
    now = int(time.time() * 1000)
    end_ms = _ms(end, now) if end is not None else now
    start_ms = _ms(start, now) if start is not None else end_ms - 3_600_000
    step_ms = step if isinstance(step, int) else parse_duration_ms(step)
    if start_ms > end_ms:
        raise UsageError("the window's start is later than its end")
    ds = Datasource(url=datasource.rstrip("/") if not datasource.startswith("file:") else datasource) \
        if isinstance(datasource, str) else datasource
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


def _ms(t: Time, now: int) -> int:
    if isinstance(t, datetime):
        return int(t.timestamp() * 1000)
    if isinstance(t, int):
        return t
    return parse_time_ms(str(t), now)


def evaluate_table(rule: Rule, table: pa.Table, targets: Mapping[str, Target]) -> Evaluation:
    """Evaluate a rule on rows you already have (columns metric, labels as JSON, timestamp, value).

    Returns the rule's row table (`.table`, with severities) and the rows per target (`.routed`).
    Rows need not be sorted; a series is a (metric, labels) pair.
    """
    return evaluate(rule, rows_to_result(table), targets)


def rows_to_result(table: pa.Table) -> QueryResult:
    """Row-table columns back into series and samples, sorted by (series, timestamp)."""
    missing = [c for c in ("metric", "labels", "timestamp", "value") if c not in table.column_names]
    if missing:
        raise ValueError(f"the table lacks the column(s) {', '.join(missing)}")
    keys = series_keys(table)
    series = []
    for key in keys.dictionary.to_pylist():
        name, _, text = key.partition("\x00")
        lab = json.loads(text) if text else {}
        series.append({"__name__": name, **lab} if name else lab)
    sid = keys.indices.to_numpy(zero_copy_only=False).astype(np.int32)
    ts = table.column("timestamp").cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64()).to_numpy()
    val = table.column("value").cast(pa.float64()).to_numpy()
    order = np.lexsort((ts, sid))
    return QueryResult(series, sid[order], ts[order], val[order])


def write_table(table: pa.Table, target: Target, output_dir: str = ".", *, rule: str = "python",
                env: Mapping[str, str] | None = None, log: Callable[[str], None] | None = None) -> Output:
    """Write rows to one target the way `apply` does (file atomically, one SQLite transaction, or a delivery).

    Templates see `rule.name` = `rule` and a run of now; file paths stay inside `output_dir`.
    """
    from vmrules import targets
    from vmrules.plugins import kind_of
    from vmrules.targets.atomic import atomic_path
    from vmrules.targets.service import Delivery
    from vmrules.templates import check_table_name, confine, render

    now = datetime.now(UTC)
    ms = int(now.timestamp() * 1000)
    run = {"id": f"{now:%Y%m%d_%H%M%S}_python", "stamp": f"{now:%Y%m%d_%H%M%S}", "started_at": format_time_ms(ms),
           "from": format_time_ms(ms), "to": format_time_ms(ms)}
    ctx = rule_template_context(Rule(name=rule, query="", location=None), run, target)  # type: ignore[arg-type]
    kind, writer = kind_of(target.type), targets.get(target.type)
    rows = _columns(table, target.columns) if target.options.get("columns") else table
    if kind == "service":
        n = writer.write(Delivery(target, rows, table, ctx, 60_000, rule_env(env),
                                  log or (lambda _m: None)))
        return Output(target.name, target.type, str(target.options.get("url", "")), None, int(n), "service")
    path = confine(output_dir, render(target.options["path"], ctx))
    if kind == "database":
        name = check_table_name(render(target.options["table"], ctx))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return Output(target.name, target.type, path, name, writer.write(rows, path, name, rule, target), kind)
    with atomic_path(path) as tmp:
        writer.write(rows, tmp, target)
    return Output(target.name, target.type, path, None, rows.num_rows, "file")


def _columns(table: pa.Table, names: tuple[str, ...]) -> pa.Table:
    """The target's columns; a name the table lacks is a label, read from the `labels` JSON."""
    cols = {}
    for name in names:
        if name in table.column_names:
            cols[name] = table.column(name)
            continue
        encoded = pc.dictionary_encode(table.column("labels").cast(pa.string())).combine_chunks()
        values = [json.loads(x).get(name, "") for x in encoded.dictionary.to_pylist()]
        cols[name] = pa.array(values, pa.string()).take(encoded.indices)
    return pa.table(cols)


def make_target(type_: str, name: str = "target", **options: Any) -> Target:
    """A target built in Python, e.g. make_target("csv", path="out.csv"): the keys of YAML, checked by the schema."""
    from vmrules.errors import Location
    from vmrules.schema import is_valid, validator

    doc = {"version": 1, "targets": {name: {"type": type_, **options}}}
    if not is_valid(doc):
        from jsonschema.exceptions import best_match

        error = best_match(validator().iter_errors(doc))
        where = ".".join(str(p) for p in error.absolute_path)
        raise ValueError(f"{where}: {error.message}")
    return Target(name, type_, options, Location("<python>"))
