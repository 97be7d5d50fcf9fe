"""`vmrules test`: the value notation, the runner's diffs, JUnit XML, coverage, and agreement with apply."""

from __future__ import annotations

import json
import math
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from vmrules.cli import main
from vmrules.commands.apply import ApplyOptions, apply
from vmrules.commands.test import query_result, run_tests
from vmrules.config.notation import NotationError, parse_series, parse_values
from vmrules.config.validate import load_ruleset, validate_paths

RULES = """version: 1
targets:
  alerts: {type: csv, path: alerts.csv, columns: [rule, timestamp, severity]}
  all: {type: parquet, path: all.parquet}
rules:
  - name: cpu
    query: cpu
    step: 1m
    valid: {min: 0, max: 100}
    where: 'env == "prod"'
    thresholds:
      - {severity: critical, above: 90, for: 2m}
      - {severity: warning, above: 80}
    route:
      - {when: alert, to: alerts}
      - {when: 'severity == "critical"', to: all}
  - name: other
    query: other
    route: [{to: all}]
"""
PASSING = """version: 1
tests:
  - name: critical after two minutes
    rule: cpu
    input:
      - series: 'cpu{instance="a", env="prod"}'
        values: '50 85 95x2 _ 95'
      - series: 'cpu{instance="b", env="dev"}'
        values: '99x6'
    expect:
      alerts:
        - {time: 1m, severity: warning, instance: a}
        - {time: 2m, severity: warning}
        - {time: 3m, severity: warning}
        - {time: 4m, severity: critical, value: 95}
        - {time: 6m, severity: warning}
      all: {count: 1, severities: {critical: 1}}
"""


def folder(tmp_path: Path, tests: str, rules: str = RULES) -> Path:
    d = tmp_path / "rules"
    d.mkdir(exist_ok=True)
    (d / "r.yaml").write_text(rules)
    (d / "r_test.yaml").write_text(tests)
    return d


@pytest.mark.parametrize("text, values", [
    ("1 2 3", [1, 2, 3]),
    ("50+10x3", [50, 60, 70, 80]),
    ("10-2.5x2", [10, 7.5, 5]),
    ("95x2", [95, 95, 95]),
    ("-1x1", [-1, -1]),
    ("_ stale 1 _x2", [None, None, 1, None, None]),
    ("1e3 Inf -Inf", [1000, math.inf, -math.inf]),
    ("", []),
])
def test_expanding_notation(text: str, values: list[float | None]) -> None:
    assert parse_values(text) == values


def test_nan_in_the_notation() -> None:
    assert math.isnan(parse_values("NaN")[0])


@pytest.mark.parametrize("text, offset", [("1 2 x3", 4), ("1 2+x3", 2), ("1x99999999", 0)])
def test_notation_mistakes_have_a_position(text: str, offset: int) -> None:
    with pytest.raises(NotationError) as err:
        parse_values(text)
    assert err.value.offset == offset


def test_series_notation() -> None:
    assert parse_series('up{job="node", instance=\'a\\\'b\'}') == {"__name__": "up", "job": "node", "instance": "a'b"}
    assert parse_series('{job="x"}') == {"job": "x"}
    assert parse_series("node:cpu:rate5m") == {"__name__": "node:cpu:rate5m"}
    for bad, offset in [('up{job="a" x="b"}', 11), ("up{job=a}", 3), ('up{a="1", a="2"}', 10), ("", 0)]:
        with pytest.raises(NotationError) as err:
            parse_series(bad)
        assert err.value.offset == offset, bad


def test_a_passing_test(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["test", str(folder(tmp_path, PASSING))])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0].startswith("ok    critical after two minutes  (rule cpu, ")
    assert res.stdout.splitlines()[-1] == "1 test(s), 0 failed"


