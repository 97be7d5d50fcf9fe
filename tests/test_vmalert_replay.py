"""Alerting rules of a Prometheus rule file, converted by `vmrules convert` and run by `vmrules apply`, fire at
exactly the samples where `vmalert -replay` (Debian's victoria-metrics package) fires them, on the same data in a
real VictoriaMetrics: per (alert, severity, series, timestamp).

vmalert is run as the reference must be (notes: no chunking, query step = the group interval, so that its chunk
boundaries do not restart `for`); one rule file per group interval, as the step flag is global.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from tests.support import read
from tests.support.servers import VictoriaMetrics, free_port
from vmrules.cli import main

T0 = 1_795_000_000 - 1_795_000_000 % 3600      # an hour boundary in 2026
HOURS = 3
IGNORED = {"alertname", "alertstate", "alertgroup", "severity", "__name__"}

GROUPS = {
    "1m": """groups:
  - name: rp_minute
    interval: 1m
    rules:
      - alert: RpHighCPU
        expr: rp_cpu > 0.9
        for: 5m
        labels: {severity: critical}
      - alert: RpHighCPU
        expr: rp_cpu > 0.7
        for: 90s
        labels: {severity: warning, team: infra}
      - alert: RpErrorsOverRequests
        expr: rp_errors > rp_requests * 0.5
      - alert: RpAbsent
        expr: absent(rp_up{job="missing"})
        for: 2m
      - alert: RpDownUnlessMaintenance
        expr: rp_up == 0 unless on(instance) rp_maint == 1
      - alert: RpCPUWhenSwitchedOn
        expr: rp_cpu > 0.5 and on() rp_switch == 1
        for: 3m
      - alert: RpCPUByTeam
        expr: rp_cpu * on(instance) group_left(team) rp_info > 0.8
      - alert: RpLowCPU
        expr: 0.35 > rp_cpu
        for: 4m
      - alert: RpTemplated
        expr: rp_cpu * on(instance) group_left(team) rp_info > 0.6
        for: 2m
        labels:
          severity: '{{ if eq $labels.instance "a" }}critical{{ else }}warning{{ end }}'
          host: '{{ $labels.instance | toUpper }}-{{ $labels.team }}'
      - record: rp:cpu:max_by_team
        expr: max by (team) (rp_cpu * on(instance) group_left(team) rp_info)
        labels: {source: recorded}
""",
    "30s": """groups:
  - name: rp_half_minute
    interval: 30s
    rules:
      - alert: RpFastCPU
        expr: (rp_cpu > 0.8)
        for: 1m
