"""The library in a few calls: fetch a query into an Arrow table, evaluate a rule on a table, write a table.

(`load_ruleset`, `validate_paths` and `apply` are the other entry points.) Every
call goes through the same code as `vmrules apply`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vmrules.commands.apply import Output, destination, new_run
from vmrules.evaluate.rows import Evaluation, evaluate, series_keys
from vmrules.model import Rule, Target
from vmrules.net.http import rule_env
from vmrules.sources.result import QueryResult
from vmrules.window import Window


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
    """Write rows to one target the way `apply` does (file atomically, one database transaction, or a delivery).

    Templates see `rule.name` = `rule` and a run of now; file paths stay inside `output_dir`.
    """
    from vmrules.delivery.atomic import atomic_path
    from vmrules.targets.registry import get
    from vmrules.targets.service import Delivery

    now = datetime.now(UTC)
    ms = int(now.timestamp() * 1000)
    d = destination(Rule(name=rule, query="", location=None), target, new_run(now, "python"),  # type: ignore[arg-type]
                    Window(ms, ms, 60_000), output_dir)
    writer = get(target.type)
    rows = _columns(table, target.columns) if target.options.get("columns") else table
    if d.kind == "service":
        n = writer.write(Delivery(target, rows, table, d.context, 60_000, rule_env(env), log or (lambda _m: None)))
        return Output(target.name, target.type, str(target.options.get("url", "")), None, int(n), "service")
    if d.kind == "database":
        if os.path.isabs(d.path):     # a database file (a server's DSN is not a path)
            os.makedirs(os.path.dirname(d.path), exist_ok=True)
        return Output(target.name, target.type, d.path, d.table,
                      writer.write(rows, d.path, d.table, rule, target, env=rule_env(env)), d.kind)
    with atomic_path(d.path) as tmp:
        writer.write(rows, tmp, target)
    return Output(target.name, target.type, d.path, None, rows.num_rows, "file")


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
    from vmrules.config.schema import is_valid, validator
    from vmrules.errors import Location

    doc = {"version": 1, "targets": {name: {"type": type_, **options}}}
    if not is_valid(doc):
        from jsonschema.exceptions import best_match

        error = best_match(validator().iter_errors(doc))
        if error is None:           # the fast check cannot judge this schema; jsonschema found nothing wrong
            return Target(name, type_, options, Location("<python>"))
        where = ".".join(str(p) for p in error.absolute_path)
        raise ValueError(f"{where}: {error.message}")
    return Target(name, type_, options, Location("<python>"))
