"""Evaluation of rules: rule files with tests (tests/cases/rules/) run by the product's test runner; counts,
routes and columns on answers given in the same notation."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from vmrules import load_ruleset, run_tests
from vmrules.cli import main
from vmrules.commands.test import TestResult as Outcome  # (a Test* name would be collected)
from vmrules.commands.test import format_results, query_result
from vmrules.config.notation import parse_series, parse_values
from vmrules.errors import Location
from vmrules.evaluate.rows import evaluate
from vmrules.model import InputSeries, RuleSet, RuleTest
from vmrules.sources.result import QueryResult

CASES = Path(__file__).parent / "cases" / "rules"
RULE_FILES = sorted(p for p in CASES.glob("*.yaml") if p.name != "targets.yaml")
STEP_MS = 60_000


def declared(path: Path) -> list[str]:
    return [t["name"] for t in yaml.safe_load(path.read_text())["tests"]]


@pytest.fixture(scope="module")
def results() -> list[Outcome]:
    return run_tests(load_ruleset([str(CASES)]))[0]


@pytest.mark.parametrize("path", RULE_FILES, ids=[p.stem for p in RULE_FILES])
def test_rule_file(results: list[Outcome], path: Path) -> None:
    """Every test the file holds ran, and passed."""
    mine = [r for r in results if Path(r.test.location.path).resolve() == path.resolve()]
    assert [r.test.name for r in mine] == declared(path)
    assert all(r.ok for r in mine), format_results(mine)


def test_vmrules_test_runs_them_all() -> None:
    assert RULE_FILES
    res = CliRunner().invoke(main, ["test", str(CASES)])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[-1] == f"{sum(len(declared(p)) for p in RULE_FILES)} test(s), 0 failed"


def test_a_broken_expectation_fails(tmp_path: Path) -> None:
    """The rule-file tests can fail: one expected severity changed, and the runner reports that row."""
    shutil.copytree(CASES, tmp_path / "rules")
    broken = tmp_path / "rules" / "for.yaml"
    right = "        - {time: 2m, instance: a, severity: critical, alert: true}\n"
    broken.write_text(broken.read_text().replace(right, right.replace("critical", "warning"), 1))
    res = CliRunner().invoke(main, ["test", str(tmp_path / "rules")])
    assert res.exit_code == 1
    failed = [line for line in res.output.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1 and failed[0].startswith("FAIL  for_waits_until_held_long_enough  ")
    assert "- expected, not received: {time=2m, instance=a, severity=warning, alert=True}" in res.output
    assert "+ received, not expected: {time=2m, instance=a, severity=critical, alert=True}" in res.output
    assert res.output.splitlines()[-1].endswith(" test(s), 1 failed")


def ruleset(tmp_path: Path, rule: dict[str, Any], targets: dict[str, Any] | None = None) -> RuleSet:
    doc = {"version": 1, "targets": targets or {"t": {"type": "csv", "path": "t.csv"}},
           "rules": [{"name": "r", "query": "m", "step": "1m", "route": [{"to": "t"}], **rule}]}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(doc))
    return load_ruleset([str(tmp_path)])


def answer(*series: tuple[str, str]) -> QueryResult:
    """A query's answer as a rule test gives it: (series, values), value i at i minutes."""
    inputs = tuple(InputSeries(parse_series(s), tuple(parse_values(v))) for s, v in series)
    return query_result(RuleTest("", "", STEP_MS, inputs, {}, Location("<test>")), STEP_MS)


def test_counts_and_routes(tmp_path: Path) -> None:
    rs = ruleset(tmp_path, {
        "valid": {"max": 100}, "where": 'env != "dev"',
        "thresholds": [{"severity": "critical", "above": 90}, {"severity": "warning", "above": 50}],
        "route": [{"when": 'severity == "critical"', "to": ["crit", "both"]},
                  {"when": "alert", "to": "both"}, {"to": "all"}]},
        targets={n: {"type": "csv", "path": f"{n}.csv"} for n in ("crit", "both", "all")})
    res = answer(('m{instance="a", env="prod"}', "10 60 95 200 NaN"), ('m{instance="b", env="dev"}', "95 95"))
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
    ev = evaluate(rs.rules[0], answer(('m{instance="a"}', "1.5")), rs.targets)
    assert ev.routed["t"].column_names == ["value", "instance", "team", "zone", "metric"]
    assert ev.routed["t"].to_pylist() == [{"value": 1.5, "instance": "a", "team": "db", "zone": "", "metric": "m"}]


def test_empty_result(tmp_path: Path) -> None:
    rs = ruleset(tmp_path, {"thresholds": [{"above": 1, "for": "5m"}], "where": "value > 0"})
    ev = evaluate(rs.rules[0], QueryResult.empty(), rs.targets)
    assert ev.routed["t"].num_rows == 0 and ev.routed["t"].schema.names[0] == "rule"


def test_labels_json_sorted_without_name(tmp_path: Path) -> None:
    rs = ruleset(tmp_path, {"labels": {"b": "2"}})
    ev = evaluate(rs.rules[0], answer(('m{instance="x", a="q\\"uote"}', "1")), rs.targets)
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
