"""Apply speed and memory against a throwaway VictoriaMetrics, next to the raw download, in one run.

    python bench/apply_bench.py [W1 W2 W3 W2-alerts ...] [--runs N] [--against OTHER_CHECKOUT]

W1 = 1,000 series x 1,440 points, W2 = 10,000 x 1,440, W3 = 100 x 100,000
(a long range, split by max_points_per_series). For each workload, interleaved:
`curl` of the same query_range answer(s) to /dev/null, then `vmrules apply` of
one rule (valid 0..100, one threshold) writing every valid row to Parquet and
the alert rows to CSV, in a fresh process under /usr/bin/time.
W2-alerts: W2's data, the alert rows only (about 15 %), to CSV and SQLite, so the
rule's conditions go to the server (pushdown); curl fetches the unfiltered query, and
`vmrules apply --no-pushdown` runs interleaved too, for comparison. Prints medians,
the ratio vmrules/curl and peak RSS. `--against DIR` also runs the `vmrules` of another
checkout (its `.venv`, e.g. the code before a change), interleaved with this one, and
prints its medians and the median of the paired ratios.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from tests.support.servers import VictoriaMetrics  # noqa: E402

END_S = 1_793_491_200
WORKLOADS = {"W1": (1000, 1440), "W2": (10_000, 1440), "W3": (100, 100_000)}
ALERTS_ONLY = {"W2-alerts": "W2"}        # a workload on another's data, whose rule routes only alert rows
MAX_POINTS = 30_000


def generate(metric: str, n: int, points: int, out: str) -> None:
    """Import lines: gauges 0..100 with a few out-of-range samples, deterministic."""
    rnd = random.Random(1)
    ts = ",".join(str((END_S - (points - 1 - i) * 60) * 1000) for i in range(points))
    with open(out, "w") as f:
        for s in range(n):
            base = rnd.uniform(5, 90)
            vals = [round(min(100.0, max(0.0, base + 20 * math.sin(i / 50 + s) + rnd.gauss(0, 5))), 3)
                    for i in range(points)]
            if s % 97 == 0:
                vals[points // 2] = 250.0
            f.write(f'{{"metric":{{"__name__":"{metric}","job":"bench","instance":"host-{s:05d}:9100",'
                    f'"env":"{["prod", "staging"][s % 2]}","zone":"z{s % 7}"}},"values":[{",".join(map(str, vals))}],'
                    f'"timestamps":[{ts}]}}\n')


def load(vm: VictoriaMetrics, path: str) -> None:
    with open(path, "rb") as f:
        while True:
            block = b"".join(f.readline() for _ in range(200))
            if not block:
                break
            req = urllib.request.Request(vm.url + "/api/v1/import", data=block, method="POST")
            urllib.request.urlopen(req, timeout=300).read()
    urllib.request.urlopen(vm.url + "/internal/force_flush", timeout=300).read()


def curl(vm: VictoriaMetrics, metric: str, points: int) -> float:
    start = END_S - (points - 1) * 60
    t = time.perf_counter()
    s = start
    while s <= END_S:
        e = min(s + (MAX_POINTS - 1) * 60, END_S)
        q = urllib.parse.urlencode({"query": metric, "start": s, "end": e, "step": 60, "nocache": 1})
        subprocess.run(["curl", "-s", "-o", "/dev/null", f"{vm.url}/api/v1/query_range?{q}"], check=True)
        s = e + 60
    return time.perf_counter() - t


ROUTES = {"rows": "[{to: all}, {when: alert, to: alerts}]", "alerts": "[{when: alert, to: [alerts, db]}]"}


def vmrules(vm: VictoriaMetrics, work: str, metric: str, points: int, exe: str = "", routes: str = "rows",
            *args: str) -> tuple[float, float]:
    rules = os.path.join(work, f"rules-{metric}-{routes}")
    os.makedirs(rules, exist_ok=True)
    with open(os.path.join(rules, "b.yaml"), "w") as f:
        f.write(f"""version: 1
datasource: {{url: "{vm.url}", max_points_per_series: {MAX_POINTS}, timeout: 300s}}
targets:
  all: {{type: parquet, path: all.parquet}}
  alerts: {{type: csv, path: alerts.csv}}
  db: {{type: sqlite, path: alerts.db, table: alerts}}
