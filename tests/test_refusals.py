"""Clear refusals instead of wrong results: too many requests, replace without the rule column, the
reserved watermark table, and a full disk under SQLite (reported as such, nothing already written lost)."""

from __future__ import annotations

import resource
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from click.testing import CliRunner

from tests.conftest import file_rules
from tests.support.data import END_S
from tests.support.servers import FaultServer, Reply, matrix
from vmrules import make_target, write_table
from vmrules.cli import main
from vmrules.targets import sqlite as sqlite_target

WINDOW = ["--from", str(END_S - 600), "--to", str(END_S)]
ROWS = 11 * 16                     # the test data over WINDOW: 11 points of 16 series


def apply(folder: Path, out: Path, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(out), *WINDOW, *args])
    return res.exit_code, res.stderr


def count(db: Path, table: str) -> int:
    con = sqlite3.connect(db)
    try:
        return int(con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])
    finally:
        con.close()


def tables(db: Path) -> set[str]:
    con = sqlite3.connect(db)
    try:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        con.close()


# -- requests per rule ----------------------------------------------------------
def test_a_window_needing_too_many_requests_is_refused_before_any(server: FaultServer, tmp_path: Path) -> None:
    server.script = lambda seen: Reply(200, matrix([({"__name__": "m"}, [(END_S, "1")])]))
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "r.yaml").write_text(
        f"version: 1\ndatasource: {{url: '{server.url}', max_points_per_series: 1}}\n"
        "targets: {f: {type: csv, path: out.csv}}\n"
        "rules:\n  - {name: r0, query: m, range: 1h, route: [{to: f}]}\n")
    code, stderr = apply(folder, tmp_path / "out", "--from", str(END_S - 1000 * 60), "--to", str(END_S))
    assert code == 1
    assert ("error: rule r0: datasource " in stderr and "the window 2026-10-31T07:20:00Z .. 2026-11-01T00:00:00Z: "
            "1,001 points need 1,001 requests of at most 1 point per series (max_points_per_series), more than "
            "the 1,000 allowed per rule" in stderr), stderr
    assert server.seen == [] and not (tmp_path / "out" / "out.csv").exists()


# -- replace needs the rule column ------------------------------------------------
def test_replace_without_the_rule_column_is_refused(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, "targets:\n  db: {type: sqlite, path: s.db, table: t, mode: replace, "
                                  "columns: [timestamp, value]}\n"
                                  "rules:\n  - {name: r0, query: cpu_usage, route: [{to: db}]}\n")
    for _ in range(3):
        code, stderr = apply(folder, tmp_path / "out")
        assert code == 2 and "replace swaps a rule's rows for new ones, which needs the rule column" in stderr
    assert not (tmp_path / "out" / "s.db").exists()
    rows = pa.table({"timestamp": pa.array([1000], pa.timestamp("ms", "UTC")), "value": [1.0]})
    target = make_target("sqlite", path="s.db", table="t", mode="replace", columns=["timestamp", "value"])
    with pytest.raises(ValueError, match="needs the rule column"):
        write_table(rows, target, str(tmp_path / "api"))
    assert "t" not in tables(tmp_path / "api" / "s.db")


# -- the watermark table is vmrules' own ----------------------------------------------
def test_a_table_name_rendered_as_the_watermark_table_is_refused_at_run_time(tmp_path: Path) -> None:
    # validate renders run.from as 2026-10-31T23:00:00Z ('data'); this run's window starts later
    table = "{{ 'vmrules_watermarks' if run.from > '2026-10-31T23:30' else 'data' }}"
    folder = file_rules(tmp_path, f"targets:\n  db: {{type: sqlite, path: s.db, table: \"{table}\"}}\n"
                                  "  f: {type: csv, path: r0.csv}\n"
                                  "rules:\n  - {name: r0, query: cpu_usage, route: [{to: [db, f]}]}\n")
    assert CliRunner().invoke(main, ["validate", str(folder)]).exit_code == 0
    code, stderr = apply(folder, tmp_path / "out")
    assert code == 1
    assert ("error: rule r0: target db: table name 'vmrules_watermarks' is reserved: vmrules keeps the watermarks "
            "of incremental runs in it") in stderr, stderr
    out = tmp_path / "out"
    assert not (out / "r0.csv").exists() and (not (out / "s.db").exists() or tables(out / "s.db") == set())
    with pytest.raises(ValueError, match="reserved"):
        write_table(pa.table({"rule": ["x"]}), make_target("sqlite", path="s.db", table="VMRULES_WATERMARKS"),
                    str(tmp_path / "api"))


# -- a full disk --------------------------------------------------------------------
def test_a_full_disk_in_sqlite_is_reported_as_enospc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = file_rules(tmp_path, "targets:\n  db: {type: sqlite, path: s.db, table: t}\n"
                                  "rules:\n  - {name: r0, query: '{job=\"node\"}', route: [{to: db}]}\n")
    out = tmp_path / "out"
    assert apply(folder, out) == (0, "")
    con = sqlite3.connect(out / "s.db")
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    con.close()
    connect = sqlite3.connect

    def small_disk(*args: Any, **kwargs: Any) -> sqlite3.Connection:   # SQLITE_FULL, as a full disk gives
        con = connect(*args, **kwargs)
        con.execute(f"PRAGMA max_page_count = {pages + 1}")
        return con

    monkeypatch.setattr(sqlite_target.sqlite3, "connect", small_disk)
    code, stderr = apply(folder, out, "-q")
    assert code == 1
    assert "error: rule r0: target db: table t: no space left on device (ENOSPC) for " in stderr, stderr
    assert "SQLite says database or disk is full; nothing of this rule was written to it" in stderr
    assert "cannot rollback" not in stderr
    monkeypatch.undo()
    assert count(out / "s.db", "t") == ROWS                 # the first run's rows, and no more
    assert apply(folder, out) == (0, "")                    # the database is free again, in this process too
    assert count(out / "s.db", "t") == 2 * ROWS


def _small_files(limit: int) -> None:
    """In the child: writes past `limit` bytes fail with EFBIG instead of killing the process."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_failed_write_under_sqlite_is_reported_not_hidden_by_the_rollback(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, "targets:\n  db: {type: sqlite, path: s.db, table: t}\n"
                                  "rules:\n  - {name: r0, query: '{job=\"node\"}', route: [{to: db}]}\n")
    out = tmp_path / "out"
    args = [sys.executable, "-m", "vmrules", "apply", str(folder), "--output-dir", str(out), "-q"]
    first = subprocess.run([*args, *WINDOW], capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    longer = ["--from", str(END_S - 4 * 3600), "--to", str(END_S)]       # 3,840 rows: far past the limit
    res = subprocess.run([*args, *longer], capture_output=True, text=True, timeout=120,
                         preexec_fn=lambda: _small_files(150_000))
    assert res.returncode == 1
    assert "error: rule r0: target db: table t: " in res.stderr and "disk I/O error" in res.stderr, res.stderr
    assert "cannot rollback" not in res.stderr
    assert count(out / "s.db", "t") == ROWS
