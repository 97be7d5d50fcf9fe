"""A run's own metrics: --metrics-file (checked by promtool, the last success kept across failed runs),
--push-metrics into a real VictoriaMetrics, where the example alerts fire when runs stop, and a push
that fails makes the run exit 1 without touching its exports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import file_rules
from tests.support.data import END_S
from tests.support.servers import FaultServer, Reply, VictoriaMetrics
from vmrules.cli import main

ROOT = Path(__file__).parent.parent
BODY = """targets:
  c: {type: csv, path: 'c/{{ rule.name }}.csv'}
  s: {type: sqlite, path: s.db, table: t}
rules:
  - name: cpu
    query: cpu_usage
    range: 30m
    step: 1m
    thresholds: [{severity: hot, above: 70}, {severity: warm, above: 50}]
    route: [{when: alert, to: s}, {to: c}]
  - name: disk
    query: disk_free
    range: 30m
    step: 1m
    route: [{to: c}]
"""


def samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value of each sample line."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: make test installs Debian's prometheus package"
    return path


def test_the_metrics_file_keeps_the_last_success_of_a_rule_that_fails(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, BODY)
    out, prom = tmp_path / "out", tmp_path / "textfile" / "vmrules.prom"
    prom.parent.mkdir()
    before = time.time()
    res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(out), "--to", str(END_S),
                                    "--metrics-file", str(prom), "-q"])
    assert res.exit_code == 0, res.output
    text = prom.read_text()
    got = samples(text)
    assert got["vmrules_run_success"] == 1 and got['vmrules_rule_success{rule="cpu"}'] == 1
    first = got['vmrules_rule_last_success_timestamp_seconds{rule="disk"}']
    assert before <= first <= time.time()
    assert got['vmrules_rule_window_end_timestamp_seconds{rule="cpu"}'] == END_S
    assert got['vmrules_rule_series{rule="cpu"}'] == 12 and got['vmrules_rule_samples{rule="cpu"}'] == 12 * 31
    hot, warm = got['vmrules_rule_alert_rows{rule="cpu",severity="hot"}'], \
        got['vmrules_rule_alert_rows{rule="cpu",severity="warm"}']
    assert hot > 0 and warm > 0 and got['vmrules_rule_rows{rule="cpu",target="s"}'] == hot + warm
    assert got['vmrules_rule_rows{rule="cpu",target="c"}'] == 12 * 31      # every route that matches
    check = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert not [p for p in prom.parent.iterdir() if p.name != "vmrules.prom"]     # written atomically

    (folder / "r.yaml").write_text((folder / "r.yaml").read_text().replace("query: disk_free",
                                                                           "query: disk_free\n    datasource: "
                                                                           "{url: 'file:/no/such/file'}"))
    res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(out), "--to", str(END_S),
                                    "--metrics-file", str(prom), "-q"])
    assert res.exit_code == 1 and "error: rule disk:" in res.output
    got = samples(prom.read_text())
    assert got["vmrules_run_success"] == 0 and got['vmrules_rule_success{rule="disk"}'] == 0
    assert got['vmrules_rule_last_success_timestamp_seconds{rule="disk"}'] == first            # kept
    assert got['vmrules_rule_last_success_timestamp_seconds{rule="cpu"}'] > first
    res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(out), "--to", str(END_S),
                                    "--metrics-file", str(prom), "-q", "--rule", "cpu"])
    assert res.exit_code == 0, res.output
    got = samples(prom.read_text())                # a run of some rules keeps the others' last successes
    assert got['vmrules_rule_last_success_timestamp_seconds{rule="disk"}'] == first
    assert 'vmrules_rule_success{rule="disk"}' not in got


def test_pushed_metrics_reach_victoriametrics_and_the_example_alerts_fire_when_runs_stop(tmp_path: Path) -> None:
    vm = VictoriaMetrics(str(tmp_path))
    try:
        folder = file_rules(tmp_path, BODY)
        url = f"{vm.url}/api/v1/import/prometheus?extra_label=job=vmrules"
        res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(tmp_path / "out"), "--to",
                                        str(END_S), "--push-metrics", url, "-v"])
        assert res.exit_code == 0, res.output
        assert f"pushed the run's metrics to {vm.url}/api/v1/import/prometheus" in res.output
        q = urllib.parse.urlencode({"match[]": '{__name__=~"vmrules_.*"}'})
        stored: list[dict] = []
        for _ in range(100):                    # bounded: new series are searchable within about a second
            urllib.request.urlopen(vm.url + "/internal/force_flush").read()
            stored = [json.loads(line) for line in urllib.request.urlopen(f"{vm.url}/api/v1/export?{q}", timeout=30)]
            if len({s["metric"]["__name__"] for s in stored}) >= 11:
                break
            time.sleep(0.1)
        names = {s["metric"]["__name__"] for s in stored}
        assert {"vmrules_run_success", "vmrules_rule_last_success_timestamp_seconds", "vmrules_rule_rows"} <= names
        assert all(s["metric"]["job"] == "vmrules" for s in stored)

        import yaml

        groups = yaml.safe_load((ROOT / "examples" / "deploy" / "vmrules-alerts.yaml").read_text())["groups"]
        alerts = {r["alert"]: r["expr"] for r in groups[0]["rules"]}

        def firing(expr: str, at: float) -> list[dict]:
            args = urllib.parse.urlencode({"query": expr, "time": f"{at:.3f}"})
            with urllib.request.urlopen(f"{vm.url}/api/v1/query?{args}", timeout=30) as resp:
                result: list[dict] = json.loads(resp.read())["data"]["result"]
                return result

        now = time.time() + 60                  # a minute after the run (VictoriaMetrics: not in its last second)
        assert firing(alerts["VmrulesRuleNotSucceeding"], now) == []
        assert firing(alerts["VmrulesNotRunning"], now) == []
        later = firing(alerts["VmrulesRuleNotSucceeding"], now + 31 * 60)        # no run for 31 minutes
        assert sorted(r["metric"]["rule"] for r in later) == ["cpu", "disk"]
        assert len(firing(alerts["VmrulesNotRunning"], now + 31 * 60)) == 1
        assert len(firing(alerts["VmrulesNotRunning"], now + 2 * 86400)) == 1     # gone altogether: absent
    finally:
        vm.stop()


def test_the_example_alerts_pass_promtool(tmp_path: Path) -> None:
    rules = ROOT / "examples" / "deploy" / "vmrules-alerts.yaml"
    check = subprocess.run([promtool(), "check", "rules", str(rules)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    (tmp_path / "t.yaml").write_text(f"""rule_files: ['{rules}']