rules:
  - name: bench
    query: {metric}
    step: 1m
    valid: {{min: 0, max: 100}}
    thresholds: [{{above: 80}}]
    route: {ROUTES[routes]}
""")
    out = os.path.join(work, f"out-{metric}")
    shutil.rmtree(out, ignore_errors=True)
    exe = exe or os.path.join(os.path.dirname(sys.executable), "vmrules")
    start = END_S - (points - 1) * 60
    t = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "%M", exe, "apply", rules, "-q", "--output-dir", out,
                        "--from", str(start), "--to", str(END_S), *args], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"vmrules failed: {r.stderr[-2000:]}")
    return wall, int(r.stderr.strip().splitlines()[-1]) / 1024


def check_rows(path: str, n: int, points: int) -> None:
    """Every valid sample exactly once: the window split into requests neither loses nor repeats a row."""
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["labels", "timestamp"])
    table = table.set_column(0, "labels", table.column("labels").cast("string"))
    invalid = len(range(0, n, 97))                      # generate() puts one 250.0 into every 97th series
    distinct = table.group_by(["labels", "timestamp"]).aggregate([]).num_rows
    if table.num_rows != n * points - invalid or distinct != table.num_rows:
        raise SystemExit(f"{path}: {table.num_rows} rows, {distinct} distinct, expected {n * points - invalid}")
    print(f"  {table.num_rows} rows, each (series, timestamp) once", flush=True)


def alert_rows(out: str) -> tuple[int, int]:
    """The alert rows of a W2-alerts run, checked alike in its CSV file and its SQLite table: count and a
    digest of the (labels, timestamp, value) set."""
    import hashlib
    import sqlite3

    import pyarrow.csv as pcsv

    t = pcsv.read_csv(os.path.join(out, "alerts.csv"))
    con = sqlite3.connect(os.path.join(out, "alerts.db"))
    try:
        db = sorted(con.execute("SELECT labels, timestamp, value FROM alerts"))
    finally:
        con.close()
    if t.num_rows != len(db):
        raise SystemExit(f"{out}: {t.num_rows} rows in the CSV, {len(db)} in SQLite")
    return len(db), int(hashlib.sha256(repr(db).encode()).hexdigest()[:12], 16)


def measure_alerts(vm: VictoriaMetrics, work: str, w: str, runs: int, other: str) -> tuple[float, float, float]:
    """An alerts-only workload: curl of the unfiltered query, vmrules (pushdown), vmrules --no-pushdown."""
    base = ALERTS_ONLY[w]
    n, points = WORKLOADS[base]
    metric = f"bench_{base.lower()}"
    runs_of = {"this": ("", ()), "no pushdown": ("", ("--no-pushdown",))} | \
        ({"other": (other, ())} if other else {})
    seen = {}
    for name, (exe, args) in runs_of.items():         # warm-up: the same alert rows every way
        vmrules(vm, work, metric, points, exe, "alerts", *args)
        seen[name] = alert_rows(os.path.join(work, f"out-{metric}"))
    if len(set(seen.values())) != 1 or not 0.1 < seen["this"][0] / (n * points) < 0.2:
        raise SystemExit(f"{w}: alert rows differ or are not about 15 %: {seen}")
    print(f"  {seen['this'][0]} alert rows ({seen['this'][0] / (n * points):.1%}), the same with and without "
          "pushdown, in CSV and SQLite", flush=True)
    curls: list[float] = []
    walls: dict[str, list[float]] = {k: [] for k in runs_of}
    rss: dict[str, list[float]] = {k: [] for k in runs_of}
    for i in range(runs):
        order = list(runs_of) if i % 2 == 0 else list(reversed(runs_of))
        for name in ["curl", *order] if i % 2 == 0 else [*order, "curl"]:
            if name == "curl":
                curls.append(curl(vm, metric, points))
                continue
            exe, args = runs_of[name]
            wall, peak = vmrules(vm, work, metric, points, exe, "alerts", *args)
            walls[name].append(wall)
            rss[name].append(peak)
    c = statistics.median(curls)
    print(f"{w}: curl of the unfiltered query {c:.2f} s  [runs: {', '.join(f'{x:.2f}' for x in curls)}]")
    for name in runs_of:
        v = statistics.median(walls[name])
        ratios = statistics.median(a / b for a, b in zip(walls[name], curls, strict=True))
        print(f"{w}: vmrules ({name}) {v:.2f} s (x{v / c:.2f} of curl's median; median of paired ratios "
              f"{ratios:.2f}), peak RSS {max(rss[name]):.0f} MiB  [runs: {', '.join(f'{x:.2f}' for x in walls[name])}]",
              flush=True)
    return c, statistics.median(walls["this"]), max(rss["this"])


def compile_package(checkout: str) -> None:
    """An installed package has its bytecode compiled by pip; an editable checkout under
    PYTHONDONTWRITEBYTECODE would compile every module in every run instead."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(checkout, "vmrules")], check=True)


