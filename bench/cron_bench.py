"""The repository's `rules/` run from cron against a real VictoriaMetrics: interpreter start to exit, per run.

    python bench/cron_bench.py [--runs N] [--every 5m]

A throwaway VictoriaMetrics holds the bundled example data (examples/data/node.jsonl: 200 series at 5m
over 24h). `vmrules apply rules/ --incremental --lag 0s --to T` runs as cron runs it, a fresh process every
`--every` of data time; the first run takes the rules' 6h range, each later one continues from the state
file. Beside each incremental run, interleaved: the same window as `--from/--to` (no state: the alert
states come from the lookback, `for: 15m` reaching back 15 minutes), `vmrules validate rules/` (the rule
files loaded and checked, nothing fetched) and `vmrules --version` (the interpreter and the command line).
Prints medians of wall time (process start to exit), peak RSS, requests and bytes read from the server,
and the size of the state file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from bench.apply_bench import compile_package, load  # noqa: E402
from tests.support.servers import VictoriaMetrics  # noqa: E402
from vmrules.durations import parse_duration_ms  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "examples", "data", "node.jsonl")
END_S = 1_793_491_200                      # the example data's last timestamp (2026-11-01T00:00:00Z)
FIRST_S = END_S - 4 * 3600                 # the first cron run: 20h of data before it, 4h after


def run(cmd: list[str]) -> tuple[float, int, list[dict[str, object]]]:
    """Wall seconds from start to exit, peak RSS (KiB) and the JSON events of one fresh process."""
    t = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t
    lines = r.stderr.strip().splitlines()
    events = [json.loads(x) for x in lines[:-1] if x.startswith("{")]
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return wall, int(lines[-1]), events


def fetched(events: list[dict[str, object]]) -> tuple[int, int]:
    """Requests and bytes read, over the rules of one run."""
    rules = [e for e in events if e.get("event") == "rule"]
    if not rules or any(e["status"] != "ok" for e in rules):
        raise SystemExit(f"a rule failed: {rules}")
    return sum(int(e["requests"]) for e in rules), sum(int(e["bytes"]) for e in rules)  # type: ignore[call-overload]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=24, help="incremental runs after the first (default 24)")
    ap.add_argument("--every", default="5m", help="data time between runs (default 5m)")
    a = ap.parse_args()
    every_s = parse_duration_ms(a.every) // 1000
    if not 1 <= a.runs <= 1000 or FIRST_S + a.runs * every_s > END_S:
        raise SystemExit("--runs x --every must stay within the data's last 4h")
    exe = os.path.join(os.path.dirname(sys.executable), "vmrules")
    compile_package(ROOT)
    work = tempfile.mkdtemp(prefix="vmrules-cron-")
    vm = VictoriaMetrics(work)
    try:
        load(vm, DATA)
        common = ["rules/", "--datasource", vm.url, "--log-format", "json", "-q"]
        os.chdir(ROOT)
        inc_out, win_out = os.path.join(work, "inc"), os.path.join(work, "win")
        first = run([exe, "apply", *common, "--incremental", "--lag", "0s", "--to", str(FIRST_S),
                     "--output-dir", inc_out])
        rows: dict[str, list[tuple[float, int, int, int]]] = {"incremental": [], "window": [], "validate": [],
                                                           "version": []}
        for i in range(1, a.runs + 1):
            to = FIRST_S + i * every_s
            wall, rss, events = run([exe, "apply", *common, "--incremental", "--lag", "0s", "--to", str(to),
                                     "--output-dir", inc_out])
            rows["incremental"].append((wall, rss, *fetched(events)))
            wall, rss, events = run([exe, "apply", *common, "--from", str(to - every_s), "--to", str(to),
                                     "--output-dir", win_out])
            rows["window"].append((wall, rss, *fetched(events)))
            wall, rss, _ = run([exe, "validate", "rules/", "-q"])
            rows["validate"].append((wall, rss, 0, 0))
            wall, rss, _ = run([exe, "--version"])
            rows["version"].append((wall, rss, 0, 0))
        state = os.path.getsize(os.path.join(inc_out, ".vmrules-state.json"))
        print(f"rules/ (4 rules, 200 series at 5m), {a.runs} runs {a.every} apart, medians:\n")
        print("| run | wall (start to exit) | peak RSS | requests | bytes read |")
        print("|---|---|---|---|---|")
        first_req, first_read = fetched(first[2])
        print(f"| first incremental (6h range) | {first[0]:.2f} s | {first[1] / 1024:.0f} MiB | "
              f"{first_req} | {first_read:,} |")
        names = {"incremental": f"incremental, {a.every} (state carried)",
                 "window": f"--from/--to, {a.every} (states from the lookback)",
                 "validate": "`vmrules validate rules/` (the rule files loaded and checked)",
                 "version": "`vmrules --version` (interpreter and command line)"}
        for kind, label in names.items():
            cols = list(zip(*rows[kind], strict=True))
            wall, rss, req, read = (statistics.median(c) for c in cols)
            print(f"| {label} | {wall:.2f} s | {rss / 1024:.0f} MiB | {req:.0f} | {read:,.0f} |")
        print(f"\nThe state file after the runs: {state:,} bytes.")
    finally:
        vm.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