evaluation_interval: 1m
tests:
  - interval: 5m
    input_series:
      - series: 'vmrules_rule_last_success_timestamp_seconds{{rule="cpu"}}'
        values: '0 300 600 600 600 600 600 600 600 600 600'
      - series: 'vmrules_run_timestamp_seconds'
        values: '0 300 600 900 1200 1500 1800 2100 2400 2700 3000'
      - series: 'vmrules_rule_success{{rule="new"}}'          # failed in every run, never a success
        values: '0 0 0 0 0 0 0 0 0 0 0'
    alert_rule_test:
      - eval_time: 25m
        alertname: VmrulesRuleFailing
        exp_alerts: []
      - eval_time: 31m
        alertname: VmrulesRuleFailing
        exp_alerts:
          - exp_labels: {{severity: warning, rule: new}}
            exp_annotations: {{summary: "vmrules rule new has failed in every run for 30 minutes"}}
      - eval_time: 30m
        alertname: VmrulesRuleNotSucceeding
        exp_alerts: []
      - eval_time: 41m
        alertname: VmrulesRuleNotSucceeding
        exp_alerts:
          - exp_labels: {{severity: warning, rule: cpu}}
            exp_annotations: {{summary: "vmrules rule cpu has not run without error for 31m 0s"}}
      - eval_time: 45m
        alertname: VmrulesNotRunning
        exp_alerts: []
""")
    test = subprocess.run([promtool(), "test", "rules", str(tmp_path / "t.yaml")], capture_output=True, text=True)
    assert test.returncode == 0, test.stdout + test.stderr


def test_a_push_that_fails_exits_1_and_leaves_the_exports(tmp_path: Path, fast_backoff: None) -> None:
    hook = FaultServer(lambda seen: Reply(503, b"down"))
    try:
        folder = file_rules(tmp_path, BODY)
        out = tmp_path / "out"
        res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(out), "--to", str(END_S),
                                        "--push-metrics", f"{hook.url}/api/v1/import/prometheus", "-q"])
        assert res.exit_code == 1
        assert "error: --push-metrics: not delivered:" in res.output and "503" in res.output
        assert (out / "c" / "cpu.csv").exists() and (out / "s.db").exists()
        assert hook.seen and hook.seen[0].method == "POST" and b"vmrules_rule_success" in hook.seen[0].body
        as_json = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(out), "--to", str(END_S),
                                            "--push-metrics", f"{hook.url}/api/v1/import/prometheus",
                                            "--log-format", "json"])
        assert as_json.exit_code == 1
        events = [json.loads(line) for line in as_json.output.splitlines() if line.startswith("{")]
        run = next(e for e in events if e["event"] == "run")
        assert run["ok"] is False and any("--push-metrics: not delivered" in e.get("message", "") for e in events)
    finally:
        hook.stop()


@pytest.mark.parametrize("option", ["--push-metrics", "--metrics-file"])
def test_bad_metrics_options_are_refused_before_anything_runs(tmp_path: Path, option: str) -> None:
    folder = file_rules(tmp_path, BODY)
    (tmp_path / "a-file").write_text("")
    value = "ftp://x/y" if option == "--push-metrics" else str(tmp_path / "a-file" / "m.prom")
    res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(tmp_path / "out"), option, value])
    assert res.exit_code == 2, res.output
    assert not os.path.exists(tmp_path / "out")
