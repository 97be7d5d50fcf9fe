"""The repository's own rules/ on the bundled data: one whole-day run, --chunk runs of several sizes and
incremental runs at several cadences (some killed) give the same rows in every target."""

from __future__ import annotations

import csv
import json
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support import read
from vmrules.cli import main

ROOT = Path(__file__).parent.parent
END_S = 1_793_491_200                      # the bundled data: 24 h at 5 m, ending here
FIRST_S = END_S - 287 * 300
DATA = f"file:{ROOT / 'examples' / 'data' / 'node.jsonl'}"
RULES = ("node_cpu", "node_memory", "node_disk_free", "node_up")


EPISODES = """version: 1
targets:
  episodes_csv: {type: csv, path: "episodes/{{ run.from }}.csv", shape: episodes}
  episodes_db: {type: sqlite, path: node.db, table: episodes, shape: episodes}
"""


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """rules/ as it is, with its alerts also sent to two targets of shape episodes."""
    folder = tmp_path_factory.mktemp("rules")
    shutil.copy(ROOT / "rules" / "targets.yaml", folder / "targets.yaml")
    text = (ROOT / "rules" / "node.yaml").read_text()
    assert text.count("to: [alerts_csv, node_db]") == 4
    (folder / "node.yaml").write_text(text.replace("to: [alerts_csv, node_db]",
                                                   "to: [alerts_csv, node_db, episodes_csv, episodes_db]"))
    (folder / "episodes.yaml").write_text(EPISODES)
    return folder


def apply(rules: Path, out: Path, *args: str) -> None:
    res = CliRunner().invoke(main, ["apply", str(rules), "--datasource", DATA, "--output-dir", str(out), "-q", *args])
    assert res.exit_code == 0, res.output


Row = tuple[str, str, int, float, str | None]


def outputs(out: Path) -> dict[str, Counter[Row]]:
    """Every target's rows, as (rule, instance and mount, unix seconds, value, severity) with their counts."""
    def key(r: dict) -> Row:
        where = f"{r.get('instance', '')}{r.get('mountpoint', '')}"
        return (r["rule"], where, r["timestamp"], round(float(r["value"]), 6), r["severity"])

    got = {"alerts_csv": Counter(key(r) for f in sorted((out / "alerts").glob("*.csv"))
                                 for r in read.rows(str(f)))}
    got["history"] = Counter(key(dict(r, **json.loads(r["labels"]))) for r in read.dataset(
        out / "history", "rule, labels, CAST(epoch(timestamp) AS BIGINT) AS timestamp, value, severity"))
    con = sqlite3.connect(out / "node.db")
    try:
        tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'") if t in RULES]
    finally:
        con.close()
    got["node_db"] = Counter(key(r) for t in tables for r in read.rows(str(out / "node.db"), t))
    got["episodes_csv"] = Counter(episode(r) for f in sorted((out / "episodes").glob("*.csv"))
                                  for r in csv.DictReader(open(f, newline="")))
    con = sqlite3.connect(out / "node.db")
    con.row_factory = sqlite3.Row
    try:
        got["episodes_db"] = Counter(episode(dict(r)) for r in con.execute("SELECT * FROM episodes"))
    finally:
        con.close()
    return got


Episode = tuple[str, str, str, str, str | None, float, float, int]


def episode(r: dict) -> Episode:
    labels = json.loads(r["labels"])
    return (r["rule"], labels["instance"] + labels.get("mountpoint", ""), r["severity"], r["start"],
            r["end"] or None, round(float(r["peak"]), 6), round(float(r["last_value"]), 6), int(r["samples"]))


def without_open(got: dict[str, Counter]) -> dict[str, Counter]:
    """Incremental runs send a file an episode when it ends; a whole run also sends the open ones at its end."""
    return {**got, "episodes_csv": Counter({e: n for e, n in got["episodes_csv"].items() if e[4] is not None})}


@pytest.fixture(scope="module")
def whole(rules: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Counter[Row]]:
    out = tmp_path_factory.mktemp("whole")
    apply(rules, out, "--from", str(FIRST_S), "--to", str(END_S))
    got = outputs(out)
    severities = Counter(row[4] for row in got["node_db"].elements())
    assert severities["critical"] > 50 and severities["warning"] > 50 and sum(got["history"].values()) == 2 * 40 * 288
    assert got["episodes_csv"] == got["episodes_db"]
    ends = Counter(e[4] is None for e in got["episodes_db"])
    assert ends[True] > 10 and ends[False] > 100           # episodes still open at the end, and ended ones
    assert sum(e[7] for e in got["episodes_db"]) == sum(got["node_db"].values())   # every alert row in one
    return got


