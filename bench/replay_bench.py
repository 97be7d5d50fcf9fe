"""Backtesting a Prometheus rule file: `vmrules apply` (the file routed by prometheus_rules:) against
`vmalert -replay` of the same file, on the same data in one throwaway VictoriaMetrics, in one run.

    python bench/replay_bench.py [--series N] [--days D] [--runs R]

50 alerting rules (thresholds, `for`, ratios of two series, aggregations) over D days (default 7) of N series
(default 50) at 1 m. vmalert replays as the reference must run (one query per rule over the whole window,
query step = the group interval, ALERTS written back to the server); vmrules writes the alert rows to SQLite.
Fresh processes, interleaved; prints medians and the ratio vmrules / vmalert (target: <= 1).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from tests.support.servers import VictoriaMetrics, free_port  # noqa: E402

END_S = 1_793_491_200


def data(vm: VictoriaMetrics, series: int, days: int) -> None:
    rnd = random.Random(3)
    points = days * 1440
    stamps = [(END_S - (points - 1 - i) * 60) * 1000 for i in range(points)]
    for s in range(series):
        base = rnd.uniform(20, 80)
        lines = []
        for metric, scale in (("bench_cpu", 1.0), ("bench_errors", 0.1), ("bench_requests", 1.0)):
            values = [round(max(0.0, scale * (base + 30 * math.sin(i / 300 + s) + rnd.gauss(0, 8))), 3)
                      for i in range(points)]
            lines.append(json.dumps({"metric": {"__name__": metric, "instance": f"host-{s:03d}", "job": "bench",
                                                "zone": f"z{s % 5}"}, "values": values, "timestamps": stamps}))
        req = urllib.request.Request(vm.url + "/api/v1/import", data=("\n".join(lines) + "\n").encode(),
                                     method="POST")
        urllib.request.urlopen(req, timeout=300).read()
    urllib.request.urlopen(vm.url + "/internal/force_flush", timeout=60).read()
    vm.wait_for("bench_cpu", series, END_S)


def rules() -> str:
    """50 alerting rules in 5 groups of 10."""
    out = ["groups:"]
    n = 0
    for g in range(5):
        out += [f"  - name: bench{g}", "    interval: 1m", "    rules:"]
        for k in range(10):
            threshold = 60 + (n * 7) % 39
            expr = [f"bench_cpu > {threshold}",
                    f"avg_over_time(bench_cpu[10m]) > {threshold}",
                    f"bench_errors / bench_requests > 0.{10 + n % 5}",
                    f"max by (zone) (bench_cpu) > {threshold + 5}",
                    f"bench_cpu < {100 - threshold}"][k % 5]
            out += [f"      - alert: Bench{n}", f"        expr: '{expr}'", f"        for: {[0, 5, 10][n % 3]}m",
                    f"        labels: {{severity: {['warning', 'critical'][n % 2]}}}"]
            n += 1
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=50)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    vmalert = shutil.which("vmalert")
    if vmalert is None:
        raise SystemExit("vmalert is not installed (Debian's victoria-metrics package ships it)")
    work = tempfile.mkdtemp(prefix="vmrules-replay-bench-")
    vm = VictoriaMetrics(work)
    try:
        data(vm, a.series, a.days)
        start, end = END_S - a.days * 86400 + 60, END_S
        with open(os.path.join(work, "alerts.yml"), "w") as f:
            f.write(rules())
        os.makedirs(os.path.join(work, "vmrules"))
        with open(os.path.join(work, "vmrules", "route.yaml"), "w") as f:
            f.write(f'version: 1\ndatasource: {{url: "{vm.url}"}}\n'
                    'targets: {alerts: {type: sqlite, path: alerts.db, table: alerts}}\n'
                    'prometheus_rules:\n  - files: ["../alerts.yml"]\n    route: [{when: alert, to: alerts}]\n')
        vmrules = os.path.join(os.path.dirname(sys.executable), "vmrules")
        iso = {t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) for t in (start, end)}
        commands = {
            "vmrules apply": [vmrules, "apply", os.path.join(work, "vmrules"), "--from", str(start), "--to", str(end),
                              "--output-dir", os.path.join(work, "out"), "-q"],
            "vmalert -replay": [vmalert, f"-rule={os.path.join(work, 'alerts.yml')}", f"-datasource.url={vm.url}",
                                f"-remoteWrite.url={vm.url}", "-datasource.queryStep=1m",
                                f"-replay.timeFrom={iso[start]}", f"-replay.timeTo={iso[end]}",
                                "-replay.rulesDelay=0s", "-replay.maxDatapointsPerQuery=1000000",
                                "-remoteWrite.maxQueueSize=100000000", "-replay.disableProgressBar",
                                "-loggerLevel=ERROR"]}
        times: dict[str, list[float]] = {k: [] for k in commands}
        for run in range(a.runs):
            for name in (list(commands) if run % 2 == 0 else list(commands)[::-1]):
                cmd = commands[name] + ([f"-httpListenAddr=127.0.0.1:{free_port()}"] if "replay" in name else [])
                shutil.rmtree(os.path.join(work, "out"), ignore_errors=True)
                t = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True, cwd=work)
                times[name].append(time.perf_counter() - t)
            print(f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
        samples = a.series * a.days * 1440
        print(f"50 alerting rules over {a.days} days of {a.series} series ({samples:,} samples per metric), "
              f"{a.runs} interleaved runs, median (min)")
        for name, values in times.items():
            print(f"  {name}: {statistics.median(values):.2f} s ({min(values):.2f})")
        ratios = [x / y for x, y in zip(*times.values(), strict=True)]
        print(f"  vmrules / vmalert, median of paired ratios: {statistics.median(ratios):.2f} (target <= 1)")
    finally:
        vm.proc.terminate()
        vm.proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
