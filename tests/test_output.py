"""What a person at a terminal and a log pipeline see from `apply`: summary, progress bar, JSON logs."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from tests.conftest import file_rules
from tests.support.data import END_S
from vmrules.cli import main

BODY = ("targets: {f: {type: csv, path: '{{ rule.name }}.csv'}, db: {type: sqlite, path: s.db, table: t}}\n"
        "rules:\n"
        "  - {name: cpu, query: cpu_usage, range: 4h, valid: {min: 0, max: 100},\n"
        "     thresholds: [{severity: critical, above: 95}, {severity: warning, above: 70}],\n"
        "     route: [{when: alert, to: f}, {to: db}]}\n"
        "  - {name: missing, query: no_such_metric, route: [{to: f}]}\n")


def test_summary_table(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["apply", str(file_rules(tmp_path, BODY)), "--output-dir", str(tmp_path / "o"),
                                    "--to", str(END_S)])
    assert res.exit_code == 0, res.output
    head, cpu, missing = res.stdout.splitlines()[:3]
    assert head.split() == ["rule", "status", "series", "samples", "invalid", "filtered", "alerts", "seconds", "rows"]
    cells = cpu.split()
    assert cells[:6] == ["cpu", "ok", "12", "2880", "3", "0"]
    assert "critical" in cpu and "warning" in cpu and "f=" in cpu and "db=2877" in cpu
    assert missing.split()[:4] == ["missing", "ok", "0", "0"]
    assert "note: rule missing: the query found no series" in res.stderr
    assert "\r" not in res.stderr                       # not a terminal: no progress bar


def test_json_logs(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["apply", str(file_rules(tmp_path, BODY)), "--output-dir", str(tmp_path / "o"),
                                    "--to", str(END_S), "--log-format", "json", "-v"])
    assert res.exit_code == 0
    assert res.stdout == ""
    events = [json.loads(line) for line in res.stderr.splitlines()]
    assert all("time" in e and "event" in e for e in events)
    rules = {e["rule"]: e for e in events if e["event"] == "rule"}
    assert rules["cpu"]["status"] == "ok" and rules["cpu"]["samples"] == 2880 and rules["cpu"]["invalid"] == 3
    assert set(rules["cpu"]["by_severity"]) == {"critical", "warning"}
    assert rules["cpu"]["rows"]["db"] == 2877
    assert {e["target"] for e in events if e["event"] == "output"} == {"f", "db"}
    run = next(e for e in events if e["event"] == "run")
    assert run["ok"] is True and run["rules"] == 2 and run["failed"] == []
    assert any(e["event"] == "log" and e["level"] == "warning" and "rule missing" in e["message"] for e in events)


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, BODY)
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "vmrules", "apply", str(folder), "--output-dir",
                             str(tmp_path / "o"), "--to", str(END_S)], stderr=follower, stdout=subprocess.PIPE,
                            cwd=Path(__file__).parent.parent)
    os.close(follower)
    seen = b""
    while True:                                         # bounded: ends when the process closes the terminal
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    proc.wait(timeout=60)
    os.close(leader)
    text = seen.decode()
    assert proc.returncode == 0
    assert "[" + "#" * 24 + "] 2/2 rules" in text
    assert "samples/s" in text and "2.9 k samples" in text
    assert text.rstrip().endswith("\x1b[K") or "\r\x1b[K" in text        # the bar is cleared at the end
    quiet = subprocess.run([sys.executable, "-m", "vmrules", "apply", str(folder), "--output-dir",
                            str(tmp_path / "o2"), "--to", str(END_S), "-q"], capture_output=True, text=True,
                           cwd=Path(__file__).parent.parent)
    assert "rules," not in quiet.stderr