@pytest.mark.parametrize("chunk", ["25m", "1h", "7h"])
def test_chunks_give_the_rows_of_one_run(rules: Path, whole: dict[str, Counter[Row]], tmp_path: Path,
                                         chunk: str) -> None:
    apply(rules, tmp_path, "--from", str(FIRST_S), "--to", str(END_S), "--chunk", chunk)
    assert outputs(tmp_path) == whole              # the last chunk sends the episodes still open


@pytest.mark.parametrize("cadence_m", [10, 35])
def test_incremental_runs_give_the_rows_of_one_run(rules: Path, whole: dict[str, Counter[Row]], tmp_path: Path,
                                                   cadence_m: int) -> None:
    first_to = FIRST_S + 6 * 3600 - 300           # the first run takes the rules' range: 6h ending here
    for to in [*range(first_to, END_S, cadence_m * 60), END_S]:
        apply(rules, tmp_path, "--incremental", "--lag", "0s", "--to", str(to))
    assert outputs(tmp_path) == without_open(whole)


def test_incremental_runs_some_killed_give_the_rows_of_one_run(rules: Path, whole: dict[str, Counter[Row]],
                                                               tmp_path: Path) -> None:
    rnd = random.Random(13)
    first_to = FIRST_S + 6 * 3600 - 300
    killed, took = 0, 0.0
    cmd = [sys.executable, "-m", "vmrules", "apply", str(rules), "--datasource", DATA, "--output-dir", str(tmp_path),
           "-q", "--incremental", "--lag", "0s", "--to"]
    for i, to in enumerate([*range(first_to, END_S, 47 * 60), END_S]):   # bounded: 24 runs
        started = time.monotonic()
        proc = subprocess.Popen([*cmd, str(to)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
        if i % 2:
            time.sleep(rnd.uniform(0.4, 1.0) * took)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                killed += 1
        _, err = proc.communicate(timeout=120)
        assert proc.returncode in (0, -signal.SIGKILL), err
        took = took or time.monotonic() - started
    subprocess.run([*cmd, str(END_S)], cwd=ROOT, check=True, timeout=120)   # the last one finishes the day
    assert killed >= 4
    assert outputs(tmp_path) == without_open(whole)


def test_a_window_agrees_with_a_longer_run(rules: Path, whole: dict[str, Counter[Row]], tmp_path: Path) -> None:
    """`--from A --to B` reads the lookback before A: its rows are the whole run's rows in [A, B]."""
    a, b = FIRST_S + 7 * 3600 + 1234, FIRST_S + 13 * 3600
    apply(rules, tmp_path, "--from", str(a), "--to", str(b))
    got = outputs(tmp_path)
    for target in ("alerts_csv", "history", "node_db"):
        want = Counter({r: n for r, n in whole[target].items() if a <= r[2] <= b})
        assert got[target] == want, target
    res = CliRunner().invoke(main, ["plan", str(rules), "--datasource", DATA, "--from", str(a), "--to", str(b),
                                    "--format", "json"])
    assert res.exit_code == 0, res.output
    planned = {r["name"]: r for r in json.loads(res.output)["rules"]}
    for rule in RULES:
        alerts = sum(n for r, n in got["node_db"].items() if r[0] == rule)
        assert planned[rule]["counts"]["alerts"] == alerts, rule


def test_dry_run_shows_the_lookback_or_the_carried_state(rules: Path, tmp_path: Path) -> None:
    def dry(*args: str) -> str:
        res = CliRunner().invoke(main, ["apply", str(rules), "--datasource", DATA, "--output-dir", str(tmp_path),
                                        "--dry-run", *args])
        assert res.exit_code == 0, res.output
        return res.output

    text = dry("--to", str(END_S))
    assert "lookback: 20m before the window, for the alert state" in text   # node_cpu: for 15m, and a step
    assert "lookback: 15m before the window" in text                          # node_memory, node_up: for 10m
    apply(rules, tmp_path, "--incremental", "--lag", "0s", "--to", str(END_S - 3600))
    text = dry("--incremental", "--lag", "0s", "--to", str(END_S))
    assert text.count("alert state: carried from 2026-10-31T23:00:00") == 4 and "lookback:" not in text
