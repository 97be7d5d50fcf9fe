"""`vmrules plan`: the rows each target would receive (same numbers as apply), and the diff with a git ref."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support.data import END_S, export_jsonl
from tests.support.servers import VictoriaMetrics
from vmrules.cli import main

RULES = """version: 1
targets:
  alerts: {type: csv, path: alerts.csv, columns: [rule, timestamp, severity]}
  db: {type: sqlite, path: s.db, table: t}
rules:
  - name: cpu
    query: cpu_usage
    range: 4h
    valid: {min: 0, max: 100}
    thresholds:
      - {severity: critical, above: 95, for: 10m}
      - {severity: warning, above: THRESHOLD}
    route:
      - {when: alert, to: alerts}
      - {to: db}
"""
GONE = "  - {name: gone, query: disk_free, range: 4h, thresholds: [{below: 1.0e+20}], route: [{to: alerts}]}\n"
NEW = "  - {name: fresh, query: disk_free, range: 4h, thresholds: [{below: 1.0e+20}], route: [{to: alerts}]}\n"


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=repo, check=True,
                   capture_output=True)


def test_plan_counts_what_apply_writes(vm: VictoriaMetrics, tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "r.yaml").write_text(f"version: 1\ndatasource: {{url: '{vm.url}'}}\n" +
                                   RULES.split("version: 1\n")[1].replace("THRESHOLD", "80"))
    window = ["--to", str(END_S)]
    res = CliRunner().invoke(main, ["plan", str(folder), *window, "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    out = tmp_path / "out"
    applied = CliRunner().invoke(main, ["apply", str(folder), *window, "--output-dir", str(out)])
    assert applied.exit_code == 0, applied.output
    cpu = doc["rules"][0]
    line = next(x for x in applied.stdout.splitlines() if x.startswith("cpu "))
    assert f"alerts={cpu['targets']['alerts']['rows']}, db={cpu['targets']['db']['rows']}" in line
    assert cpu["counts"]["alerts"] == cpu["targets"]["alerts"]["rows"] > 0
    assert set(cpu["counts"]["by_severity"]) == {"critical", "warning"}
    assert cpu["targets"]["db"]["rows"] == 12 * 240 - cpu["counts"]["invalid"]
    assert 0 < len(cpu["alert_series"]) <= 12
    text = CliRunner().invoke(main, ["plan", str(folder), *window])
    assert "series with the most alert rows:" in text.stdout
    assert 'cpu_usage{env="staging", instance="host-03"' in text.stdout
    assert text.stdout.rstrip().endswith("no target written")


def test_plan_against_a_git_ref(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    (repo / "rules").mkdir(parents=True)
    data = tmp_path / "data.jsonl"
    data.write_text(export_jsonl())
    rules = repo / "rules" / "r.yaml"
    rules.write_text(RULES.replace("THRESHOLD", "80") + GONE)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "base")
    rules.write_text(RULES.replace("THRESHOLD", "70") + NEW)          # the pull request: lower, new, removed
    monkeypatch.chdir(repo)
    args = ["plan", "rules", "--datasource", f"file:{data}", "--to", str(END_S), "--base", "main"]
    res = CliRunner().invoke(main, [*args, "--format", "markdown"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == "#### vmrules plan: rules at `main` and now"
    assert lines[2] == ("| rule | change | alert rows | alerting series | time firing (first .. last) "
                        "| rows per target |")
    cpu = next(x for x in lines if x.startswith("| cpu |")).split(" | ")
    assert cpu[1] == "changed"
    before, after = (int(x) for x in cpu[2].split(" (")[0].split(" -> "))
    assert after > before
    fresh = next(x for x in lines if x.startswith("| fresh | new |"))
    assert fresh.startswith("| fresh | new | 0 -> 960 (+960) (alert 0 -> 960 (+960) in 0 -> 4 (+4) series, "
                            "0 -> 4 (+4) episodes) | "
                            "0 -> 4 (+4) (started "
                            "alerting: disk_free{instance=\"host-00\", job=\"node\", mount=\"/\"}")
    assert fresh.endswith("| alerts 0 -> 960 (+960) |")
    firing = fresh.split(" | ")[4]                       # 960 rows x the step, and its first and last alert
    assert re.fullmatch(r"- -> \S+ \(\d{4}-\d\d-\d\dT\S+Z \.\. \d{4}-\d\d-\d\dT\S+Z\)", firing), firing
    assert any(x.startswith("| gone | removed | 960 -> 0 (-960) (alert 960 -> 0 (-960) in 4 -> 0 (-4) series, "
                            "4 -> 0 (-4) episodes) | "
                            "4 -> 0 (-4) (stopped: ")
               for x in lines)
    same = CliRunner().invoke(main, ["plan", "rules", "--datasource", f"file:{data}", "--to", str(END_S),
                                     "--base", "HEAD", "--rule", "fresh"])
    assert "rule fresh: new" in same.stdout
    bad = CliRunner().invoke(main, [*args[:-1], "no-such-ref"])
    assert bad.exit_code == 2 and "'no-such-ref' is not a commit" in bad.output
    assert sorted(p.name for p in repo.iterdir()) == [".git", "rules"]        # nothing written


def test_a_threshold_moved_between_severities_shows_each_severity(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The totals stay the same while rows move from warning to critical: the diff shows both, the series that
    started or stopped alerting, and --format json gives base and head numbers."""
    repo = tmp_path / "repo"
    (repo / "rules").mkdir(parents=True)
    data = tmp_path / "data.jsonl"
    data.write_text(export_jsonl())
    rules = repo / "rules" / "r.yaml"
    rules.write_text(RULES.replace("THRESHOLD", "60"))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "base")
    rules.write_text(RULES.replace("THRESHOLD", "60").replace("above: 95, for: 10m", "above: 70"))
    monkeypatch.chdir(repo)
    args = ["plan", "rules", "--datasource", f"file:{data}", "--to", str(END_S), "--base", "main"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    line = next(x for x in res.stdout.splitlines() if x.startswith("  rule cpu: changed;"))
    crit_before, crit_after = (int(x) for x in line.split("critical ")[1].split(" (")[0].split(" -> "))
    warn_before, warn_after = (int(x) for x in line.split("warning ")[1].split(" (")[0].split(" -> "))
    assert crit_after > crit_before and warn_after < warn_before
    assert crit_after - crit_before == warn_before - warn_after          # the same rows, another severity
    assert line.index("critical") < line.index("warning")
    doc = json.loads(CliRunner().invoke(main, [*args, "--format", "json"]).stdout)
    cpu = next(d for d in doc["diff"] if d["rule"] == "cpu")
    assert cpu["change"] == "changed" and cpu["base"]["alert_rows"] == cpu["head"]["alert_rows"]
    assert cpu["alert_rows_by_severity"] == {"critical": crit_after - crit_before, "warning": warn_after - warn_before}
    assert cpu["head"]["by_severity"] == {"critical": crit_after, "warning": warn_after}
    assert cpu["head"]["series_by_severity"]["critical"] > cpu["base"]["series_by_severity"].get("critical", 0)
    assert " episodes; warning " in line                    # rows, series and episodes per severity
    report = tmp_path / "plan.html"
    res = CliRunner().invoke(main, [*args, "--report", str(report)])
    assert res.exit_code == 0, res.output
    page = report.read_text()
    assert "vmrules plan, compared with the rules at main" in page
    assert "base: critical 95" in page and "class='threshold base'" in page      # the base's threshold, dotted

    def band(which: str, severity: str) -> float:
        """How much of the chart's width the band shows at this severity."""
        found = re.findall(rf"class='band' data-band='{which}' data-severity='{severity}' x='[0-9.]+' y='[0-9]+' "
                           r"width='([0-9.]+)'", page)
        return sum(float(w) for w in found)

    assert band("now", "critical") > band("base", "critical") > 0               # more critical now
    assert band("base", "warning") > 0 and band("now", "warning") > 0


def test_episodes_per_severity_agree_with_the_rows_apply_writes(tmp_path: Path) -> None:
    """An episode is an unbroken alerting stretch of a series at a severity: counted from apply's rows
    here, and by plan batch by batch (the file source answers series by series)."""
    import csv
    from itertools import pairwise

    data = tmp_path / "data.jsonl"
    data.write_text(export_jsonl())
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "r.yaml").write_text(f"datasource: {{url: 'file:{data}'}}\n" + RULES.replace(
        "THRESHOLD", "70").replace("columns: [rule, timestamp, severity]", "columns: [labels, timestamp, severity]"))
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(out), "--to", str(END_S), "-q"])
    assert res.exit_code == 0, res.output
    stretches: dict[tuple[str, str], list[int]] = {}
    with open(out / "alerts.csv", newline="") as f:
        for row in csv.DictReader(f):
            stretches.setdefault((row["labels"], row["severity"]), []).append(
                int(datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00")).timestamp()))
    want: dict[str, int] = {}
    for (_, severity), times in stretches.items():
        times.sort()
        want[severity] = want.get(severity, 0) + 1 + sum(1 for a, b in pairwise(times) if b - a != 60)
    doc = json.loads(CliRunner().invoke(main, ["plan", str(folder), "--to", str(END_S), "--format", "json"]).stdout)
    assert doc["rules"][0]["severity_episodes"] == want and want["warning"] > 10 and want["critical"] >= 1