def measure(vm: VictoriaMetrics, work: str, w: str, runs: int, other: str) -> tuple[float, float, float]:
    """One workload: curl, this vmrules (and the other one, interleaved); returns curl, vmrules medians, peak."""
    n, points = WORKLOADS[w]
    metric = f"bench_{w.lower()}"
    exes = {"this": ""} | ({"other": other} if other else {})
    for exe in exes.values():                          # warm-up, also checks it works
        vmrules(vm, work, metric, points, exe)
        check_rows(os.path.join(work, f"out-{metric}", "all.parquet"), n, points)
    curls: list[float] = []
    walls: dict[str, list[float]] = {k: [] for k in exes}
    rss: dict[str, list[float]] = {k: [] for k in exes}
    for i in range(runs):
        curls.append(curl(vm, metric, points))
        for name in (list(exes) if i % 2 == 0 else list(reversed(exes))):
            wall, peak = vmrules(vm, work, metric, points, exes[name])
            walls[name].append(wall)
            rss[name].append(peak)
    c = statistics.median(curls)
    for name in exes:
        v = statistics.median(walls[name])
        label = "vmrules" if name == "this" else f"vmrules of {other}"
        print(f"{w}: {n} x {points}: curl {c:.2f} s, {label} {v:.2f} s (x{v / c:.2f}), peak RSS "
              f"{max(rss[name]):.0f} MiB  [runs: {', '.join(f'{x:.2f}' for x in walls[name])}]", flush=True)
    if other:
        ratios = [a / b for a, b in zip(walls["this"], walls["other"], strict=True)]
        print(f"{w}: this / other, median of the paired runs: {statistics.median(ratios):.3f}", flush=True)
    return c, statistics.median(walls["this"]), max(rss["this"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workloads", nargs="*", default=["W1", "W2", "W3"])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--against", default="", metavar="DIR", help="another checkout with its own .venv")
    a = ap.parse_args()
    compile_package(os.path.join(os.path.dirname(__file__), ".."))
    other = ""
    if a.against:
        compile_package(a.against)
        other = os.path.join(a.against, ".venv", "bin", "vmrules")
    work = tempfile.mkdtemp(prefix="vmrules-bench-")
    vm = VictoriaMetrics(work)
    try:
        rows, loaded = [], set()
        for w in a.workloads:
            base = ALERTS_ONLY.get(w, w)
            n, points = WORKLOADS[base]
            metric = f"bench_{base.lower()}"
            if base not in loaded:
                data = os.path.join(work, f"{base}.jsonl")
                generate(metric, n, points, data)
                load(vm, data)
                os.unlink(data)
                vm.wait_for(metric, n, END_S)
                loaded.add(base)
            c, v, peak = (measure_alerts if w in ALERTS_ONLY else measure)(vm, work, w, a.runs, other)
            rows.append((w, n * points, c, v, v / c, peak))
        print("\n| workload | samples | curl median | vmrules median | ratio | peak RSS |")
        print("|---|---|---|---|---|---|")
        for w, samples, c, v, ratio, peak in rows:
            print(f"| {w} | {samples / 1e6:.2f} M | {c:.2f} s | {v:.2f} s | {ratio:.2f} | {peak:.0f} MiB |")
    finally:
        vm.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
