"""`vmrules test`: rule unit tests, run offline through the same evaluate and route code as `apply`.

The input series of a test take the place of the query's answer (the query is
not run): value i of each series is at time i x interval from 0. The rows each
target would receive are compared with the expected rows or counts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from vmrules import expr
from vmrules.durations import format_duration_ms
from vmrules.evaluate.rows import evaluate
from vmrules.model import Rule, RuleSet, RuleTest, Target, series_text
from vmrules.sources.result import QueryResult

COMPARED = ("time", "severity", "value", "alert", "metric")


@dataclass
class TargetDiff:
    """What one target received against what the test expected."""

    target: str
    missing: list[dict[str, Any]] = field(default_factory=list)
    unexpected: list[dict[str, Any]] = field(default_factory=list)
    counts: list[str] = field(default_factory=list)         # count mismatches, in words

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.counts)


@dataclass
class TestResult:
    """One test's outcome; `error` is set when the test could not run at all."""

    test: RuleTest
    diffs: list[TargetDiff] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.error and all(d.ok for d in self.diffs)

    @property
    def name(self) -> str:
        """The test's name (its `name:`, or the rule's name and the test's number)."""
        return self.test.name


@dataclass
class Coverage:
    """What no test exercised: rules, thresholds (by severity) and routes (by position)."""

    untested_rules: list[str] = field(default_factory=list)
    thresholds: list[str] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)


def run_tests(ruleset: RuleSet) -> tuple[list[TestResult], Coverage]:
    """Run every test of the rule set; the coverage says what none of them exercised."""
    import time

    results = []
    hits: dict[str, _Hits] = {}
    for test in ruleset.tests:
        started = time.monotonic()
        rule = ruleset.rule(test.rule)
        try:
            rows = _rows_per_target(rule, test, ruleset.targets, hits.setdefault(rule.name, _Hits()))
            result = TestResult(test, [_compare(t, rows.get(t, []), want) for t, want in test.expect.items()])
        except Exception as exc:  # noqa: BLE001 - one broken test must not hide the others
            result = TestResult(test, error=f"{type(exc).__name__}: {exc}")
        result.seconds = time.monotonic() - started
        results.append(result)
    return results, _coverage(ruleset, hits)


@dataclass
class _Hits:
    severities: set[str] = field(default_factory=set)
    routes: set[int] = field(default_factory=set)


def query_result(test: RuleTest, interval_ms: int) -> QueryResult:
    """The test's input series as a query answer: sample i at i x interval, no sample where None."""
    labels, sid, ts, val = [], [], [], []
    for i, s in enumerate(test.inputs):
        labels.append(dict(s.labels))
        for k, v in enumerate(s.values):
            if v is not None:
                sid.append(i)
                ts.append(k * interval_ms)
                val.append(v)
    return QueryResult(labels, np.array(sid, np.int32), np.array(ts, np.int64), np.array(val, np.float64))


def _rows_per_target(rule: Rule, test: RuleTest, targets: Mapping[str, Target],
                     hits: _Hits) -> dict[str, list[dict[str, Any]]]:
    step = test.interval_ms or rule.step_ms
    rule = replace(rule, step_ms=step)
    whole = {n: _as_tested(t) for n, t in targets.items()}
    ev = evaluate(rule, query_result(test, step), whole)
    out = {name: _as_rows(table.to_pylist()) for name, table in ev.routed.items()}
    every = _as_rows(ev.table.to_pylist())
    hits.severities.update(r["severity"] for r in every if r["severity"] is not None)
    for i, route in enumerate(rule.routes):
        if any(route.when is None or expr.evaluate_row(route.when, _expr_row(r)) for r in every):
            hits.routes.add(i)
    return out


def _as_tested(t: Target) -> Target:
    """A target as a test sees it: every column; an alertmanager target as the alerting rows routed to it
    (each a time at which its alert fires, as in promtool's alert_rule_test)."""
    options = {k: v for k, v in t.options.items() if k != "columns"}
    return replace(t, type="jsonl" if t.type == "alertmanager" else t.type, options=options)


