"""Prometheus and vmalert rule files (`groups:`) are read by validate: public files validate clean, as promtool and
vmalert say they are valid; a broken one is refused by us and by the references alike."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from vmrules.cli import main
from vmrules.config.validate import validate_paths

FILES = Path(__file__).parent / "prometheus-rules"
DATA = Path(__file__).parent.parent / "examples" / "data" / "node.jsonl"
NODE_CPU = """groups:
  - name: node
    interval: 5m
    rules:
      - alert: NodeCPUHigh
        expr: instance:node_cpu_utilisation:rate5m > 0.9
        for: 15m
"""


def test_public_rule_files_validate_clean() -> None:
    result = validate_paths([str(FILES)])
    assert len(result.files) == 10
    assert result.problems == [] and result.warnings == []
    assert result.ruleset is not None and len(result.ruleset.prometheus_files) == 10


def test_the_references_accept_them_too() -> None:
    promtool, vmalert = shutil.which("promtool"), shutil.which("vmalert")
    assert promtool and vmalert, "make test installs prometheus and victoria-metrics (vmalert)"
    for path in sorted(FILES.glob("*.yml")):
        if path.name.startswith("apa-"):           # Prometheus files: promtool; vmalert files use MetricsQL
            subprocess.run([promtool, "check", "rules", str(path)], check=True, capture_output=True)
        subprocess.run([vmalert, f"-rule={path}", "-dryRun"], check=True, capture_output=True)


def test_a_broken_copy_is_refused_where_promtool_refuses_it(tmp_path: Path) -> None:
    text = (FILES / "apa-host-and-hardware-node-exporter.yml").read_text()
    broken = text.replace("node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
                          "node_memory_MemAvailable_bytes / (node_memory_MemTotal_bytes", 1)
    assert broken != text
    (tmp_path / "r.yml").write_text(broken)
    line = next(i for i, t in enumerate(broken.splitlines(), 1) if "(node_memory_MemTotal_bytes" in t)
    problems = validate_paths([str(tmp_path)]).problems
    assert len(problems) == 1 and problems[0].location.line == line, problems
    assert "unclosed (" in problems[0].message
    out = subprocess.run(["promtool", "check", "rules", str(tmp_path / "r.yml")], capture_output=True, text=True)
    assert out.returncode != 0 and "unclosed left parenthesis" in out.stdout + out.stderr


def test_apply_says_what_prometheus_rule_files_need(tmp_path: Path) -> None:
    shutil.copy(FILES / "vm-alerts-health.yml", tmp_path)
    res = CliRunner().invoke(main, ["apply", str(tmp_path), "--datasource", "http://127.0.0.1:9",
                                    "--output-dir", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert "vm-alerts-health.yml: Prometheus rule files with no route for their rows; add a vmrules file" in res.stderr
    assert not (tmp_path / "out").exists()


def test_convert_gives_rules_that_validate(tmp_path: Path) -> None:
    files = sorted(str(p) for p in FILES.glob("*.yml"))
    res = CliRunner().invoke(main, ["convert", *files])
    assert res.exit_code == 0, res.output
    (tmp_path / "converted.yaml").write_text(res.stdout)
    result = validate_paths([str(tmp_path)])
    assert result.problems == [] and result.ruleset is not None
    assert len(result.ruleset.rules) == 192                       # every alerting rule of the ten files
    assert "# Not converted:" in res.stdout and "the annotations of" in res.stdout


def test_convert_maps_a_comparison_with_a_number_to_a_threshold(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text("""groups:
  - name: g
    interval: 30s
    labels: {team: infra}
    rules:
      - alert: High
        expr: '(sum by (job) (rate(errors[5m])) > 0.5)'
        for: 2m
        labels: {severity: page}
      - alert: High
        expr: 0.1 < sum by (job) (rate(errors[5m]))
      - alert: Templated
        expr: up == 0
        labels: {severity: '{{ if eq $labels.job "db" }}page{{ else }}ticket{{ end }}'}
