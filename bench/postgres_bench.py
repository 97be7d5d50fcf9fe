"""W1 routed to PostgreSQL next to the same run routed to SQLite, interleaved, in fresh processes.

    python bench/postgres_bench.py [--runs N] [--modes append upsert]

One rule (valid 0..100, one threshold) writes every valid row of W1 (1,000 series x 1,440 points)
to one table; each run starts from an empty table (a rerun of upsert updates every row: --rerun).
A throwaway VictoriaMetrics and PostgreSQL (tests/support/servers.py) on loopback. Prints the
medians, their ratio and the peak RSS of each, and checks the rows in both databases.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from bench.apply_bench import END_S, WORKLOADS, compile_package, generate, load  # noqa: E402
from tests.support.servers import Postgres, VictoriaMetrics  # noqa: E402

W = "W1"


def write_rules(folder: str, vm: VictoriaMetrics, target: str) -> None:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "b.yaml"), "w") as f:
        f.write(f"""version: 1
datasource: {{url: "{vm.url}", max_points_per_series: 30000, timeout: 300s}}
targets:
  db: {target}
rules:
  - name: bench
    query: bench_w1
    step: 1m
    valid: {{min: 0, max: 100}}
    thresholds: [{{above: 80}}]
    route: [{{to: db}}]
""")


def run(rules: str, out: str, env: dict[str, str]) -> tuple[float, float]:
    exe = os.path.join(os.path.dirname(sys.executable), "vmrules")
    start = END_S - (WORKLOADS[W][1] - 1) * 60
    t = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "%M", exe, "apply", rules, "-q", "--output-dir", out,
                        "--from", str(start), "--to", str(END_S)], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"vmrules failed: {r.stdout[-2000:]} {r.stderr[-2000:]}")
    return wall, int(r.stderr.strip().splitlines()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--modes", nargs="*", default=["append", "upsert"])
    ap.add_argument("--rerun", action="store_true", help="upsert into a table that holds the rows already")
    a = ap.parse_args()
    compile_package(os.path.join(os.path.dirname(__file__), ".."))
    work = tempfile.mkdtemp(prefix="vmrules-pgbench-")
    vm = VictoriaMetrics(work)
    pg = Postgres()
    try:
        n, points = WORKLOADS[W]
        data = os.path.join(work, "w1.jsonl")
        generate("bench_w1", n, points, data)
        load(vm, data)
        vm.wait_for("bench_w1", n, END_S)
        want = n * points - len(range(0, n, 97))
        dsn = pg.new_database()
        env = {**os.environ, "PG_DSN": dsn, "VMRULES_ALLOW_ENV": "PG_DSN"}
        table = []
        for mode in a.modes:
            rules = {k: os.path.join(work, f"rules-{k}-{mode}") for k in ("sqlite", "postgres")}
            write_rules(rules["sqlite"], vm, f"{{type: sqlite, path: b.db, table: t, mode: {mode}}}")
            write_rules(rules["postgres"], vm, f'{{type: postgres, dsn: "${{PG_DSN}}", table: t, mode: {mode}}}')
            walls: dict[str, list[float]] = {"sqlite": [], "postgres": []}
            rss: dict[str, list[float]] = {"sqlite": [], "postgres": []}
            for i in range(a.runs + 1):                     # the first pair warms up
                for kind in (["sqlite", "postgres"] if i % 2 else ["postgres", "sqlite"]):
                    out = os.path.join(work, f"out-{kind}")
                    if not a.rerun:
                        shutil.rmtree(out, ignore_errors=True)
                        pg.execute("DROP TABLE IF EXISTS t", dsn)
                    wall, peak = run(rules[kind], out, env)
                    if i:
                        walls[kind].append(wall)
                        rss[kind].append(peak)
            got_sqlite = sqlite3.connect(os.path.join(work, "out-sqlite", "b.db")).execute(
                "SELECT count(*), count(DISTINCT labels || timestamp) FROM t").fetchone()
            got_pg = pg.execute("SELECT count(*), count(DISTINCT (labels, timestamp)) FROM t", dsn)[0]
            expect = want * (a.runs + 1 if a.rerun and mode == "append" else 1)
            if got_sqlite[0] != expect or got_pg[0] != expect or got_pg[1] != want or got_sqlite[1] != want:
                raise SystemExit(f"{mode}: sqlite {got_sqlite}, postgres {got_pg}, expected {expect} ({want} distinct)")
            s, p = statistics.median(walls["sqlite"]), statistics.median(walls["postgres"])
            for kind in walls:
                print(f"{W} {mode} {kind}: runs {', '.join(f'{x:.2f}' for x in walls[kind])}; "
                      f"peak RSS {max(rss[kind]):.0f} MiB", flush=True)
            table.append((mode, s, p, max(rss["sqlite"]), max(rss["postgres"])))
        print(f"\n| W1 ({want:,} rows), mode | sqlite median | postgres median | postgres / sqlite | peak RSS sqlite | "
              "peak RSS postgres |")
        print("|---|---|---|---|---|---|")
        for mode, s, p, rs, rp in table:
            print(f"| {mode}{' (rerun)' if a.rerun else ''} | {s:.2f} s | {p:.2f} s | {p / s:.2f} | {rs:.0f} MiB | "
                  f"{rp:.0f} MiB |")
    finally:
        pg.stop()
        vm.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