""",
}


def _series(vm: VictoriaMetrics) -> None:
    """Three hours every 15 s; cpu crosses the thresholds at different times and has gaps longer than the 5 m
    lookback (an evaluation with no sample), so `for` restarts."""
    steps = range(0, HOURS * 3600, 15)
    lines = []

    def add(labels: dict[str, str], value: Any) -> None:
        points = [(t, value(t)) for t in steps if value(t) is not None]
        lines.append({"metric": labels, "values": [v for _, v in points],
                      "timestamps": [(T0 + t) * 1000 for t, _ in points]})

    def cpu(shift: int, gap: tuple[int, int]) -> Any:
        def value(t: int) -> float | None:
            if gap[0] <= t < gap[1]:
                return None
            phase = (t + shift) % 2400
            return round(0.1 + 0.9 * (phase / 1200 if phase < 1200 else (2400 - phase) / 1200), 3)
        return value

    for i, inst in enumerate(("a", "b", "c")):
        add({"__name__": "rp_cpu", "instance": inst}, cpu(i * 500, (3000 + i * 900, 3600 + i * 900)))
        add({"__name__": "rp_info", "instance": inst, "team": f"t{i}"}, lambda t: 1.0)
        add({"__name__": "rp_up", "instance": inst, "job": "node"},
            lambda t, i=i: 0.0 if (t // 600) % 3 == i else 1.0)
        add({"__name__": "rp_maint", "instance": inst}, lambda t, i=i: 1.0 if i == 0 and t < 5400 else 0.0)
        add({"__name__": "rp_errors", "instance": inst}, lambda t, i=i: float((t // 300 + i) % 7))
        add({"__name__": "rp_requests", "instance": inst}, lambda t: 6.0)
    add({"__name__": "rp_switch"}, lambda t: 1.0 if 1800 <= t < 7200 else 0.0)
    vm.import_lines(lines)
    vm.wait_for("rp_cpu", 3, T0 + 600)


def _replay(vm: VictoriaMetrics, rules: Path, step: str, tmp: Path) -> None:
    vmalert = shutil.which("vmalert")
    assert vmalert, "make test installs victoria-metrics, which ships vmalert"
    subprocess.run([vmalert, f"-rule={rules}", f"-datasource.url={vm.url}", f"-remoteWrite.url={vm.url}",
                    f"-datasource.queryStep={step}", f"-replay.timeFrom={_rfc3339(T0)}",
                    f"-replay.timeTo={_rfc3339(T0 + HOURS * 3600)}", "-replay.rulesDelay=0s",
                    "-replay.maxDatapointsPerQuery=100000", "-remoteWrite.maxQueueSize=10000000",
                    "-replay.disableProgressBar", f"-httpListenAddr=127.0.0.1:{free_port()}"],
                   check=True, capture_output=True, timeout=300, cwd=tmp)
    urllib.request.urlopen(f"{vm.url}/internal/force_flush", timeout=30).read()


def _rfc3339(seconds: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _vmalert_firing(vm: VictoriaMetrics) -> set[tuple[str, str, frozenset[tuple[str, str]], int]]:
    q = urllib.parse.urlencode({"match[]": '{__name__="ALERTS", alertstate="firing", alertname=~"Rp.*"}',
                                "start": T0, "end": T0 + HOURS * 3600})
    body = urllib.request.urlopen(f"{vm.url}/api/v1/export?{q}", timeout=60).read().decode()
    out = set()
    for line in body.splitlines():
        doc = json.loads(line)
        labels = doc["metric"]
        key = frozenset((k, v) for k, v in labels.items() if k not in IGNORED)
        for ts, value in zip(doc["timestamps"], doc["values"], strict=True):
            if value == 1:
                out.add((labels["alertname"], labels.get("severity", "firing"), key, ts // 1000))
    return out


def _export(vm: VictoriaMetrics, match: str) -> list[tuple[dict[str, str], int, float]]:
    q = urllib.parse.urlencode({"match[]": match, "start": T0, "end": T0 + HOURS * 3600 - 1})
    body = urllib.request.urlopen(f"{vm.url}/api/v1/export?{q}", timeout=60).read().decode()
    return [(doc["metric"], ts // 1000, v) for doc in map(json.loads, body.splitlines())
            for ts, v in zip(doc["timestamps"], doc["values"], strict=True)]


def _vmrules_firing(vm: VictoriaMetrics, files: list[Path], tmp: Path) -> set[tuple[str, str, frozenset[Any], int]]:
    runner = CliRunner()
    converted = runner.invoke(main, ["convert", *map(str, files)])
    assert converted.exit_code == 0, converted.output
    doc = yaml.safe_load(converted.stdout)
    alerts = {}
    for rule in doc["rules"]:
        alerts[rule["name"]] = rule["description"].split()[1]
        rule["route"] = [{"when": "alert", "to": "firing"}]
    doc["targets"] = {"firing": {"type": "jsonl", "path": "{{ rule.name }}.jsonl"}}
    (tmp / "rules").mkdir()
    (tmp / "rules" / "converted.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    res = runner.invoke(main, ["apply", str(tmp / "rules"), "--datasource", vm.url, "--output-dir", str(tmp / "out"),
                               "--from", str(T0), "--to", str(T0 + HOURS * 3600 - 1), "-q"])
    assert res.exit_code == 0, res.output
    return _firing(tmp / "out", "*.jsonl", lambda rule: alerts[rule])


def _firing(folder: Path, pattern: str, alert_of: Any) -> set[tuple[str, str, frozenset[Any], int]]:
    """(alert, severity, labels, timestamp in seconds) of the rows written to the jsonl files."""
    out = set()
    for path in folder.glob(pattern):
        for row in read.rows(str(path)):
            labels = json.loads(row["labels"]) if isinstance(row["labels"], str) else row["labels"]
            key = frozenset((k, v) for k, v in labels.items() if k not in IGNORED)
            out.add((alert_of(row["rule"]), row["severity"], key, row["timestamp"]))
    return out


def _routed_firing(vm: VictoriaMetrics, tmp: Path) -> set[tuple[str, str, frozenset[Any], int]]:
    """The same files run as they are: routed by a vmrules file's prometheus_rules."""
    (tmp / "routed").mkdir()
    (tmp / "routed" / "route.yaml").write_text(f"""version: 1
datasource: {{url: "{vm.url}"}}
targets: {{firing: {{type: jsonl, path: "{{{{ rule.name }}}}.jsonl"}}}}
prometheus_rules:
  - files: ["../rules-*.yml"]
    route: [{{when: alert or rule == "rp_cpu_max_by_team", to: firing}}]
""")
    res = CliRunner().invoke(main, ["apply", str(tmp / "routed"), "--output-dir", str(tmp / "routed-out"),
                                    "--from", str(T0), "--to", str(T0 + HOURS * 3600 - 1), "-q"])
    assert res.exit_code == 0, res.output
    return _firing(tmp / "routed-out", "Rp*.jsonl", lambda rule: rule.split("_")[0])


