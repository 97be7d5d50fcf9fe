"""A killed run's scratch files (parts beside final files, spills of SQLite tables and services) stay under
the output directory, and the next run removes them, wherever its templated paths moved, without touching
user files or the files of a run that is still going (the run lock keeps the next one waiting)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import read
from tests.support.data import END_S
from tests.support.servers import FaultServer, Reply, Seen, matrix

POINTS = [(END_S - 60 * i, str(float(i))) for i in range(10, -1, -1)]
ANSWER = matrix([({"__name__": "m", "i": "a"}, POINTS)])
USER_FILES = ["notes.part", ".keep.spill", "sub/.r0.csv.20200101_000000_abcdef.r0.part", "sub/.t.tmp"]


class Blocked:
    """A datasource and webhook server whose webhook hangs, and a SQLite write lock on the run's database,
    until released: a run then waits with a part, a table spill and a service spill on disk."""

    def __init__(self, db: Path):
        self.release = threading.Event()
        self.hooks: list[Seen] = []
        self.server = FaultServer(self._answer)
        db.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        self.db.execute("BEGIN IMMEDIATE")
        self.db_freed = False

    def _answer(self, seen: Seen) -> Reply:
        if seen.path == "/hook":
            self.hooks.append(seen)
            self.release.wait(60)
            return Reply(200, b"ok")
        return Reply(200, ANSWER)

    def free(self) -> None:
        self.release.set()
        if not self.db_freed:
            self.db_freed = True
            self.db.execute("ROLLBACK")
            self.db.close()

    def stop(self) -> None:
        self.free()
        self.server.stop()


@pytest.fixture
def blocked(tmp_path: Path) -> Iterator[Blocked]:
    b = Blocked(tmp_path / "out" / "s.db")
    yield b
    b.stop()


def rules(tmp_path: Path, url: str) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    (folder / "r.yaml").write_text(
        f"version: 1\ndatasource: {{url: '{url}'}}\n"
        "targets:\n"
        "  f: {type: csv, path: '{{ run.id }}/{{ rule.name }}.csv'}\n"     # a new folder every run
        "  db: {type: sqlite, path: s.db, table: t}\n"
        f"  hook: {{type: webhook, url: '{url}/hook'}}\n"
        "rules:\n  - {name: r0, query: m, route: [{to: [f, db]}]}\n  - {name: r1, query: m, route: [{to: hook}]}\n")
    return folder


def start(folder: Path, out: Path, tmpdir: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    args = [sys.executable, "-m", "vmrules", "apply", str(folder), "--output-dir", str(out),
            "--from", str(END_S - 600), "--to", str(END_S), "--concurrency", "4"]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=open(log, "wb"))


def until(what: str, check: Callable[[], bool], proc: subprocess.Popen[bytes]) -> None:
    """Bounded wait (30 s) for `check`; the run must still be going."""
    for _ in range(300):
        if check():
            return
        assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before {what}"
        time.sleep(0.1)
    raise AssertionError(f"no {what} within 30 s")


def found(out: Path, pattern: str) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob(pattern)}


def waiting_with_scratch(out: Path, blocked: Blocked) -> Callable[[], bool]:
    """The run holds a part (r0's CSV), a table spill (r0) and a service spill (r1), all under `out`."""
    return lambda: bool(blocked.hooks) and len(found(out, "*.spill")) == 2 and len(found(out, "*.part")) == 1


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_the_next_run_removes_what_a_killed_run_left(tmp_path: Path, blocked: Blocked, sig: int) -> None:
    out, tmpdir = tmp_path / "out", tmp_path / "tmp"
    tmpdir.mkdir()
    folder = rules(tmp_path, blocked.server.url)
    proc = start(folder, out, tmpdir, tmp_path / "first.log")
    try:
        until("part and spills under the output directory", waiting_with_scratch(out, blocked), proc)
    finally:
        proc.send_signal(sig)
        proc.wait(timeout=30)
    left = found(out, "*.part") | found(out, "*.spill")
    assert len(left) == 3 and all(p.startswith(".vmrules-scratch/") for p in found(out, "*.spill"))
    assert list(tmpdir.iterdir()) == []                        # nothing in the system's temp folder
    blocked.free()
    for name in USER_FILES:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("mine")

    second = start(folder, out, tmpdir, tmp_path / "second.log")
    assert second.wait(timeout=60) == 0, (tmp_path / "second.log").read_text()
    assert found(out, "*.part") | found(out, "*.spill") | found(out, "*.tmp") == set(USER_FILES)
    assert all((out / name).read_text() == "mine" for name in USER_FILES)
    assert not (out / ".vmrules-scratch").exists() and list(tmpdir.iterdir()) == []
    (csv,) = found(out, "r0.csv")
    assert len(read.rows(str(out / csv))) == len(POINTS) and len(read.rows(str(out / "s.db"), "t")) == len(POINTS)


def test_a_waiting_run_leaves_the_running_one_alone(tmp_path: Path, blocked: Blocked) -> None:
    out, tmpdir = tmp_path / "out", tmp_path / "tmp"
    tmpdir.mkdir()
    folder = rules(tmp_path, blocked.server.url)
    first = start(folder, out, tmpdir, tmp_path / "first.log")
    second = None
    try:
        until("part and spills under the output directory", waiting_with_scratch(out, blocked), first)
        scratch = found(out, "*.part") | found(out, "*.spill")
        second = start(folder, out, tmpdir, tmp_path / "second.log")
        until("the second run waiting for the lock",
              lambda: b"waiting for another vmrules apply" in (tmp_path / "second.log").read_bytes(), second)
        assert found(out, "*.part") | found(out, "*.spill") == scratch
        blocked.free()
        assert first.wait(timeout=60) == 0, (tmp_path / "first.log").read_text()
        assert second.wait(timeout=60) == 0, (tmp_path / "second.log").read_text()
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    assert found(out, "*.part") | found(out, "*.spill") == set() and not (out / ".vmrules-scratch").exists()
    assert len(found(out, "r0.csv")) == 2 and len(read.rows(str(out / "s.db"), "t")) == 2 * len(POINTS)
    assert len(blocked.hooks) == 2


def test_the_sweep_removes_only_listed_scratch_and_leaves_a_journaled_commit_its_files(tmp_path: Path) -> None:
    from vmrules.delivery import scratch

    out = tmp_path / "out"
    files = {"a/.x.csv.r1.r0.part": "stale", "b/.y.csv.r1.r0.part": "journaled", "data.csv": "user",
             "c/.z.csv.k2j3.tmp": "stale", "../outside.part": "user"}
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    dead = out / ".vmrules-scratch" / "r1"
    dead.mkdir(parents=True)
    (dead / "parts").write_text("".join(f"{name}\n" for name in files))
    (dead / ".db.t.abc.spill").write_text("spill")
    renames = [[str(out / "b/.y.csv.r1.r0.part"), str(out / "b/y.csv"), 1]]    # a commit journaled, not done
    (out / ".vmrules-state.json").write_text(json.dumps({"version": 1, "rules": {},
                                                         "pending": {"renames": renames, "watermarks": {}}}))
    said: list[str] = []
    scratch.sweep(str(out), "r2", said.append)
    assert {n for n in files if (out / n).exists()} == {"b/.y.csv.r1.r0.part", "data.csv", "../outside.part"}
    assert not dead.exists()
    assert said == ["removed the scratch files of run r1, which did not finish (2 beside outputs)"]