def test_a_failing_test_shows_what_differs(tmp_path: Path) -> None:
    failing = PASSING.replace("{time: 4m, severity: critical, value: 95}", "{time: 4m, severity: warning}") \
        .replace("{count: 1, severities: {critical: 1}}", "{count: 3}")
    junit = tmp_path / "junit.xml"
    res = CliRunner().invoke(main, ["test", str(folder(tmp_path, failing)), "--junit", str(junit)])
    assert res.exit_code == 1
    lines = res.stdout.splitlines()
    assert lines[0].startswith("FAIL  critical after two minutes  (rule cpu, ")
    assert lines[1:6] == [
        "      target alerts:",
        "        - expected, not received: {time=4m, severity=warning}",
        "        + received, not expected: {time=4m, severity=critical, instance=a}",
        "      target all:",
        "        1 rows, expected 3",
    ]
    assert lines[-1] == "1 test(s), 1 failed"
    assert '      input cpu{instance="a", env="prod"}: 50 85 95 95 95 _ 95 (7 values)' in lines
    doc = ET.parse(junit).getroot()
    assert doc.get("failures") == "1"
    case = doc.find("testsuite/testcase")
    assert case is not None and case.get("name") == "critical after two minutes"
    failure = case.find("failure")
    assert failure is not None and "1 rows, expected 3" in (failure.text or "")


def test_quiet_shows_failures_only(tmp_path: Path) -> None:
    two = PASSING + PASSING.split("tests:\n")[1].replace("critical after two minutes", "broken") \
        .replace("count: 1,", "count: 2,")
    res = CliRunner().invoke(main, ["test", str(folder(tmp_path, two)), "-q"])
    assert res.exit_code == 1
    assert "broken" in res.stdout and "critical after two minutes" not in res.stdout


def test_coverage_names_what_no_test_exercised(tmp_path: Path) -> None:
    only_warning = PASSING.replace("95x2 _ 95", "85x4").replace("99x6", "1").split("    expect:")[0] + \
        "    expect: {alerts: {count: 6}}\n"
    res = CliRunner().invoke(main, ["test", str(folder(tmp_path, only_warning)), "--coverage"])
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "rule other has no test" in out
    assert "cpu: threshold 1 (severity critical)" in out
    assert "cpu: threshold 2" not in out
    assert "cpu: route 2 (to all)" in out and "cpu: route 1" not in out


@pytest.mark.parametrize("tests, where, message", [
    ("tests: [{rule: nope, input: [], expect: {all: []}}]", (2, 16), "no rule named 'nope'"),
    ("tests: [{rule: other, input: [], expect: {alerts: []}}]", (2, 43), "does not route to 'alerts'"),
    ("tests:\n  - rule: cpu\n    input: [{series: 'cpu{a=\"1\"}', values: '1 2 y'}]\n    expect: {all: []}",
     (4, 49), "'y' is not a value"),
    ("tests:\n  - rule: cpu\n    input: [{series: 'cpu{a=1}', values: '1'}]\n    expect: {all: []}",
     (4, 27), 'expected label="value"'),
    ("tests: [{rule: cpu, input: [], expect: {all: [{time: soon}]}}]", (2, 54), "not a duration"),
    ("tests: [{rule: cpu, input: [], expect: {all: {count: -1}}}]", (2, 54), "less than the minimum of 0"),
])
def test_mistakes_in_tests_are_validation_problems(tmp_path: Path, tests: str, where: tuple[int, int],
                                                   message: str) -> None:
    d = folder(tmp_path, "version: 1\n" + tests + "\n")
    result = validate_paths([str(d)])
    assert not result.ok
    p = result.problems[0]
    assert p.location.path.endswith("r_test.yaml") and (p.location.line, p.location.col) == where, str(p)
    assert message in p.message
    res = CliRunner().invoke(main, ["test", str(d)])
    assert res.exit_code == 2