def test_converted_and_routed_alerts_fire_where_vmalert_replay_fires(vm: VictoriaMetrics, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)          # the repository root: prometheus_rules reads files below it
    _series(vm)
    files = []
    for step, text in GROUPS.items():
        path = tmp_path / f"rules-{step}.yml"
        path.write_text(text)
        files.append(path)
        _replay(vm, path, step, tmp_path)
    # vmalert's replay has no history before its start, where vmrules looks back (absent() held before T0 too):
    # compared from the point where both have seen the longest `for` and lookback
    since = T0 + 10 * 60
    want = {f for f in _vmalert_firing(vm) if since <= f[3] < T0 + HOURS * 3600}
    got = {f for f in _vmrules_firing(vm, files, tmp_path) if since <= f[3]}
    alerts = {a for a, *_ in want}
    assert alerts == {"RpHighCPU", "RpErrorsOverRequests", "RpAbsent", "RpDownUnlessMaintenance",
                      "RpCPUWhenSwitchedOn", "RpCPUByTeam", "RpLowCPU", "RpFastCPU", "RpTemplated"}, alerts
    templated = {f for f in want if f[0] == "RpTemplated"}
    assert {(s, dict(key)["host"]) for _, s, key, _ in templated} == {
        ("critical", "A-t0"), ("warning", "B-t1"), ("warning", "C-t2")}
    assert {s for _, s, *_ in want if _ == "RpHighCPU"} <= {"critical", "warning"}
    assert len(want) > 500
    per_alert = {a: sum(1 for f in want if f[0] == a) for a in alerts}
    assert all(n >= 10 for n in per_alert.values()), per_alert          # every alert fires for a while
    missing, extra = want - templated - got, got - want      # convert leaves templated labels out
    assert not missing and not extra, (sorted(missing)[:10], sorted(extra)[:10])
    routed = {f for f in _routed_firing(vm, tmp_path) if since <= f[3]}
    assert routed == want
    recorded = _export(vm, '{__name__="rp:cpu:max_by_team"}')
    rows = [r for r in read.rows(str(tmp_path / "routed-out" / "rp_cpu_max_by_team.jsonl"))]
    assert rows and {r["metric"] for r in rows} == {"rp:cpu:max_by_team"}
    ours = {(r["team"], r["source"], r["timestamp"], round(r["value"], 9)) for r in rows}
    assert ours == {(labels["team"], labels["source"], ts, round(v, 9)) for labels, ts, v in recorded}
