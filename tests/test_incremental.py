"""Incremental runs (watermarks, journal), backfill chunks and shards: every sample exactly once."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import file_rules
from tests.support import read
from tests.support.data import END_S
from tests.support.servers import VictoriaMetrics
from vmrules.cli import main
from vmrules.commands.apply import ApplyOptions, _select, _window, shard_of
from vmrules.config.validate import load_ruleset
from vmrules.delivery.state import STATE_NAME, State
from vmrules.model import Rule

VMRULES = [sys.executable, "-m", "vmrules"]
ROOT = Path(__file__).parent.parent
TARGETS = ("targets:\n"
           "  app: {type: sqlite, path: s.db, table: app}\n"
           "  ups: {type: sqlite, path: s.db, table: ups, mode: upsert}\n"
           "  f: {type: csv, path: 'inc/{{ rule.name }}-{{ run.from }}.csv'}\n")
RULE = "rules: [{name: cpu, query: cpu_usage, range: 1h, step: 1m, route: [{to: [app, ups, f]}]}]\n"


def run(folder: Path, out: Path, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(out), "-q", *args])
    return res.exit_code, res.output


def keys(db: Path, table: str) -> list[tuple[str, str]]:
    return sorted(sqlite3.connect(db).execute(f'SELECT labels, timestamp FROM "{table}"').fetchall())


def csv_keys(folder: Path) -> list[tuple[str, str]]:
    rows = [r for f in sorted(folder.glob("*.csv")) for r in read.rows(str(f))]
    return sorted((r["labels"], iso(int(r["timestamp"]))) for r in rows)    # read.rows gives unix seconds


def iso(s: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(s))


def test_windows_start_after_the_watermark() -> None:
    rule = Rule("r", "q", None, range_ms=3_600_000, step_ms=60_000)  # type: ignore[arg-type]
    opts = ApplyOptions(incremental=True, lag_ms=90_000)
    state = State("unused")
    to = END_S * 1000 + 30_000
    first = _window(rule, opts, to, state)
    assert (first.start_ms, first.end_ms) == (END_S * 1000 - 3_660_000, END_S * 1000 - 60_000)
    state.watermarks["r"] = first.end_ms
    assert _window(rule, opts, to, state).points == 0                   # nothing new yet
    later = _window(rule, opts, to + 300_000, state)
    assert (later.start_ms, later.end_ms) == (first.end_ms + 60_000, first.end_ms + 300_000)
    state.watermarks["r"] = first.end_ms + 1                              # off the grid: next point after it
    assert _window(rule, opts, to + 300_000, state).start_ms == first.end_ms + 60_000
    instant = Rule("i", "q", None, instant=True, step_ms=60_000)  # type: ignore[arg-type]
    assert _window(instant, opts, to, State("unused", {"i": END_S * 1000 - 60_000})).points == 0
    assert _window(instant, opts, to + 60_000, State("unused", {"i": END_S * 1000 - 60_000})).instant


def test_runs_one_after_another_deliver_each_point_once(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, TARGETS + RULE)
    out = tmp_path / "out"
    for to in (END_S - 3 * 3600, END_S - 3 * 3600 + 17 * 60, END_S - 3 * 3600 + 17 * 60, END_S - 2 * 3600 - 1):
        code, output = run(folder, out, "--incremental", "--lag", "0s", "--to", str(to))
        assert code == 0, output
    state = json.loads((out / STATE_NAME).read_text())
    assert state["rules"]["cpu"]["watermark_ms"] == (END_S - 2 * 3600 - 60) * 1000
    expected = sorted({(lab, iso(t)) for lab, _ in keys(out / "s.db", "app")
                       for t in range(END_S - 4 * 3600 + 60, END_S - 2 * 3600, 60)})
    assert len(expected) == 12 * 119
    assert keys(out / "s.db", "app") == expected
    assert keys(out / "s.db", "ups") == expected
    assert csv_keys(out / "inc") == expected
    assert len(list((out / "inc").glob("*.csv"))) == 3             # the run with nothing new wrote no file


def test_a_table_never_gets_rows_it_already_has(tmp_path: Path) -> None:
    """A run killed after its SQLite commit but before its state: the next run fetches the window again."""
    folder = file_rules(tmp_path, TARGETS + RULE)
    out = tmp_path / "out"
    assert run(folder, out, "--incremental", "--lag", "0s", "--to", str(END_S - 3600))[0] == 0
    before = keys(out / "s.db", "app")
    (out / STATE_NAME).unlink()                       # as if the state and the file never got written
    for f in (out / "inc").glob("*.csv"):
        f.unlink()
    assert run(folder, out, "--incremental", "--lag", "0s", "--to", str(END_S - 3600 + 600))[0] == 0
    after = keys(out / "s.db", "app")
    assert len(after) == len(set(after)) == len(before) + 12 * 10
    assert csv_keys(out / "inc") == [k for k in after if k[1] >= iso(END_S - 6600)]   # the whole window again


def test_a_journaled_commit_is_finished_by_the_next_run(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, TARGETS + RULE)
    out = tmp_path / "out"
    assert run(folder, out, "--incremental", "--lag", "0s", "--to", str(END_S - 3600))[0] == 0
    state = State.load(str(out))
    mark = state.watermarks["cpu"]
    ready = out / "inc" / ".late.csv.123.tmp"
    ready.write_text("rule,value\ncpu,1\n")
    state.pending = {"renames": [[str(ready), str(out / "inc" / "late.csv"), os.stat(ready).st_ino]],
                     "watermarks": {"cpu": mark + 600_000}}
    state.save()                                     # a run killed right after writing its journal
    assert run(folder, out, "--incremental", "--lag", "0s", "--to", str(END_S - 3600 + 600))[0] == 0
    assert (out / "inc" / "late.csv").read_text() == "rule,value\ncpu,1\n"
    assert not ready.exists()
    after = State.load(str(out))
    assert after.pending is None and after.watermarks["cpu"] == mark + 600_000   # nothing new to fetch


def test_a_file_of_an_earlier_run_is_added_to(tmp_path: Path) -> None:
    """The same path in every run: each run adds its rows to the file; none is lost or repeated."""
    folder = file_rules(tmp_path, "targets: {f: {type: csv, path: latest.csv}}\n"
                                  "rules: [{name: cpu, query: cpu_usage, range: 1h, route: [{to: f}]}]\n")
    out = tmp_path / "out"
    for to in (END_S - 3600, END_S - 3600, END_S - 1800):
        assert run(folder, out, "--incremental", "--lag", "0s", "--to", str(to))[0] == 0
    got = sorted((r["labels"], r["timestamp"]) for r in read.rows(str(out / "latest.csv")))
    labels = sorted({lab for lab, _ in got})
    assert len(labels) == 12
    assert got == sorted((lab, t) for lab in labels for t in range(END_S - 7200, END_S - 1800 + 1, 60))
    assert State.load(str(out)).watermarks["cpu"] == (END_S - 1800) * 1000


def test_backfill_in_chunks_equals_one_run(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, TARGETS + RULE)
    window = ["--from", str(END_S - 4 * 3600 + 1), "--to", str(END_S)]
    assert run(folder, tmp_path / "one", *window)[0] == 0
    res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(tmp_path / "chunked"), *window,
                                    "--chunk", "1h", "--incremental", "--lag", "0s"])
    assert res.exit_code == 0, res.output
    assert res.stderr.count("chunk ") == 4 and "[####################] chunk 4/4" in res.stderr
    whole = keys(tmp_path / "one" / "s.db", "app")
    assert len(whole) == 12 * 240
    assert keys(tmp_path / "chunked" / "s.db", "app") == whole
    assert csv_keys(tmp_path / "chunked" / "inc") == whole
    again = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(tmp_path / "chunked"), *window,
                                      "--chunk", "1h", "--incremental", "--lag", "0s", "-q"])
    assert again.exit_code == 0, again.output         # resumed: everything is delivered already
    assert keys(tmp_path / "chunked" / "s.db", "app") == whole


def test_backfill_chunks_add_to_a_path_they_share(tmp_path: Path) -> None:
    """The first chunk that writes a file replaces it, the later ones add to it: a rerun is no duplicate."""
    folder = file_rules(tmp_path, "targets: {f: {type: csv, path: all.csv}}\n"
                                  "rules: [{name: cpu, query: cpu_usage, route: [{to: f}]}]\n")
    for _ in range(2):
        code, output = run(folder, tmp_path / "out", "--from", str(END_S - 7200 + 1), "--to", str(END_S),
                           "--chunk", "25m")
        assert code == 0, output
        got = sorted((r["labels"], r["timestamp"]) for r in read.rows(str(tmp_path / "out" / "all.csv")))
        assert len(got) == len(set(got)) == 12 * 120


def test_shards_split_the_rules_stably_and_completely(tmp_path: Path) -> None:
    body = "".join(f"  - {{name: rule_{i}, query: cpu_usage, route: [{{to: f}}]}}\n" for i in range(40))
    folder = file_rules(tmp_path, "targets: {f: {type: csv, path: '{{ rule.name }}.csv'}}\nrules:\n" + body)
    ruleset = load_ruleset([str(folder)])
    shards = [[r.name for r in _select(ruleset, (), (i, 3))] for i in range(3)]
    assert sorted(sum(shards, [])) == sorted(r.name for r in ruleset.rules)
    assert all(shards)
    assert shard_of("rule_7", 3) == shard_of("rule_7", 3) == [i for i in range(3) if "rule_7" in shards[i]][0]
    res = CliRunner().invoke(main, ["apply", str(folder), "--dry-run", "--shard", "1/3", "--to", str(END_S)])
    assert res.exit_code == 0
    assert sorted(line.split()[1].rstrip(":") for line in res.output.splitlines()
                  if line.startswith("rule ")) == sorted(shards[1])
    bad = CliRunner().invoke(main, ["apply", str(folder), "--shard", "3/3"])
    assert bad.exit_code == 2 and "0 <= I < N" in bad.output


# -- against a real VictoriaMetrics, with data arriving and runs killed -------------------------
def _samples(first_s: int, last_s: int) -> list[dict[str, object]]:
    ts = list(range(first_s, last_s + 1, 60))
    return [{"metric": {"__name__": "arrive", "s": str(s)}, "values": [float(s * 1000 + t // 60 % 1000) for t in ts],
             "timestamps": [t * 1000 for t in ts]} for s in range(5)]


def test_exactly_once_while_data_arrives_and_runs_are_killed(tmp_path: Path) -> None:
    vm = VictoriaMetrics(str(tmp_path))
    try:
        folder = tmp_path / "rules"
        folder.mkdir()
        (folder / "r.yaml").write_text(
            f"version: 1\ndatasource: {{url: '{vm.url}'}}\n" + TARGETS +
            "rules: [{name: arrive, query: arrive, range: 10m, step: 1m, route: [{to: [app, ups, f]}]}]\n")
        out = tmp_path / "out"
        start = END_S - 3 * 3600
        vm.import_lines(_samples(start, start + 600))
        until = start + 600
        vm.wait_for("arrive", 5, until)
        rnd = random.Random(7)
        killed, first_to, whole = 0, until + 0, 0.0
        for i in range(24):                             # bounded: 24 runs, about half of them killed
            more = rnd.randint(1, 4) * 60
            vm.import_lines(_samples(until + 60, until + more))
            until += more
            first_to = first_to if i else until
            vm.wait_for("arrive", 5, until)
            cmd = [*VMRULES, "apply", str(folder), "--output-dir", str(out), "-q", "--incremental", "--lag", "0s",
                   "--to", str(until)]
            started = time.monotonic()
            proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
            if i % 2:
                time.sleep(rnd.uniform(0.3, 0.95) * whole)  # the first ~30% is start-up; the commit is at the end
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    killed += 1
            _, err = proc.communicate(timeout=120)
            assert proc.returncode in (0, -signal.SIGKILL), err
            if not i % 2:
                whole = time.monotonic() - started            # the last run that was never killed
        subprocess.run([*cmd[:-1], str(until)], cwd=ROOT, check=True, timeout=120)
        assert killed >= 6
        expected = sorted((json.dumps({"s": str(s)}, separators=(",", ":")), iso(t))
                          for s in range(5) for t in range(first_to - 600, until + 1, 60))
        assert keys(out / "s.db", "app") == expected           # appended: no row twice, none missing
        assert keys(out / "s.db", "ups") == expected
        assert csv_keys(out / "inc") == expected                # the run files together: each row once
        assert not [f for f in os.listdir(out / "inc") if not f.endswith(".csv")]
    finally:
        vm.stop()


@pytest.mark.parametrize("option", ["--lag", "--chunk"])
def test_bad_durations_are_usage_errors(tmp_path: Path, option: str) -> None:
    folder = file_rules(tmp_path, RULE.replace("[app, ups, f]", "f") + "targets: {f: {type: csv, path: x.csv}}\n")
    res = CliRunner().invoke(main, ["apply", str(folder), option, "soon", "--from", "now-1h"])
    assert res.exit_code == 2 and option in res.output


def test_a_failed_rename_is_finished_by_the_next_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = file_rules(tmp_path, TARGETS + RULE)
    out = tmp_path / "out"
    real = os.replace

    def full_disk(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", lambda a, b: full_disk(a, b) if str(b).endswith(".csv") else real(a, b))
    code, output = run(folder, out, "--incremental", "--lag", "0s", "--to", str(END_S - 3600))
    assert code == 1 and "files not put in place" in output and "No space left" in output
    assert not list((out / "inc").glob("*.csv"))
    assert State.load(str(out)).pending is not None          # the journal holds the commit
    monkeypatch.setattr(os, "replace", real)
    assert run(folder, out, "--incremental", "--lag", "0s", "--to", str(END_S - 3600))[0] == 0
    assert csv_keys(out / "inc") == keys(out / "s.db", "app")   # finished once, nothing twice
    assert State.load(str(out)).watermarks["cpu"] == (END_S - 3600) * 1000


@pytest.mark.parametrize("text", ["{not json", '{"version": 2, "rules": {}}', '{"version": 1, "rules": {"r": 5}}',
                                  '[1]', '{"version": 1, "rules": {}, "pending": [1]}'])
def test_a_damaged_state_file_is_a_clear_error(tmp_path: Path, text: str) -> None:
    folder = file_rules(tmp_path, TARGETS + RULE)
    out = tmp_path / "out"
    out.mkdir()
    (out / STATE_NAME).write_text(text)
    code, output = run(folder, out, "--incremental", "--to", str(END_S))
    assert code == 2
    assert STATE_NAME in output and ("cannot read" in output or "not a vmrules state file" in output)
    assert not (out / "s.db").exists()
