"""Pushdown: random rules on random data give the same rows and episodes with it on and off, against a real
VictoriaMetrics and a real Prometheus, in whole runs, runs split into many requests and batches, --chunk
runs and incremental runs; and the decision per rule, with its reason, as --dry-run shows it."""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from tests.support.servers import VictoriaMetrics, _wait, free_port
from vmrules.cli import main
from vmrules.commands.apply import ApplyOptions, RunReport, apply
from vmrules.commands.backfill import backfill
from vmrules.config.validate import load_ruleset
from vmrules.evaluate.pushdown import decide
from vmrules.model import RuleSet
from vmrules.sources.stream import MatrixStream

STEP_S = 60
POINTS = 360
T0_S = 1_795_903_200                       # 2026-11-28T22:00:00Z, the first sample
END_S = T0_S + (POINTS - 1) * STEP_S
GRID = [float(v) for v in range(-20, 125, 5)]


# -- the decision ------------------------------------------------------------------------------------------

def ruleset(tmp_path: Path, rule: dict[str, Any], targets: dict[str, Any] | None = None) -> RuleSet:
    doc = {"version": 1, "datasource": {"url": "http://127.0.0.1:1"},
           "targets": targets or {"alerts": {"type": "csv", "path": "a.csv"},
                                  "all": {"type": "csv", "path": "all.csv"},
                                  "eps": {"type": "csv", "path": "e.csv", "shape": "episodes"}},
           "rules": [{"name": "r", "query": "cpu", **rule}]}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(doc))
    return load_ruleset([str(tmp_path)])


ALERTS = [{"when": "alert", "to": ["alerts"]}]


@pytest.mark.parametrize(("rule", "sent"), [
    ({"thresholds": [{"above": 80}]}, "(cpu\n) > 80.0"),
    ({"thresholds": [{"severity": "c", "above": 95, "for": "5m"}, {"severity": "w", "above": 80}]}, "(cpu\n) > 80.0"),
    ({"thresholds": [{"above": 80, "clear": {"below": 70}}], "valid": {"min": 0}}, "(cpu\n) >= 70.0"),  # hysteresis
    ({"thresholds": [{"above": 80}], "valid": {"min": 0, "max": 100}}, "((cpu\n) > 80.0) <= 100.0"),
    ({"thresholds": [{"below": 10}], "valid": {"min": 0}}, "((cpu\n) >= 0.0) < 10.0"),
    ({"thresholds": [{"below": 10}, {"above": 90}], "valid": {"min": 0, "max": 100}},     # the span around both
     "((cpu\n) >= 0.0) <= 100.0"),
    ({"thresholds": [{"not_equal": 1}], "valid": {"max": 5}}, "((cpu\n) <= 5.0) != 1.0"),
    ({"thresholds": [{"not_equal": 1}]}, "(cpu\n) != 1.0"),                     # keeps NaN on Prometheus, as needed
    ({"thresholds": [{"equal": 0}]}, "((cpu\n) >= 0.0) <= 0.0"),
    ({"thresholds": [{"above": 1e300}]}, "(cpu\n) > 1e+300"),
    ({"thresholds": [{"above": 80}], "where": 'env == "prod"'}, "(cpu\n) > 80.0"),   # where stays on the client
])
def test_pushed_queries(tmp_path: Path, rule: dict[str, Any], sent: str) -> None:
    rs = ruleset(tmp_path, {**rule, "route": ALERTS})
    assert decide(rs.rules[0], rs.targets).query == sent


@pytest.mark.parametrize(("rule", "reason"), [
    ({"thresholds": [{"above": 80}], "route": [{"to": ["all"]}]}, "route 1 sends every row to all"),
    ({"thresholds": [{"above": 80}], "route": [{"when": 'severity != "x"', "to": ["alerts"]}]},
     "route 1 (line 7) may send rows that do not alert to alerts"),
    ({"thresholds": [{"above": 80}], "route": [{"when": "alert or value > 3", "to": ["alerts"]}]},
     "may send rows that do not alert"),
    ({"thresholds": [{"above": 80, "keep_firing_for": "5m"}]}, "has keep_firing_for"),
    ({"thresholds": [{"when": "value > 80"}]}, "has a `when:` expression"),
    ({"thresholds": [{"above": 80, "clear": {"below": 70}}]}, "NaN samples may alert or hold an alert"),
    ({"thresholds": [{"below": 10}, {"above": 90}]}, "every value may alert"),
    ({"thresholds": [{"above": 80}], "query": "scalar(cpu)"}, "not known to be an instant vector"),
    ({"thresholds": [{"above": 80}], "query": "cpu[5m]"}, "not known to be an instant vector"),
    ({}, "no thresholds"),
])
def test_rules_fetched_as_they_are(tmp_path: Path, rule: dict[str, Any], reason: str) -> None:
    rs = ruleset(tmp_path, {"route": ALERTS, **rule})
    got = decide(rs.rules[0], rs.targets)
    assert got.query is None and reason in got.reason, got.reason


