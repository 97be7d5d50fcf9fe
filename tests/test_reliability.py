"""The promises of README "Guarantees", each with a test that fails when the promise is broken."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from tests.conftest import file_rules
from tests.support import read
from tests.support.data import END_S, export_jsonl
from tests.support.servers import FaultServer, Reply, Seen, matrix, self_signed
from vmrules.cli import main
from vmrules.delivery.lock import run_lock

VMRULES = [sys.executable, "-m", "vmrules"]
WINDOW = ["--from", str(END_S - 600), "--to", str(END_S)]
POINTS = [(END_S - 60 * i, str(float(i))) for i in range(10, -1, -1)]
GOOD = matrix([({"__name__": "m", "i": "a"}, POINTS), ({"__name__": "m", "i": "b"}, POINTS)])


pytestmark = pytest.mark.usefixtures("fast_backoff")


def rules(tmp_path: Path, url: str, extra: str = "", n: int = 1, timeout: str = "2s") -> Path:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    body = "".join(f"  - {{name: r{i}, query: 'm', route: [{{to: [f, db]}}]}}\n" for i in range(n))
    (folder / "r.yaml").write_text(
        f"version: 1\ndatasource: {{url: '{url}', timeout: {timeout}{extra}}}\n"
        "targets:\n  f: {type: csv, path: '{{ rule.name }}.csv'}\n  db: {type: sqlite, path: s.db, table: t}\n"
        f"rules:\n{body}")
    return folder


def apply(folder: Path, out: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    env = {**env, "VMRULES_ALLOW_ENV": ",".join(env)} if env else None     # rule files read only allowed variables
    res = CliRunner(env=env).invoke(main, ["apply", str(folder), "--output-dir", str(out), *WINDOW, *args])
    return res.exit_code, res.stdout, res.stderr


# -- 1. retries and strict answers --------------------------------------------
@pytest.mark.parametrize("replies, message", [
    ([Reply(reset=True)] * 3, "cannot connect"),
    ([Reply(503, b"overloaded")] * 3, "HTTP 503: overloaded (after 3 attempts)"),
    ([Reply(200, GOOD, drip_s=0.05)] * 3, "not complete within"),
    ([Reply(200, GOOD[:50], content_length=len(GOOD))] * 3, "connection broke"),
    ([Reply(200, GOOD[:-5])], "not valid JSON"),
    ([Reply(502, b"<html><title>502 Bad Gateway</title></html>")] * 3, "502 Bad Gateway"),
    ([Reply(200, matrix([], isPartial=True))], "partial"),
    ([Reply(200, matrix([({"a": "1"}, POINTS), ({"a": "1"}, POINTS)]))], "duplicate label set"),
    ([Reply(422, b'{"status":"error","errorType":"422","error":"too many points"}')], "too many points"),
])
def test_a_failing_rule_writes_nothing_and_is_named(server: FaultServer, tmp_path: Path, replies: list[Reply],
                                                    message: str) -> None:
    server.script = list(replies)
    code, _, stderr = apply(rules(tmp_path, server.url, timeout="500ms"), tmp_path / "out")
    assert code == 1
    assert "error: rule r0: datasource " in stderr and message in stderr
    assert not (tmp_path / "out" / "r0.csv").exists()
    db = tmp_path / "out" / "s.db"
    assert not db.exists() or sqlite3.connect(db).execute(
        "SELECT count(*) FROM sqlite_master WHERE name = 't'").fetchone() == (0,)
    assert len(server.seen) == len(replies)          # 4xx and bad answers are not retried


def test_transient_faults_then_the_right_rows(server: FaultServer, tmp_path: Path) -> None:
    server.script = [Reply(reset=True), Reply(503, b"", {"Retry-After": "0"}), Reply(200, GOOD)]
    code, _, stderr = apply(rules(tmp_path, server.url), tmp_path / "out")
    assert code == 0, stderr
    got = read.rows(str(tmp_path / "out" / "r0.csv"))
    assert sorted((r["i"], r["timestamp"], r["value"]) for r in got) == \
        sorted((i, t, float(v)) for i in "ab" for t, v in POINTS)


def test_nan_and_infinities_are_values(server: FaultServer, tmp_path: Path) -> None:
    pts = [(END_S - 120, "NaN"), (END_S - 60, "+Inf"), (END_S, "-Inf")]
    server.script = [Reply(200, matrix([({"__name__": "m"}, pts)]))]
    code, _, stderr = apply(rules(tmp_path, server.url), tmp_path / "out")
    assert code == 0, stderr
    assert [r["value"] for r in read.rows(str(tmp_path / "out" / "r0.csv"))][1:] == [float("inf"), float("-inf")]


# -- 2. crash safety, and one run at a time -----------------------------------
def test_sigkill_never_leaves_a_partial_file(tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text(export_jsonl() * 1)
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "r.yaml").write_text(
        f"version: 1\ndatasource: {{url: 'file:{data}'}}\ndefaults: {{range: 4h, step: 1m}}\n"
        "targets:\n  j: {type: json, path: all.json}\n  p: {type: parquet, path: all.parquet}\n"
        "  c: {type: csv, path: '{{ rule.name }}.csv'}\n  db: {type: sqlite, path: s.db, table: t}\n"
        "rules:\n" + "".join(f"  - {{name: r{i}, query: cpu_usage, route: [{{to: [j, p, c, db]}}]}}\n"
                             for i in range(6)))
    out = tmp_path / "out"
    per_rule = 12 * 240
    cmd = [*VMRULES, "apply", str(folder), "--output-dir", str(out), "-q", "--to", str(END_S)]
    runs = []
    for _ in range(2):
        started = time.monotonic()
        subprocess.run(cmd, check=True, cwd=Path(__file__).parent.parent, timeout=120)
        runs.append(time.monotonic() - started)
    whole = min(runs)                                   # one complete run, warm
    rnd = random.Random(5)
    killed = 0
    for _ in range(150):                                # bounded; stops after 50 kills mid-run
        if killed >= 50:
            break
        proc = subprocess.Popen(cmd, cwd=Path(__file__).parent.parent)
        time.sleep(rnd.uniform(0.25, 0.9) * whole)     # the first ~25% is interpreter start-up
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait(timeout=60)
        if (out / "all.json").exists():
            assert len(json.loads((out / "all.json").read_text())) == 6 * per_rule
        if (out / "all.parquet").exists():
            assert pq.read_table(out / "all.parquet").num_rows == 6 * per_rule
        for i in range(6):
            if (out / f"r{i}.csv").exists():
                assert len(read.rows(str(out / f"r{i}.csv"))) == per_rule
        if (out / "s.db").exists():
            con = sqlite3.connect(out / "s.db")
            if con.execute("SELECT count(*) FROM sqlite_master WHERE name = 't'").fetchone()[0]:
                for rule, n in con.execute('SELECT rule, count(*) FROM "t" GROUP BY rule'):
                    assert n % per_rule == 0, (rule, n)       # whole runs of a rule only
            con.close()
    assert killed >= 50
    subprocess.run(cmd, check=True, cwd=Path(__file__).parent.parent, timeout=120)
    assert len(json.loads((out / "all.json").read_text())) == 6 * per_rule
    leftovers = [f for f in os.listdir(out) if f.endswith((".tmp", ".part", ".spill"))]
    assert leftovers == []                      # stale temp files are removed by later runs


def test_a_second_run_waits_for_the_first(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, "targets: {db: {type: sqlite, path: s.db, table: t}}\n"
                                  "rules: [{name: r, query: disk_free, range: 4h, route: [{to: db}]}]\n")
    out = tmp_path / "out"
    with run_lock(str(out), lambda m: None):
        proc = subprocess.Popen([*VMRULES, "apply", str(folder), "--output-dir", str(out), "--to", str(END_S)],
                                stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
        time.sleep(2.0)
        assert proc.poll() is None                  # still waiting
        assert not (out / "s.db").exists()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "waiting for another vmrules apply" in stderr
    assert sqlite3.connect(out / "s.db").execute('SELECT count(*) FROM "t"').fetchone() == (4 * 240,)


# -- 3. idempotent reruns ------------------------------------------------------
def test_upsert_over_overlapping_windows(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, "targets: {db: {type: sqlite, path: s.db, table: t, mode: upsert}}\n"
                                  "rules: [{name: r, query: disk_free, route: [{to: db}]}]\n")
    out = tmp_path / "out"
    for start, end in ((END_S - 7200, END_S - 3600), (END_S - 5400, END_S), (END_S - 7200, END_S)):
        res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(out), "--from", str(start),
                                        "--to", str(end)])
        assert res.exit_code == 0, res.stderr
    con = sqlite3.connect(out / "s.db")
    assert con.execute('SELECT count(*), count(DISTINCT labels || timestamp) FROM "t"').fetchone() == (4 * 121,) * 2


# -- 5. secrets ----------------------------------------------------------------
SENTINEL = "sentinel-secret-7f3a9"


def test_credentials_never_leak(tmp_path: Path) -> None:
    def echo(seen: Seen) -> Reply:           # a hostile server that echoes what it was sent
        return Reply(500, ("<html>" + json.dumps(seen.headers) + "</html>").encode())
    server = FaultServer(echo)
    try:
        folder = rules(tmp_path, server.url,
                       extra=", bearer_token: '${TOKEN}', headers: {X-Key: '${TOKEN}'}, "
                             "basic_auth: {username: u, password: '${TOKEN}'}")
        env = {"TOKEN": SENTINEL}
        for args in (["-v"], ["--dry-run", "-v"]):
            code, stdout, stderr = apply(folder, tmp_path / "out", *args, env=env)
            assert SENTINEL not in stdout + stderr
        assert code == 0 and any(SENTINEL in s.headers.get("X-Key", "") for s in server.seen)
        assert "<secret>" in apply(folder, tmp_path / "out", env=env)[2]
        for root, _, files in os.walk(tmp_path / "out"):
            for name in files:
                assert SENTINEL.encode() not in (Path(root) / name).read_bytes()
    finally:
        server.stop()


def test_redirects_are_not_followed(tmp_path: Path) -> None:
    other = FaultServer(lambda seen: Reply(200, GOOD))
    first = FaultServer([Reply(302, b"", {"Location": other.url + "/api/v1/query_range"})])
    try:
        folder = rules(tmp_path, first.url, extra=", bearer_token: '${TOKEN}'")
        code, _, stderr = apply(folder, tmp_path / "out", env={"TOKEN": SENTINEL})
        assert code == 1 and "redirects are not followed" in stderr
        assert other.seen == []
    finally:
        first.stop()
        other.stop()


def test_tls_is_verified_unless_told(tmp_path: Path) -> None:
    cert, key = self_signed(str(tmp_path))
    server = FaultServer(lambda seen: Reply(200, GOOD), tls=(cert, key))
    try:
        code, _, stderr = apply(rules(tmp_path, server.url), tmp_path / "o1")
        assert code == 1 and "certificate verify failed" in stderr and "ca_file" in stderr
        assert apply(rules(tmp_path, server.url, extra=f", ca_file: '{cert}'"), tmp_path / "o2")[0] == 0
        assert apply(rules(tmp_path, server.url, extra=", tls_insecure: true"), tmp_path / "o3")[0] == 0
    finally:
        server.stop()


# -- 7. load --------------------------------------------------------------------
def test_concurrency_bounds_the_requests_in_flight(tmp_path: Path) -> None:
    def slow(seen: Seen) -> Reply:
        time.sleep(0.02)
        return Reply(200, GOOD)
    server = FaultServer(slow)
    try:
        folder = rules(tmp_path, server.url, n=200)
        code, _, stderr = apply(folder, tmp_path / "out", "--concurrency", "8", "-q")
        assert code == 0, stderr
        assert len(server.seen) == 200
        assert 2 <= server.max_in_flight <= 8
        db = sqlite3.connect(tmp_path / "out" / "s.db")
        assert db.execute('SELECT count(DISTINCT rule), count(*) FROM "t"').fetchone() == (200, 200 * 22)
        assert len([f for f in os.listdir(tmp_path / "out") if f.endswith(".csv")]) == 200
    finally:
        server.stop()


def test_threads_are_not_left_behind(tmp_path: Path, server: FaultServer) -> None:
    before = threading.active_count()
    server.script = [Reply(200, GOOD)]
    assert apply(rules(tmp_path, server.url), tmp_path / "out")[0] == 0
    assert threading.active_count() <= before + 1