""")
    res = CliRunner().invoke(main, ["convert", str(tmp_path / "a.yml")])
    assert res.exit_code == 0, res.output
    import yaml

    rules = yaml.safe_load(res.stdout)["rules"]
    assert rules == [
        {"name": "High", "description": "alert High of group g", "query": "sum by (job) (rate(errors[5m]))",
         "step": "30s", "labels": {"team": "infra"}, "thresholds": [{"severity": "page", "above": 0.5, "for": "2m"}]},
        {"name": "High_2", "description": "alert High of group g", "query": "sum by (job) (rate(errors[5m]))",
         "step": "30s", "labels": {"team": "infra"}, "thresholds": [{"severity": "firing", "above": 0.1}]}]
    assert "alert Templated not converted: templated labels (severity)" in res.stdout


def test_convert_refuses_what_is_not_a_valid_prometheus_rule_file(tmp_path: Path) -> None:
    (tmp_path / "v.yaml").write_text("version: 1\nrules: []\n")
    (tmp_path / "b.yml").write_text("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up ==\n")
    res = CliRunner().invoke(main, ["convert", str(tmp_path / "v.yaml"), str(tmp_path / "b.yml")])
    assert res.exit_code == 2
    assert "v.yaml:1:1: error: not a Prometheus rule file" in res.stderr
    assert "b.yml:5:20: error: expr: unexpected end of the query" in res.stderr


def test_prometheus_rules_route_files_relative_to_the_vmrules_file(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "alerts").mkdir()
    (tmp_path / "rules").mkdir()
    shutil.copy(FILES / "vm-alerts-health.yml", tmp_path / "alerts")
    (tmp_path / "alerts" / "more.yml").write_text("groups:\n  - name: g\n    rules:\n"
                                                   "      - alert: TooManyRestarts\n        expr: up == 0\n"
                                                   "      - record: job:up:sum\n        expr: sum by (job) (up)\n")
    (tmp_path / "rules" / "route.yaml").write_text("""version: 1
targets: {alerts: {type: jsonl, path: "{{ rule.name }}.jsonl"}}
prometheus_rules:
  - files: ["../alerts/*.yml"]
    route: [{when: alert, to: alerts}, {to: [alerts, nowhere]}]
  - files: ["../alerts/none-*.yml", "/etc/passwd", "../../../etc/*", "../alerts/**/*.yml"]
""")
    result = validate_paths([str(tmp_path / "rules"), str(tmp_path / "alerts")])
    assert [(p.location.line, p.message) for p in result.problems] == [
        (5, "prometheus_rules routes to unknown target 'nowhere' (known: alerts)"),
        (6, "files: '../alerts/none-*.yml' matches no file"),
        *[(6, f"files: {p!r}: a pattern relative to this file, inside its folder or the one above it, without "
              "** (refused)") for p in ("/etc/passwd", "../../../etc/*", "../alerts/**/*.yml")]]
    (tmp_path / "rules" / "route.yaml").write_text("""version: 1
targets: {alerts: {type: jsonl, path: "{{ rule.name }}.jsonl"}}
prometheus_rules:
  - files: ["../alerts/*.yml"]
    route: [{when: alert, to: alerts}]
""")
    result = validate_paths([str(tmp_path / "rules"), str(tmp_path / "alerts")])
    assert result.problems == [] and result.ruleset is not None
    assert result.ruleset.prometheus_files == ()                        # routed: apply runs them
    names = [r.name for r in result.ruleset.rules]
    assert len(names) == 13 and "TooManyRestarts" in names and "TooManyRestarts_2" in names
    record = result.ruleset.rule("job_up_sum")
    assert record.labels == {"__name__": "job:up:sum"} and not record.thresholds and record.routes


def test_plan_base_compares_the_alerts_of_a_rule_file_in_a_pull_request(tmp_path: Path, monkeypatch: Any) -> None:
    """The question a pull request asks: with the warning threshold lowered, when would it have fired?"""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "alerts").mkdir()
    rules = NODE_CPU + """        labels: {severity: critical}
      - alert: NodeCPUHigh
        expr: instance:node_cpu_utilisation:rate5m > 0.8
        for: 15m
        labels: {severity: warning}