@pytest.mark.parametrize("when", ["alert", "alert == true", 'severity == "critical"', 'severity =~ "crit.*|warn"',
                                  'alert and env == "prod"', 'severity == "a" or severity == "b"',
                                  'not (severity == "" or value > 5)', "value > 3 and alert"])
def test_routes_that_take_only_alert_rows(tmp_path: Path, when: str) -> None:
    rs = ruleset(tmp_path, {"thresholds": [{"above": 80}], "route": [{"when": when, "to": ["alerts"]},
                                                                      {"to": ["eps"]}]})
    assert decide(rs.rules[0], rs.targets).on


def test_off_for_the_run(tmp_path: Path) -> None:
    rs = ruleset(tmp_path, {"thresholds": [{"above": 80}], "route": ALERTS})
    assert decide(rs.rules[0], rs.targets, off="--no-pushdown").reason == "--no-pushdown"
    assert "export file" in decide(rs.rules[0], rs.targets, is_file=True).reason


def test_dry_run_and_verbose_show_the_decision(tmp_path: Path, vm: VictoriaMetrics) -> None:
    doc = {"version": 1, "datasource": {"url": vm.url},
           "targets": {"alerts": {"type": "csv", "path": "a.csv"}, "all": {"type": "csv", "path": "all.csv"}},
           "rules": [{"name": "hot", "query": "cpu_usage", "valid": {"min": 0, "max": 100},
                      "thresholds": [{"above": 90}], "route": ALERTS},
                     {"name": "every", "query": "cpu_usage", "thresholds": [{"above": 90}],
                      "route": [{"to": ["all"]}]}]}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(doc))
    from tests.support.data import END_S as DATA_END
    args = ["apply", str(tmp_path), "--output-dir", str(tmp_path / "o"), "--to", str(DATA_END)]
    res = CliRunner().invoke(main, [*args, "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "  pushdown: on: only samples that can alert are fetched (query > 90.0 <= 100.0)" in res.output
    assert "  sent: ((cpu_usage ) > 90.0) <= 100.0" in res.output
    assert "  pushdown: off: route 1 sends every row to all, not only the alerting ones" in res.output
    res = CliRunner().invoke(main, [*args, "--dry-run", "--no-pushdown"])
    assert res.output.count("pushdown: off: --no-pushdown") == 2
    res = CliRunner().invoke(main, [*args, "--dry-run", "--report", str(tmp_path / "r.html")])
    assert res.output.count("pushdown: off: --report needs every sample") == 2
    res = CliRunner().invoke(main, [*args, "-v"])
    assert res.exit_code == 0, res.output
    assert "rule hot: pushdown on:" in res.output and "rule every: pushdown off: route 1" in res.output
    lines = res.output.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("rule "))
    hot = lines[head + 1].split()
    assert hot[:6] == ["hot", "ok", "?", "?", "?", "?"] and lines[head + 2].split()[2:4] == ["12", "732"]
    assert "? not known: hot fetched only the samples that can alert" in res.output


# -- random data on real servers ---------------------------------------------------------------------------

def series_data(seed: int, nan: bool) -> list[dict[str, Any]]:
    """Random walks on a grid of round values (so that samples equal thresholds), with gaps, infinities and
    (where the server keeps them) NaN."""
    rnd = random.Random(seed)
    lines = []
    for s in range(24):
        name = "pd_a" if s < 16 else "pd_b"
        v, values, stamps, gap = rnd.choice(GRID), [], [], 0
        for i in range(POINTS):
            v = min(120.0, max(-20.0, v + rnd.choice([-10, -5, -5, 0, 0, 5, 5, 10])))
            if gap:
                gap -= 1
                continue
            if rnd.random() < 0.02:
                gap = rnd.randint(1, 8)
                continue
            r = rnd.random()
            x = math.nan if nan and r < 0.03 else math.inf if r < 0.035 else -math.inf if r < 0.038 else v
            values.append(x)
            stamps.append((T0_S + i * STEP_S) * 1000)
        lines.append({"metric": {"__name__": name, "instance": f"i{s:02d}", "zone": "abc"[s % 3]},
                      "values": values, "timestamps": stamps})
    return lines


@pytest.fixture(scope="module")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = VictoriaMetrics(str(tmp_path_factory.mktemp("pdvm")))
    try:
        server.import_lines(series_data(1, nan=True))
        server.wait_for('last_over_time({__name__=~"pd_.*"}[1d])', 24, END_S)
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Prometheus serving the data from TSDB blocks that promtool made of an OpenMetrics file."""
    binary, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if binary is None or promtool is None:
        raise RuntimeError("prometheus is not installed: run `make test` (Debian's package)")
    work = tmp_path_factory.mktemp("pdprom")
    text = []
    by_name: dict[str, list[dict[str, Any]]] = {}
    for line in series_data(2, nan=True):
        by_name.setdefault(line["metric"]["__name__"], []).append(line)
    for name, lines in by_name.items():
        text.append(f"# TYPE {name} gauge")
        for line in lines:
            labels = ",".join(f'{k}="{v}"' for k, v in line["metric"].items() if k != "__name__")
            text += [f"{name}{{{labels}}} {_om(v)} {t // 1000}" for v, t in zip(line["values"], line["timestamps"],
                                                                                strict=True)]
    (work / "data.om").write_text("\n".join(text) + "\n# EOF\n")
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(work / "data.om"), str(work / "tsdb")],
                   check=True, capture_output=True, timeout=120)
    (work / "prometheus.yml").write_text("global: {}\n")
    port = free_port()
    log = str(work / "prometheus.log")
    proc = subprocess.Popen([binary, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=100y"],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(f"{url}/-/ready", proc, log, "prometheus")
        q = urllib.request.urlopen(f"{url}/api/v1/query?" + urllib.parse.urlencode(
            {"query": 'count(last_over_time({__name__=~"pd_.*"}[1d]))', "time": END_S}))
        assert json.load(q)["data"]["result"][0]["value"][1] == "24"
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _om(v: float) -> str:
    return "NaN" if math.isnan(v) else "+Inf" if v == math.inf else "-Inf" if v == -math.inf else repr(v)


def random_rule(rnd: random.Random, i: int) -> dict[str, Any]:
    """A rule whose rows are only alert rows (mostly pushable), with the clauses that touch exactness."""
    query = rnd.choice(['{__name__=~"pd_.*"}', "pd_a", "max by (zone) (pd_a)", 'pd_b{zone!="c"}'])
    thresholds = []
    for j in range(rnd.randint(1, 3)):
        op = rnd.choice(["above", "above", "below", "at_least", "at_most", "equal", "not_equal"])
        th: dict[str, Any] = {"severity": f"s{j}", op: rnd.choice(GRID)}
        if rnd.random() < 0.5:
            th["for"] = rnd.choice(["1m", "2m", "5m", "12m"])
        if rnd.random() < 0.4 and op in ("above", "at_least", "below", "at_most"):
            low = op in ("below", "at_most")
            level = th[op] + (10 if low else -10) * rnd.randint(0, 2)
            th["clear"] = {rnd.choice(["above", "at_least"] if low else ["below", "at_most"]): level}
        if rnd.random() < 0.06:
            th["keep_firing_for"] = "3m"                 # not pushable: fetched as it is, same rows anyway
        thresholds.append(th)
    rule: dict[str, Any] = {"name": f"r{i}", "query": query, "thresholds": thresholds}
    if rnd.random() < 0.15:
        rule["instant"] = True                           # one instant query, after a lookback of ranges
    if rnd.random() < 0.5:
        lo = rnd.choice([-20.0, -5.0, 0.0, 10.0])
        rule["valid"] = {"min": lo, "max": lo + rnd.choice([60.0, 100.0, 130.0])} if rnd.random() < 0.7 else \
            {"min": lo}
    if rnd.random() < 0.3:
        rule["where"] = rnd.choice(['zone != "b"', "value < 100", 'instance =~ "i0.*"'])
    sev = f"s{rnd.randrange(len(thresholds))}"
    whens = ["alert", f'severity == "{sev}"', 'alert and zone == "a"',
             'severity != "s1"', 'alert or zone == "a"']          # the last two take rows that do not alert
    rule["route"] = [{"when": rnd.choice(whens), "to": ["rows"]}, {"to": ["eps"]}]
    return rule


def random_rules(seed: int, url: str, dialect: str, max_points: int) -> dict[str, Any]:
    rnd = random.Random(seed)
    return {"version": 1,
            "datasource": {"url": url, "dialect": dialect, "max_points_per_series": max_points},
            "defaults": {"range": "3h", "step": "1m"},
            "targets": {"rows": {"type": "jsonl", "path": "{{ rule.name }}/rows-{{ run.from }}.jsonl"},
                        "eps": {"type": "jsonl", "path": "{{ rule.name }}/eps-{{ run.from }}.jsonl",
                                "shape": "episodes"}},
            "rules": [random_rule(rnd, i) for i in range(8)] + [NAN_HOLDS]}


NAN_HOLDS = {"name": "r8", "query": "pd_a", "thresholds": [{"severity": "s0", "above": 50, "clear": {"below": 30}}],
             "route": [{"when": "alert", "to": ["rows"]}]}    # a NaN sample keeps it firing: not pushed (Prometheus)


def _key(row: dict[str, Any]) -> tuple[str, ...]:
    return tuple(f"{k}={v!r}" for k, v in sorted(row.items()))


def collect(reports: list[RunReport], into: dict[str, Counter[tuple[str, ...]]]) -> None:
    for report in reports:
        assert report.ok, [(r.name, r.error) for r in report.failed]
        for (rule, target), table in report.tables.items():
            into.setdefault(f"{rule}/{target}", Counter()).update(_key(r) for r in table.to_pylist())


def runs(rs: RuleSet, out: Path, mode: str, pushdown: bool, rnd: random.Random) -> tuple[dict[str, Counter], int]:
    """The rows and episodes of every (rule, target), and the samples fetched, in one way of running."""
    opts = ApplyOptions(output_dir=str(out), keep_tables=True, no_pushdown=None if pushdown else "--no-pushdown",
                        concurrency=2)
    got: dict[str, Counter] = {}
    reports = []
    if mode == "whole":
        reports.append(apply(rs, replace(opts, from_ms=(T0_S + 3600) * 1000, to_ms=END_S * 1000)))
    elif mode == "chunks":
        reports.append(backfill(rs, replace(opts, from_ms=(T0_S + 3600) * 1000, to_ms=END_S * 1000),
                                rnd.choice([17, 45, 60]) * 60_000))
    else:
        to = T0_S + 3 * 3600 + 30
        while to <= END_S:
            reports.append(apply(rs, replace(opts, incremental=True, lag_ms=0, to_ms=to * 1000)))
            to += rnd.choice([1, 7, 13, 31]) * 60
    collect(reports, got)
    pushed = {r.name for rep in reports for r in rep.rules if r.pushdown.on}
    assert pushed if pushdown else not pushed
    return got, sum(r.fetched for rep in reports for r in rep.rules)


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Answers parsed in many small batches (of a few series), as large answers are."""
    monkeypatch.setattr(MatrixStream.__init__, "__defaults__", (4000,))


@pytest.mark.parametrize("mode", ["whole", "chunks", "incremental"])
@pytest.mark.parametrize("server", ["victoria", "prometheus"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_rules_give_the_same_rows_with_pushdown_on_and_off(request: pytest.FixtureRequest, tmp_path: Path,
                                                                  small_batches: None, server: str, mode: str,
                                                                  seed: int) -> None:
    url = request.getfixturevalue(server)
    dialect = "metricsql" if server == "victoria" else "promql"
    rnd = random.Random(f"{seed}{server}{mode}")
    doc = random_rules(seed, url, dialect, rnd.choice([29, 100, 11000]))
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    rs = load_ruleset([str(tmp_path / "rules")])
    state = rnd.getstate()
    on, fetched_on = runs(rs, tmp_path / "on", mode, True, rnd)
    rnd.setstate(state)                                  # the same chunks and cadence
    off, fetched_off = runs(rs, tmp_path / "off", mode, False, rnd)
    assert on.keys() == off.keys()
    for key in off:
        assert on[key] == off[key], (key, doc["rules"][int(key.split("/")[0][1:])])
    rows = sum(sum(c.values()) for k, c in off.items() if k.endswith("/rows"))
    assert rows > 100 and fetched_on < fetched_off      # it alerted, and fewer samples came
