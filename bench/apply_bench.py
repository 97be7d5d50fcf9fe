"""Apply speed and memory against a throwaway VictoriaMetrics, next to the raw download, in one run.

    python bench/apply_bench.py [W1 W2 W3 ...] [--runs N]

W1 = 1,000 series x 1,440 points, W2 = 10,000 x 1,440, W3 = 100 x 100,000
(a long range, split by max_points_per_series). For each workload, interleaved:
`curl` of the same query_range answer(s) to /dev/null, then `vmrules apply` of
one rule (valid 0..100, one threshold) writing every valid row to Parquet and
the alert rows to CSV, in a fresh process under /usr/bin/time. Prints medians,
the ratio vmrules/curl and peak RSS.
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


def vmrules(vm: VictoriaMetrics, work: str, metric: str, points: int) -> tuple[float, float]:
    rules = os.path.join(work, f"rules-{metric}")
    os.makedirs(rules, exist_ok=True)
    with open(os.path.join(rules, "b.yaml"), "w") as f:
        f.write(f"""version: 1
datasource: {{url: "{vm.url}", max_points_per_series: {MAX_POINTS}, timeout: 300s}}
targets:
  all: {{type: parquet, path: all.parquet}}
  alerts: {{type: csv, path: alerts.csv}}
rules:
  - name: bench
    query: {metric}
    step: 1m
    valid: {{min: 0, max: 100}}
    thresholds: [{{above: 80}}]
    route: [{{to: all}}, {{when: alert, to: alerts}}]
""")
    out = os.path.join(work, f"out-{metric}")
    shutil.rmtree(out, ignore_errors=True)
    exe = os.path.join(os.path.dirname(sys.executable), "vmrules")
    start = END_S - (points - 1) * 60
    t = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "%M", exe, "apply", rules, "-q", "--output-dir", out,
                        "--from", str(start), "--to", str(END_S)], capture_output=True, text=True)
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workloads", nargs="*", default=["W1", "W2", "W3"])
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    # An installed package has its bytecode compiled by pip; an editable checkout under
    # PYTHONDONTWRITEBYTECODE would compile every module in every run instead.
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(os.path.dirname(__file__), "..", "vmrules")],
                   check=True)
    work = tempfile.mkdtemp(prefix="vmrules-bench-")
    vm = VictoriaMetrics(work)
    try:
        rows = []
        for w in a.workloads:
            n, points = WORKLOADS[w]
            metric = f"bench_{w.lower()}"
            data = os.path.join(work, f"{w}.jsonl")
            generate(metric, n, points, data)
            load(vm, data)
            os.unlink(data)
            vm.wait_for(metric, n, END_S)
            vmrules(vm, work, metric, points)              # warm-up, also checks it works
            check_rows(os.path.join(work, f"out-{metric}", "all.parquet"), n, points)
            curls, walls, rss = [], [], []
            for _ in range(a.runs):
                curls.append(curl(vm, metric, points))
                wall, peak = vmrules(vm, work, metric, points)
                walls.append(wall)
                rss.append(peak)
            c, v = statistics.median(curls), statistics.median(walls)
            rows.append((w, n * points, c, v, v / c, max(rss)))
            print(f"{w}: {n} x {points}: curl {c:.2f} s, vmrules {v:.2f} s (x{v / c:.2f}), "
                  f"peak RSS {max(rss):.0f} MiB  [runs: {', '.join(f'{x:.2f}' for x in walls)}]", flush=True)
        print("\n| workload | samples | curl median | vmrules median | ratio | peak RSS |")
        print("|---|---|---|---|---|---|")
        for w, samples, c, v, ratio, peak in rows:
            print(f"| {w} | {samples / 1e6:.2f} M | {c:.2f} s | {v:.2f} s | {ratio:.2f} | {peak:.0f} MiB |")
    finally:
        vm.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