def _as_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows (or episodes) as a test sees them: times in ms from 0, labels as their own keys."""
    out = []
    for r in rows:
        if "timestamp" in r:
            row = {"time": _ms(r["timestamp"]), "severity": r["severity"], "value": r["value"],
                   "alert": r["alert"], "metric": r["metric"], "rule": r["rule"]}
        else:
            row = {"start": _ms(r["start"]), "end": None if r["end"] is None else _ms(r["end"]),
                   "severity": r["severity"], "peak": r["peak"], "last_value": r["last_value"],
                   "samples": r["samples"], "metric": r["metric"], "rule": r["rule"]}
        row.update(json.loads(r["labels"]))
        out.append(row)
    return out


def _ms(t: Any) -> int:
    return int(t.timestamp() * 1000)


def _expr_row(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "timestamp": row["time"]}


def _compare(target: str, got: list[dict[str, Any]], want: list[dict[str, Any]] | dict[str, Any]) -> TargetDiff:
    diff = TargetDiff(target)
    if isinstance(want, dict):
        if "count" in want and want["count"] != len(got):
            diff.counts.append(f"{len(got)} rows, expected {want['count']}")
        for severity, n in (want.get("severities") or {}).items():
            have = sum(1 for r in got if r["severity"] == severity)
            if have != n:
                diff.counts.append(f"{have} rows of severity {severity}, expected {n}")
        return diff
    keys = [k for k in dict.fromkeys(k for row in want for k in row)]
    left = list(got)
    for row in want:
        match = next((g for g in left if all(_same(g.get(k, "" if k not in COMPARED else None), v)
                                             for k, v in row.items())), None)
        if match is None:
            diff.missing.append(row)
        else:
            left.remove(match)
    diff.unexpected = [{k: g.get(k) for k in keys} if keys else {k: v for k, v in g.items() if k != "rule"}
                       for g in left]
    return diff


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, bool) or isinstance(got, bool):
        return got is want
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        if math.isnan(want) or math.isnan(got):
            return math.isnan(want) and math.isnan(got)
        return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)
    return bool(got == want)


def _coverage(ruleset: RuleSet, hits: Mapping[str, _Hits]) -> Coverage:
    cov = Coverage()
    for rule in ruleset.rules:
        h = hits.get(rule.name)
        if h is None:
            cov.untested_rules.append(rule.name)
            continue
        for i, th in enumerate(rule.thresholds):
            if th.severity not in h.severities:
                cov.thresholds.append(f"{rule.name}: threshold {i + 1} (severity {th.severity}) at {th.location}")
        for i, route in enumerate(rule.routes):
            if i not in h.routes:
                cov.routes.append(f"{rule.name}: route {i + 1} (to {', '.join(route.to)}) at {route.location}")
    return cov


# -- reports -----------------------------------------------------------------------------------
def format_row(row: Mapping[str, Any]) -> str:
    parts = []
    for k, v in row.items():
        if k == "time" and isinstance(v, int):
            v = format_duration_ms(v) if v else "0"
        parts.append(f"{k}={'null' if v is None else v}")
    return "{" + ", ".join(parts) + "}"


def format_results(results: list[TestResult], coverage: Coverage | None = None) -> str:
    """`ok`/`FAIL` per test with a diff of the rows under each failure, a closing count, then coverage."""
    lines = []
    for r in results:
        t = r.test
        lines.append(f"{'ok  ' if r.ok else 'FAIL'}  {t.name}  (rule {t.rule}, {t.location})")
        lines += ["      " + line for line in failure_lines(r)]
    failed = sum(1 for r in results if not r.ok)
    lines.append(f"{len(results)} test(s), {failed} failed")
    if coverage is not None:
        lines.append("")
        lines.append("coverage: " + ("every rule, threshold and route exercised" if not (
            coverage.untested_rules or coverage.thresholds or coverage.routes) else "not exercised by any test:"))
        lines += [f"  rule {n} has no test" for n in coverage.untested_rules]
        lines += [f"  {x}" for x in coverage.thresholds + coverage.routes]
    return "\n".join(lines)


def failure_lines(r: TestResult) -> list[str]:
    if r.error:
        return [f"error: {r.error}"]
    lines = []
    for d in r.diffs:
        if d.ok:
            continue
        lines.append(f"target {d.target}:")
        lines += [f"  {c}" for c in d.counts]
        lines += [f"  - expected, not received: {format_row(row)}" for row in d.missing]
        lines += [f"  + received, not expected: {format_row(row)}" for row in d.unexpected]
    if lines:                                   # the input as the test saw it (`axn` is n+1 values)
        step = r.test.interval_ms
        for s in r.test.inputs:
            shown = " ".join("_" if v is None else f"{v:g}" for v in s.values[:24])
            more = f" ... ({len(s.values)} values)" if len(s.values) > 24 else f" ({len(s.values)} values)"
            every = f", every {format_duration_ms(step)}" if step else ""
            lines.append(f"input {series_text('', s.labels)}: {shown}{more}{every}")
    return lines


def junit_xml(results: list[TestResult]) -> str:
    """JUnit XML: one testsuite per file, one testcase per test, the diff as the failure text."""
    import xml.etree.ElementTree as ET

    root = ET.Element("testsuites", name="vmrules", tests=str(len(results)),
                      failures=str(sum(1 for r in results if not r.ok)))
    suites: dict[str, ET.Element] = {}
    for r in results:
        path = r.test.location.path
        suite = suites.get(path)
        if suite is None:
            suite = suites[path] = ET.SubElement(root, "testsuite", name=path, tests="0", failures="0")
        suite.set("tests", str(int(suite.get("tests", "0")) + 1))
        case = ET.SubElement(suite, "testcase", name=r.test.name, classname=f"{path}:{r.test.rule}",
                             time=f"{r.seconds:.3f}")
        if not r.ok:
            suite.set("failures", str(int(suite.get("failures", "0")) + 1))
            text = "\n".join(failure_lines(r))
            ET.SubElement(case, "failure", message=text.splitlines()[0] if text else "failed").text = text
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
