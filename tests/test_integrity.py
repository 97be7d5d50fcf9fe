"""Nothing lost, nothing duplicated: long pauses, first runs killed half-way, shards sharing files,
static labels that would merge series."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from click.testing import CliRunner

from tests.conftest import file_rules
from tests.support import read
from tests.support.data import END_S
from vmrules.cli import main
from vmrules.state import STATE_NAME, State

TARGETS = ("targets:\n"
           "  db: {type: sqlite, path: s.db, table: t}\n"
           "  f: {type: csv, path: 'inc/{{ rule.name }}-{{ run.from }}.csv'}\n")


def run(folder: Path, out: Path, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(out), "-q", *args])
    return res.exit_code, res.output


def csv_points(folder: Path) -> list[tuple[str, int]]:
    return sorted((r["labels"], r["timestamp"]) for f in sorted(folder.glob("*.csv")) for r in read.rows(str(f)))


def db_points(db: Path) -> list[tuple[str, int]]:
    con = sqlite3.connect(db)
    try:
        return sorted((lab, int(read._norm({"timestamp": ts})["timestamp"]))
                      for lab, ts in con.execute("SELECT labels, timestamp FROM t"))
    finally:
        con.close()


def test_a_pause_longer_than_the_range_loses_nothing(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, TARGETS + "rules: [{name: cpu, query: cpu_usage, range: 5m, "
                                            "route: [{to: [db, f]}]}]\n")
    out = tmp_path / "out"
    first_to = END_S - 3 * 3600
    assert run(folder, out, "--incremental", "--lag", "0s", "--to", str(first_to))[0] == 0
    assert run(folder, out, "--incremental", "--lag", "0s", "--to", str(END_S - 3600))[0] == 0   # 2h later
    want = sorted((lab, t) for lab in {lab for lab, _ in csv_points(out / "inc")}
                  for t in range(first_to - 300, END_S - 3600 + 1, 60))
    assert len(want) == 12 * 126
    assert csv_points(out / "inc") == want
    assert db_points(out / "s.db") == want


def test_a_first_run_killed_after_its_table_committed_is_fetched_again_from_its_start(tmp_path: Path) -> None:
    """SQLite committed, the files and the state did not: the next run starts where the first one did."""
    folder = file_rules(tmp_path, TARGETS + "rules: [{name: cpu, query: cpu_usage, range: 30m, "
                                            "route: [{to: [db, f]}]}]\n")
    out = tmp_path / "out"
    assert run(folder, out, "--incremental", "--lag", "0s", "--to", str(END_S - 3600))[0] == 0
    state = json.loads((out / STATE_NAME).read_text())
    del state["rules"]["cpu"]                      # as if killed after the database commit, before the rest
    state["first_windows"] = {"cpu": (END_S - 3600 - 30 * 60) * 1000}
    (out / STATE_NAME).write_text(json.dumps(state))
    for f in (out / "inc").glob("*.csv"):
        f.unlink()
    assert run(folder, out, "--incremental", "--lag", "0s", "--to", str(END_S - 3000))[0] == 0
    assert csv_points(out / "inc") == db_points(out / "s.db")      # the CSV got the first window too
    assert len(db_points(out / "s.db")) == 12 * (31 + 10)


def test_the_first_window_is_recorded_before_anything_is_fetched(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, TARGETS + "rules: [{name: cpu, query: no_such_series, range: 30m, route: [{to: f}],"
                                            " datasource: {url: 'http://127.0.0.1:9', timeout: 1s}}]\n")
    out = tmp_path / "out"
    code, _ = run(folder, out, "--incremental", "--lag", "0s", "--to", str(END_S - 3600))
    assert code == 1
    assert State.load(str(out)).firsts == {"cpu": (END_S - 3600 - 30 * 60) * 1000}
    assert "cpu" not in State.load(str(out)).watermarks


def test_shards_never_replace_each_others_files(tmp_path: Path) -> None:
    body = "".join(f"  - {{name: r{i}, query: cpu_usage, route: [{{to: all}}]}}\n" for i in range(6))
    folder = file_rules(tmp_path, "targets: {all: {type: csv, path: all.csv}}\nrules:\n" + body)
    out = tmp_path / "out"
    window = ["--from", str(END_S - 600), "--to", str(END_S)]
    code, output = run(folder, out, *window, "--shard", "0/2")
    assert code == 2 and "all.csv" in output and "of shard 1/2" in output and "--incremental" in output
    assert not (out / "all.csv").exists()
    for shard in ("0/2", "1/2"):                   # incremental shards add to the file they share
        code, output = run(folder, out, *window, "--shard", shard, "--incremental", "--lag", "0s")
        assert code == 0, output
    rules = sorted({r["rule"] for r in read.rows(str(out / "all.csv"))})
    assert rules == [f"r{i}" for i in range(6)]
    assert len(read.rows(str(out / "all.csv"))) == 6 * 12 * 11


def test_static_labels_that_merge_series_fail_the_rule(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, TARGETS + "rules:\n"
                        "  - {name: merged, query: cpu_usage, labels: {instance: all}, route: [{to: [db, f]}]}\n"
                        "  - {name: fine, query: cpu_usage, labels: {team: ops}, route: [{to: f}]}\n")
    out = tmp_path / "out"
    code, output = run(folder, out, "--from", str(END_S - 600), "--to", str(END_S))
    assert code == 1
    assert "rule merged: the static labels {'instance': 'all'} make the series" in output
    assert "the same series" in output
    assert not (out / "s.db").exists() and {f.name.split("-")[0] for f in (out / "inc").glob("*.csv")} == {"fine"}