def test_rows_are_those_apply_writes(tmp_path: Path) -> None:
    """The runner and `apply` share evaluation: the same series give the same rows."""
    d = folder(tmp_path, PASSING.replace("95x2 _ 95", "95x2 70 95"))   # no gap: a range query would fill it
    ruleset = load_ruleset([str(d)])
    test = ruleset.tests[0]
    data = query_result(test, 60_000)
    export = tmp_path / "in.jsonl"
    with export.open("w") as f:
        for i, labels in enumerate(data.labels):
            mine = data.series_id == i
            f.write(json.dumps({"metric": labels, "values": data.values[mine].tolist(),
                                "timestamps": data.ts_ms[mine].tolist()}) + "\n")
    report = apply(ruleset, ApplyOptions(output_dir=str(tmp_path / "out"), datasource=f"file:{export}",
                                         from_ms=0, to_ms=360_000, rules=["cpu"], keep_tables=True))
    assert report.ok, report.failed
    applied = report.tables[("cpu", "alerts")].to_pylist()
    results, _ = run_tests(ruleset)
    assert results[0].ok
    assert [(int(r["timestamp"].timestamp()), r["severity"]) for r in applied] == \
        [(60, "warning"), (120, "warning"), (180, "warning"), (240, "critical"), (360, "warning")]


def test_no_tests_is_said(tmp_path: Path) -> None:
    d = tmp_path / "rules"
    d.mkdir()
    (d / "r.yaml").write_text(RULES)
    res = CliRunner().invoke(main, ["test", str(d)])
    assert res.exit_code == 0
    assert "no tests found" in res.stderr


def test_the_readme_example_passes(tmp_path: Path) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    example = readme.split("## Rule unit tests")[1].split("```yaml\n")[1].split("```")[0]
    rules = tmp_path / "rules"
    shutil.copytree(Path(__file__).parent.parent / "rules", rules)
    (rules / "node_test.yaml").write_text(example)
    res = CliRunner().invoke(main, ["test", str(rules)])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[-1] == "1 test(s), 0 failed"


def test_keep_firing_for_and_clear_in_rule_tests(tmp_path: Path) -> None:
    rules = """version: 1
targets: {t: {type: csv, path: t.csv, columns: [timestamp, severity]}}
rules:
  - name: temp
    query: temp
    step: 1m
    thresholds:
      - {severity: page, above: 90, for: 1m, keep_firing_for: 2m}
      - {severity: warn, above: 80, clear: {below: 70}}
    route: [{when: alert, to: t}]
"""
    tests = """version: 1
tests:
  - name: page stays two minutes after the dip; warn holds in the band until below 70
    rule: temp
    input:
      - series: 'temp{room="a"}'
        values: '85 95x2 75 75 75 72 69 75'    # 95x2: three values
    expect:
      t:
        - {time: 0, severity: warn}
        - {time: 1m, severity: warn}     # 95, but not yet for 1m
        - {time: 2m, severity: page}
        - {time: 3m, severity: page}
        - {time: 4m, severity: page}     # 75: kept firing for 2m after the dip
        - {time: 5m, severity: page}
        - {time: 6m, severity: warn}     # 75, in the band: warn holds
        - {time: 7m, severity: warn}     # 72
"""
    res = CliRunner().invoke(main, ["test", str(folder(tmp_path, tests, rules))])
    assert res.exit_code == 0, res.output
    assert "1 test(s), 0 failed" in res.output


def test_episodes_in_rule_tests(tmp_path: Path) -> None:
    rules = """version: 1
targets: {e: {type: csv, path: e.csv, shape: episodes}}
rules:
  - name: temp
    query: temp
    step: 1m
    thresholds: [{severity: page, above: 90, keep_firing_for: 1m}]
    route: [{when: alert, to: e}]
"""
    tests = """version: 1
tests:
  - name: two episodes, the second still open
    rule: temp
    input:
      - series: 'temp{room="a"}'
        values: '95 97 50 50 50 93'
    expect:
      e:
        - {start: 0, end: 3m, severity: page, peak: 97, last_value: 50, samples: 3}
        - {start: 5m, end: null, samples: 1, room: a}
"""
    res = CliRunner().invoke(main, ["test", str(folder(tmp_path, tests, rules))])
    assert res.exit_code == 0, res.output
