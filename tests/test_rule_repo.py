"""examples/rule-repo: the steps of its pull-request workflow pass on a clone of it."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from vmrules.cli import main

ROOT = Path(__file__).parent.parent
REPO = ROOT / "examples" / "rule-repo"
DATA = ROOT / "examples" / "data" / "node.jsonl"
TO = "2026-11-01T00:00:00Z"


def test_the_workflow_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    steps = [s.get("run", "") for job in yaml.safe_load((REPO / ".github/workflows/rules.yml").read_text())
             ["jobs"].values() for s in job["steps"]]
    assert any(s.startswith("vmrules validate rules/") for s in steps)
    assert any(s.startswith("vmrules test rules/ --junit") for s in steps)
    assert any("vmrules plan rules/ --since 7d --base" in s and "--format markdown" in s for s in steps)

    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "rules"]):
        subprocess.run([*git, *args], cwd=repo, check=True, capture_output=True)
    monkeypatch.chdir(repo)
    runner = CliRunner()
    assert runner.invoke(main, ["validate", "rules/", "--format", "github"]).exit_code == 0
    tested = runner.invoke(main, ["test", "rules/", "--junit", "test-results.xml", "--coverage"])
    assert tested.exit_code == 0, tested.output
    assert "every rule, threshold and route exercised" in tested.stdout
    assert ET.parse("test-results.xml").getroot().get("tests") == "4"

    # the pull request: a lower warning threshold for memory
    capacity = repo / "rules" / "capacity.yaml"
    capacity.write_text(capacity.read_text().replace("above: 0.9}", "above: 0.8}"))
    planned = runner.invoke(main, ["plan", "rules/", "--datasource", f"file:{DATA}", "--to", TO, "--since", "7d",
                                   "--base", "main", "--format", "markdown"])
    assert planned.exit_code == 0, planned.output
    rows = {line.split(" | ")[0].strip("| "): line for line in planned.stdout.splitlines() if line.startswith("| ")}
    assert " | changed | " in rows["memory_pressure"]
    assert " | unchanged | " in rows["disk_low"] and " | unchanged | " in rows["node_down"]
    # the test pins the old threshold down: the change is caught offline too
    assert runner.invoke(main, ["test", "rules/"]).exit_code == 1


def test_the_prometheus_rule_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/rule-repo-prometheus: its workflow's steps on a clone, a pull request lowering a threshold, and
    the routed file run by apply."""
    source = ROOT / "examples" / "rule-repo-prometheus"
    steps = [s.get("run", "") for job in yaml.safe_load((source / ".github/workflows/alerts.yml").read_text())
             ["jobs"].values() for s in job["steps"]]
    assert any(s.startswith("vmrules validate alerts/ vmrules/") for s in steps)
    assert any("vmrules plan alerts/ --since 7d --base" in s and "--format markdown" in s for s in steps)
    repo = tmp_path / "repo"
    shutil.copytree(source, repo)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "alerts"]):
        subprocess.run([*git, *args], cwd=repo, check=True, capture_output=True)
    monkeypatch.chdir(repo)
    runner = CliRunner()
    assert runner.invoke(main, ["validate", "alerts/", "vmrules/", "--format", "github"]).exit_code == 0
    node = repo / "alerts" / "node.yml"
    node.write_text(node.read_text().replace("rate5m > 0.8", "rate5m > 0.7"))
    planned = runner.invoke(main, ["plan", "alerts/", "--datasource", f"file:{DATA}", "--to", TO, "--since", "7d",
                                   "--base", "main", "--format", "markdown"])
    assert planned.exit_code == 0, planned.output
    rows = {line.split(" | ")[0].strip("| "): line for line in planned.stdout.splitlines() if line.startswith("| ")}
    assert " | changed | " in rows["NodeCPUHigh_2"]
    assert all(" | unchanged | " in rows[n] for n in ("NodeDown", "NodeCPUHigh", "NodeMemoryPressure"))
    applied = runner.invoke(main, ["apply", "vmrules/", "--datasource", f"file:{DATA}", "--to", TO, "--since", "7d",
                                   "--output-dir", "out", "-q"])
    assert applied.exit_code == 0, applied.output
    import sqlite3

    with sqlite3.connect(repo / "out" / "alerts.db") as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"NodeDown", "NodeCPUHigh", "NodeCPUHigh_2", "NodeMemoryPressure"} <= tables
        assert db.execute('SELECT count(*) FROM "NodeDown" WHERE severity = \'critical\'').fetchone()[0] == 10
