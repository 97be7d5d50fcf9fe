"""Evaluation of rules on given samples: YAML cases, routes, columns."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from vmrules import load_ruleset
from vmrules.evaluate.rows import evaluate
from vmrules.model import RuleSet
from vmrules.sources.result import QueryResult

CASES = yaml.safe_load((Path(__file__).parent / "cases" / "evaluate.yaml").read_text())
STEP_MS = 60_000


def ruleset(tmp_path: Path, rule: dict[str, Any], targets: dict[str, Any] | None = None) -> RuleSet:
    doc = {"version": 1, "targets": targets or {"t": {"type": "csv", "path": "t.csv"}},
           "rules": [{"name": "r", "query": "m", "step": "1m", "route": [{"to": "t"}], **rule}]}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(doc))
    return load_ruleset([str(tmp_path)])


def result(series: list[dict[str, Any]]) -> QueryResult:
    labels, ids, ts, vals = [], [], [], []
    for i, s in enumerate(series):
        labels.append({"__name__": "m", **s["labels"]})
        for j, text in enumerate(s["values"].split()):
            if text == "_":
                continue
            ids.append(i)
            ts.append(j * STEP_MS)
            vals.append(float(text.replace("Inf", "inf")))
    return QueryResult(labels, np.asarray(ids, np.int32), np.asarray(ts, np.int64), np.asarray(vals, np.float64))


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(tmp_path: Path, case: dict[str, Any]) -> None:
    rs = ruleset(tmp_path, case["rule"])
    ev = evaluate(rs.rules[0], result(case["series"]), rs.targets)
    rows = ev.routed["t"].to_pylist()
    for s in case["series"]:
        mine = f'"instance":"{s["labels"]["instance"]}"'
        got = {r["timestamp"].timestamp() * 1000: r for r in rows if mine in r["labels"]}
        outcome = []
        for j, text in enumerate(s["values"].split()):
            if text == "_":
                outcome.append("_")
            elif j * STEP_MS not in got:
                outcome.append("drop")
            else:
                row = got[j * STEP_MS]
                assert (row["severity"] is not None) == row["alert"]
                outcome.append(row["severity"] or "-")
        assert " ".join(outcome) == s["expect"]


def test_counts_and_routes(tmp_path: Path) -> None:
    rs = ruleset(tmp_path, {
        "valid": {"max": 100}, "where": 'env != "dev"',
        "thresholds": [{"severity": "critical", "above": 90}, {"severity": "warning", "above": 50}],
        "route": [{"when": 'severity == "critical"', "to": ["crit", "both"]},
                  {"when": "alert", "to": "both"}, {"to": "all"}]},
        targets={n: {"type": "csv", "path": f"{n}.csv"} for n in ("crit", "both", "all")})
    res = result([{"labels": {"instance": "a", "env": "prod"}, "values": "10 60 95 200 NaN"},
                  {"labels": {"instance": "b", "env": "dev"}, "values": "95 95"}])
    ev = evaluate(rs.rules[0], res, rs.targets)
    c = ev.counts
    assert (c.series, c.samples, c.invalid, c.filtered, c.alerts) == (2, 7, 2, 2, 2)
    assert c.by_severity == {"critical": 1, "warning": 1}
    assert ev.routed["crit"].num_rows == 1
    assert ev.routed["both"].num_rows == 2          # a row reaches a target once
    assert ev.routed["all"].num_rows == 3


def test_columns_select_and_expand_labels(tmp_path: Path) -> None:
    rs = ruleset(tmp_path, {"labels": {"team": "db"}, "route": [{"to": "t"}]},
                 targets={"t": {"type": "csv", "path": "t.csv", "columns": ["value", "instance", "team", "zone",
                                                                           "metric"]}})
    ev = evaluate(rs.rules[0], result([{"labels": {"instance": "a"}, "values": "1.5"}]), rs.targets)
    assert ev.routed["t"].column_names == ["value", "instance", "team", "zone", "metric"]
    assert ev.routed["t"].to_pylist() == [{"value": 1.5, "instance": "a", "team": "db", "zone": "", "metric": "m"}]


def test_empty_result(tmp_path: Path) -> None:
    rs = ruleset(tmp_path, {"thresholds": [{"above": 1, "for": "5m"}], "where": "value > 0"})
    ev = evaluate(rs.rules[0], QueryResult.empty(), rs.targets)
    assert ev.routed["t"].num_rows == 0 and ev.routed["t"].schema.names[0] == "rule"


def test_labels_json_sorted_without_name(tmp_path: Path) -> None:
    rs = ruleset(tmp_path, {"labels": {"b": "2"}})
    ev = evaluate(rs.rules[0], result([{"labels": {"instance": "x", "a": 'q"uote'}, "values": "1"}]), rs.targets)
    assert ev.table.column("labels").to_pylist() == ['{"a":"q\\"uote","b":"2","instance":"x"}']
    assert ev.table.column("metric").to_pylist() == ["m"]
    assert not math.isnan(ev.table.column("value").to_pylist()[0])


def test_a_run_leaves_no_reference_cycles(tmp_path: Path) -> None:
    """Cycles would keep each batch's arrays alive until a collection (and the CLI collects rarely)."""
    import gc

    from tests.conftest import file_rules
    from tests.support.data import END_S
    from vmrules.commands.apply import ApplyOptions, apply
    folder = file_rules(tmp_path, "targets: {p: {type: parquet, path: a.parquet}, c: {type: csv, path: a.csv}}\n"
                                  "rules: [{name: r, query: cpu_usage, range: 4h, valid: {max: 100}, where: "
                                  "'env == \"prod\"', thresholds: [{above: 60, for: 2m}], "
                                  "route: [{to: p}, {when: alert, to: c}]}]\n")
    rs = load_ruleset([str(folder)])
    options = ApplyOptions(output_dir=str(tmp_path / "o"), to_ms=END_S * 1000)
    apply(rs, options)
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        assert apply(rs, options).ok
        gc.collect()
        kinds = sorted({type(o).__name__ for o in gc.garbage})
        assert gc.garbage == [], kinds
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was:
            gc.enable()