"""
    (tmp_path / "alerts" / "node.yml").write_text(rules)
    git = ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci"]
    subprocess.run(["git", "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "alerts"], check=True)
    (tmp_path / "alerts" / "node.yml").write_text(rules.replace("> 0.8", "> 0.7"))
    res = CliRunner().invoke(main, ["plan", "alerts/", "--base", "HEAD", "--datasource", f"file:{DATA}",
                                    "--to", "2026-11-01T00:00:00Z", "--since", "1d", "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    changes = {d["rule"]: d["change"] for d in doc["diff"]}
    assert changes == {"NodeCPUHigh": "unchanged", "NodeCPUHigh_2": "changed"}, changes


def test_plan_shows_the_near_misses_of_an_alert(tmp_path: Path, monkeypatch: Any) -> None:
    """Series that never alerted, closest first: their peak and the rows within 10 % under the threshold, as
    the rows themselves say (written out by apply from the same file and data)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "alerts").mkdir()
    (tmp_path / "alerts" / "node.yml").write_text(NODE_CPU)
    window = ["--datasource", f"file:{DATA}", "--to", "2026-11-01T00:00:00Z", "--since", "1d"]
    res = CliRunner().invoke(main, ["plan", "alerts/", *window, "--format", "json"])
    assert res.exit_code == 0, res.output
    plan = json.loads(res.stdout)["rules"][0]
    assert plan["near_threshold"] == "> 0.9" and plan["near"]
    res = CliRunner().invoke(main, ["plan", "alerts/", *window, "--report", "r.html"])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "r.html").read_text()
    closest = max((v[0], k) for k, v in plan["near"].items() if k not in plan["alert_series"])
    assert "<table class='near'>" in page and f"<td>{closest[0]:g}</td>" in page
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "all.yaml").write_text("""version: 1
targets: {rows: {type: jsonl, path: rows.jsonl}}
prometheus_rules: [{files: ["../alerts/*.yml"], route: [{to: rows}]}]
""")
    res = CliRunner().invoke(main, ["apply", "rules/", *window, "--output-dir", "out", "-q"])
    assert res.exit_code == 0, res.output
    peak: dict[str, float] = {}
    close: dict[str, int] = {}
    alerted = set()
    for line in (tmp_path / "out" / "rows.jsonl").read_text().splitlines():
        row = json.loads(line)
        key = row["metric"] + "\x00" + row["labels"]
        peak[key] = max(peak.get(key, -1e300), row["value"])
        close[key] = close.get(key, 0) + (0.81 <= row["value"] < 0.9 and not row["alert"])
        alerted |= {key} if row["alert"] else set()
    assert set(plan["near"]) == set(peak)
    for key, (value, rows) in plan["near"].items():
        assert (value, rows) == (peak[key], close[key]), key
    assert plan["alert_series"] and set(plan["alert_series"]) == alerted


def test_what_vmalert_accepts_is_no_problem(tmp_path: Path) -> None:
    """Spellings vmalert runs (some Prometheus refuses): never an error; what Prometheus refuses is a warning."""
    (tmp_path / "empty.yml").write_text("groups:\n\n- name: Empty\n\n  \n  rules: \n")   # as a public file has it
    subprocess.run(["promtool", "check", "rules", str(tmp_path / "empty.yml")], check=True, capture_output=True)
    (tmp_path / "a.yml").write_text("""groups:
  - name: g
    rules:
      - alert: A
        expr: up == 0
        labels: {recording: true, ins-tance: x, n: 1}
        annotations:
          link: 'http://vm/vmui?query={{ $labels.job | queryEscape }}'
      - record: job:up:sum
        expr: sum by (job) (up)
        for: 5m
""")
    result = validate_paths([str(tmp_path)])
    assert result.problems == []
    assert [w.message for w in result.warnings] == [
        "for is for alerting rules; a recording rule ('job:up:sum') has no for (Prometheus refuses it, vmalert "
        "ignores it)"]
    assert result.ruleset is not None
    alert = result.ruleset.rule("A")
    assert alert.labels == {"recording": "true", "ins-tance": "x", "n": "1"}
    subprocess.run(["vmalert", f"-rule={tmp_path / 'a.yml'}", "-dryRun"], check=True, capture_output=True)


def test_odd_rules_are_problems_or_left_out_never_a_crash(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text("""groups:
  - name: g
    interval: 0s
    rules:
      - alert: NoExpr
      - alert: Backup
        expr: time() - backup_last_success_timestamp > 1d
      - alert: Disk
        expr: node_filesystem_avail_bytes < 10Gi
      - alert: At
        expr: x @ end() > 50
      - alert: Disk_Full
        expr: up == 0
      - alert: Disk-Full
        expr: up == 0
      - alert: Disk_Full_2
        expr: up == 0
""")
    problems = validate_paths([str(tmp_path)]).problems
    assert [(p.location.line, p.message) for p in problems] == [(5, "a rule needs expr: the query it evaluates")]
    (tmp_path / "a.yml").write_text((tmp_path / "a.yml").read_text().replace("      - alert: NoExpr\n", ""))
    res = CliRunner().invoke(main, ["convert", str(tmp_path / "a.yml")])
    assert res.exit_code == 0, res.output
    import yaml

    rules = {r["name"]: r for r in yaml.safe_load(res.stdout)["rules"]}
    assert rules["Backup"]["thresholds"] == [{"severity": "firing", "when": "true"}]      # 1d is no plain number
    assert rules["Disk"]["query"] == "node_filesystem_avail_bytes < 10Gi"
    assert "At" not in rules and "alert At not converted: it uses @" in res.stdout
    assert sorted(n for n in rules if n.startswith("Disk_Full")) == ["Disk_Full", "Disk_Full_2", "Disk_Full_2_2"]
    assert {r["step"] for r in rules.values()} == {"1m"}                                  # interval 0: the default
    (tmp_path / "converted.yaml").write_text(res.stdout)
    (tmp_path / "a.yml").unlink()
    assert validate_paths([str(tmp_path)]).problems == []


def test_yaml_as_prometheus_reads_it(tmp_path: Path) -> None:
    """Empty values are null, merge keys merge, and only the first document counts (a later one is a warning):
    as promtool reads these files (checked here too)."""
    (tmp_path / "a.yml").write_text("""groups:
- name: g
  rules:
  - &base
    alert: A
    expr: up == 0
    labels:
    annotations:
  - <<: *base
    alert: B
    labels: {severity: page}
---
groups:
- name: h
  rules:
  - alert: C
    expr: up ==
""")
    (tmp_path / "b.yml").write_text("groups:\n- name: e\n  rules:\n---\n")
    for name in ("a.yml", "b.yml"):
        out = subprocess.run(["promtool", "check", "rules", str(tmp_path / name)], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
    result = validate_paths([str(tmp_path)])
    assert result.problems == [] and result.ruleset is not None
    assert [(w.location.line, w.location.col) for w in result.warnings] == [(12, 1)]
    assert "another YAML document starts here" in result.warnings[0].message
    b = result.ruleset.rule("B")
    assert (b.query, b.thresholds[0].severity, b.location.line) == ("up", "page", 9)
    assert [r.name for r in result.ruleset.rules] == ["A", "B"]


def test_values_are_the_text_as_written_as_promtool_reads_them(tmp_path: Path) -> None:
    """YAML 1.1 reads `no`, `01`, `1.10` as a boolean and numbers; Prometheus and vmalert read a string field as the
    text written: the labels promtool's test gives the alert are the ones we read."""
    (tmp_path / "a.yml").write_text("""groups:
- name: 123
  rules:
  - alert: 404
    expr: up == 0
    for: 0
    labels:
      page: no
      ack: yes
      tt: True
      priority: 01
      ver: 1.10
      hex: 0x1F
      big: 1e3
      day: 2001-12-14
      team: ~
  - record: one
    expr: 1
""")
    result = validate_paths([str(tmp_path)])
    assert result.problems == [] and result.warnings == [] and result.ruleset is not None
    alert, record = result.ruleset.rules
    assert alert.name == "_404" and alert.description == "alert 404 of group 123"
    assert alert.labels == {"page": "no", "ack": "yes", "tt": "True", "priority": "01", "ver": "1.10",
                            "hex": "0x1F", "big": "1e3", "day": "2001-12-14", "team": ""}
    assert alert.thresholds[0].for_ms == 0 and record.query == "1"
    labels = {k: v for k, v in alert.labels.items() if v} | {"alertname": "404", "job": "j"}
    (tmp_path / "t.yml").write_text(json.dumps({
        "rule_files": ["a.yml"], "tests": [{"interval": "1m", "input_series": [{"series": 'up{job="j"}',
                                                                                "values": "0 0"}],
                                           "alert_rule_test": [{"eval_time": "1m", "alertname": "404",
                                                                "exp_alerts": [{"exp_labels": labels}]}]}]}))
    out = subprocess.run(["promtool", "test", "rules", str(tmp_path / "t.yml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_durations_as_promtool_and_vmalert_take_them(tmp_path: Path) -> None:
    """`for: 0` and an empty `for:` are fine for both; a number without a unit is seconds to vmalert and refused
    by Prometheus (a warning); longer than Go's durations is refused (promtool: out of range)."""
    (tmp_path / "a.yml").write_text("""groups:
- name: g
  interval: 90
  rules:
  - alert: A
    expr: up == 0
    for:
  - alert: B
    expr: up == 0
    for: 300y
  - alert: C
    expr: up == 0
    keep_firing_for: 999999999999y
""")
    result = validate_paths([str(tmp_path)])
    assert [(p.location.line, p.location.col, p.message) for p in result.problems] == [
        (10, 10, "for: '300y' is out of range: durations are at most 292y (Prometheus refuses longer ones)"),
        (13, 22, "keep_firing_for: '999999999999y' is out of range: durations are at most 292y (Prometheus "
                 "refuses longer ones)")]
    assert [(w.location.line, w.message) for w in result.warnings] == [
        (3, "interval: '90' has no unit: vmalert reads it as seconds, Prometheus refuses it; write 90s")]
    out = subprocess.run(["promtool", "check", "rules", str(tmp_path / "a.yml")], capture_output=True, text=True)
    assert out.returncode != 0 and 'not a valid duration string: "90"' in out.stdout + out.stderr
    (tmp_path / "a.yml").write_text("\n".join((tmp_path / "a.yml").read_text().splitlines()[:7]) + "\n")
    result = validate_paths([str(tmp_path)])
    assert result.ruleset is not None
    rule = result.ruleset.rule("A")
    assert (rule.step_ms, rule.thresholds[0].for_ms) == (90_000, 0)
    out = subprocess.run(["promtool", "check", "rules", str(tmp_path / "a.yml")], capture_output=True, text=True)
    assert out.returncode != 0
    (tmp_path / "a.yml").write_text((tmp_path / "a.yml").read_text().replace("interval: 90", "interval: 0"))
    out = subprocess.run(["promtool", "check", "rules", str(tmp_path / "a.yml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert validate_paths([str(tmp_path)]).ruleset is not None


def test_dot_rules_files_are_found_when_they_hold_groups(tmp_path: Path) -> None:
    """Prometheus repositories often name rule files `*.rules`; a folder's other `.rules` files (Prometheus 1's
    format, anything else) are not read."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "node.rules").write_text(NODE_CPU)
    (tmp_path / "kube.rules.yml").write_text(NODE_CPU.replace("NodeCPUHigh", "KubeCPUHigh"))
    (tmp_path / "old.rules").write_text('ALERT InstanceDown\n  IF up == 0\n  FOR 5m\n')
    result = validate_paths([str(tmp_path)])
    assert result.problems == [] and result.ruleset is not None
    assert sorted(Path(f).name for f in result.files) == ["kube.rules.yml", "node.rules"]
    assert sorted(r.name for r in result.ruleset.rules) == ["KubeCPUHigh", "NodeCPUHigh"]


TEMPLATES = {        # annotation -> (column of the problem in the template, or None; what promtool says)
    "{{ $foo }}": (4, "refused"),
    "{{ if $up := 1 }}{{ $up }}{{ end }}{{ $up }}": (39, "refused"),
    '{{ define "x" }}{{ $labels }}{{ end }}': (20, "refused"),
    "{{ $labels.job | $lables }}": (18, "refused"),
    "{{ .Lables.job }}": (4, "fails on every alert"),
    "{{ $labels.job.port }}": (4, "fails on every alert"),
    "{{ $value.x }}": (4, "fails on every alert"),
    "{{ $x := 1 }}{{ $x }} {{ $.Labels.job }} {{ .ExternalURL }}": (None, "5 j "),
    "{{ range $k, $v := $labels }}{{ $k }}={{ $v }}{{ end }}": (None, "__name__=upjob=j"),
    "{{ with .Labels }}{{ .job }}{{ end }} {{ if $y := .Labels.job }}{{ $y }}{{ else }}{{ $y }}{{ end }}":
        (None, "j j"),
    "{{ 0b101 }} {{ 0o17 }} {{ 1i }}": (None, "5 15 (0+1i)"),
    "{{ ($labels).job }} {{ (.Labels).job }}": (None, "j j"),
}


def test_templates_variables_and_fields_as_prometheus_runs_them(tmp_path: Path) -> None:
    """Undefined variables are refused by promtool; a field the alert's data has not fails on every alert
    (promtool's test shows it); both are a problem at their column, what Prometheus runs is none."""
    for i, (template, (col, promtool)) in enumerate(TEMPLATES.items()):
        rule = "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n    annotations:\n      a: '{}'\n"
        (tmp_path / f"{i}.yml").write_text(rule.replace("{}", template.replace("$x := 1", "$x := 5")))
        problems = validate_paths([str(tmp_path / f"{i}.yml")]).problems
        assert [(p.location.line, p.location.col) for p in problems] == ([(7, 10 + col)] if col else []), template
        check = subprocess.run(["promtool", "check", "rules", str(tmp_path / f"{i}.yml")], capture_output=True,
                               text=True)
        assert (check.returncode != 0) == (promtool == "refused"), template
        if promtool == "refused":
            assert "undefined variable" in check.stdout + check.stderr and "undefined variable" in \
                problems[0].message
            continue
        (tmp_path / f"{i}_test.yml").write_text(json.dumps({"rule_files": [f"{i}.yml"], "tests": [{
            "interval": "1m", "input_series": [{"series": 'up{job="j"}', "values": "0 0"}],
            "alert_rule_test": [{"eval_time": "1m", "alertname": "A", "exp_alerts": [
                {"exp_labels": {"job": "j"}, "exp_annotations": {"a": promtool}}]}]}]}))
        run = subprocess.run(["promtool", "test", "rules", str(tmp_path / f"{i}_test.yml")], capture_output=True,
                             text=True)
        if promtool == "fails on every alert":
            assert "error expanding template" in run.stdout + run.stderr, template
        else:
            assert run.returncode == 0, run.stdout + run.stderr


def test_convert_output_always_validates(tmp_path: Path) -> None:
    """Severities and label names vmalert takes and vmrules names do not: a severity is written as a name (with a
    note), an alert with such a label name is left out (with a note); a comment or a string with a parenthesis
    is not taken for the expr's parentheses; what is left validates."""
    (tmp_path / "a.yml").write_text("""groups:
- name: g
  rules:
  - alert: A
    expr: up == 0
    labels: {severity: high-urgency, page: no}
  - alert: B
    expr: up == 0
    labels: {severity: 1}
  - alert: C
    expr: up == 0
    labels: {ins-tance: x}
  - alert: D
    expr: |
      (1 < up{a="("}) # a comment )
""")
    subprocess.run(["vmalert", f"-rule={tmp_path / 'a.yml'}", "-dryRun"], check=True, capture_output=True)
    for path in [tmp_path / "a.yml", *sorted(FILES.glob("*.yml"))]:
        res = CliRunner().invoke(main, ["convert", str(path)])
        assert res.exit_code == 0, res.output
        (tmp_path / "out" / path.name).parent.mkdir(exist_ok=True)
        (tmp_path / "out" / f"{path.stem}.yaml").write_text(res.stdout)
        result = validate_paths([str(tmp_path / "out" / f"{path.stem}.yaml")])
        assert result.problems == [], (path, result.problems)
        if path.name == "a.yml":
            import yaml

            rules = yaml.safe_load(res.stdout)["rules"]
            assert [(r["name"], r["thresholds"][0]["severity"]) for r in rules] == [("A", "high_urgency"),
                                                                                   ("B", "_1"), ("D", "firing")]
            assert (rules[2]["query"], rules[2]["thresholds"][0]["above"]) == ('up{a="("}', 1)
            assert rules[0]["labels"] == {"page": "no"}
            assert "alert A: severity 'high-urgency' written as high_urgency" in res.stdout
            assert "alert C not converted: label names that are no vmrules label names (ins-tance)" in res.stdout


def test_a_file_routed_twice(tmp_path: Path) -> None:
    """Entries of one vmrules file that name the same file: each entry's routes apply to its rules (a row reaches
    a target once). Two vmrules files routing it: one problem naming both places (two datasources, two windows:
    which would run it?)."""
    (tmp_path / "alerts").mkdir()
    (tmp_path / "rules").mkdir()
    (tmp_path / "alerts" / "a.yml").write_text("groups:\n- name: g\n  rules:\n  - alert: HighCPU\n    expr: cpu > 1\n")
    (tmp_path / "alerts" / "b.yml").write_text("groups:\n- name: g\n  rules:\n  - alert: Other\n    expr: up == 0\n")
    head = "version: 1\ntargets:\n  t1: {type: jsonl, path: a.jsonl}\n  t2: {type: jsonl, path: b.jsonl}\n"
    (tmp_path / "rules" / "route.yaml").write_text(head + """prometheus_rules:
  - {files: ["../alerts/*.yml"], route: [{to: t1}]}
  - {files: ["../alerts/a.yml", "../alerts/a*.yml"], route: [{when: alert, to: t2}]}
""")
    (tmp_path / "alerts" / "empty.yml").write_text("# alerts to come\n")      # promtool: 0 rules found
    result = validate_paths([str(tmp_path / "rules")])
    assert result.problems == [] and result.ruleset is not None
    assert [r.to for r in result.ruleset.rule("HighCPU").routes] == [("t1",), ("t2",)]
    assert [r.to for r in result.ruleset.rule("Other").routes] == [("t1",)]
    (tmp_path / "rules" / "second.yaml").write_text("""version: 1
prometheus_rules:
  - {files: ["../alerts/a.yml"], route: [{to: t1}]}
""")
    problems = validate_paths([str(tmp_path / "rules")]).problems
    real = (tmp_path / "alerts" / "a.yml").resolve()
    assert [(p.location.path, p.location.line, p.location.col, p.message) for p in problems] == [
        (str(tmp_path / "rules" / "second.yaml"), 3, 14,
         f"files: {real} is routed by another vmrules file too (at {tmp_path / 'rules' / 'route.yaml'}:6:14); "
         "route a Prometheus rule file from one vmrules file (the routes of its entries that name the file all "
         "apply)")]


def test_names_do_not_depend_on_the_order_of_files(tmp_path: Path) -> None:
    """A vmrules rule keeps its name; alerts named again get _2, _3 in the order of their files' paths and
    places, whatever order the vmrules files and their entries come in."""
    (tmp_path / "alerts").mkdir()
    (tmp_path / "rules").mkdir()
    alert = "groups:\n- name: g\n  rules:\n  - alert: HighCPU\n    expr: cpu > {}\n"
    for name, n in (("a.yml", 1), ("b.yml", 2)):
        (tmp_path / "alerts" / name).write_text(alert.format(n) + alert.format(n * 10).split("rules:\n")[1])
    native = "version: 1\nrules:\n  - {name: HighCPU, query: cpu, route: [{to: t}]}\n"
    routing = """version: 1
targets: {t: {type: jsonl, path: a.jsonl}}
prometheus_rules:
  - {files: ["../alerts/b.yml"], route: [{to: t}]}
  - {files: ["../alerts/a.yml"], route: [{to: t}]}
"""
    seen = []
    for native_file in ("0.yaml", "z.yaml"):
        for f in (tmp_path / "rules").iterdir():
            f.unlink()
        (tmp_path / "rules" / "m.yaml").write_text(routing)
        (tmp_path / "rules" / native_file).write_text(native)
        result = validate_paths([str(tmp_path / "rules")])
        assert result.problems == [] and result.ruleset is not None
        seen.append(sorted((r.name, r.query, r.thresholds[0].value if r.thresholds else None)
                           for r in result.ruleset.rules))
    assert seen[0] == seen[1] == [("HighCPU", "cpu", None), ("HighCPU_2", "cpu", 1.0), ("HighCPU_3", "cpu", 10.0),
                                  ("HighCPU_4", "cpu", 2.0), ("HighCPU_5", "cpu", 20.0)]
