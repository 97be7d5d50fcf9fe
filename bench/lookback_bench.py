"""What window independence costs: the data a rule with `for: 15m` fetches beyond its window.

    python bench/lookback_bench.py [--series N] [--runs N]

Against a throwaway VictoriaMetrics holding W1-like data (1,000 series at 1m),
one rule `{above: 80, for: 15m}` runs, in one process each way:
- as cron does it: `apply --incremental --lag 0s` every 5 minutes (the first run
  takes the rule's 1h range); each later run continues the alert states the
  one before left in the state file, so it fetches its 5 minutes only;
- as ad-hoc 5-minute windows (`--from/--to`): each fetches the 15m lookback too.
Prints, per kind, the samples fetched per run (window and lookback) and the
bytes read, as medians, the ratio to the window's own samples, and the size of
the state file that carries the alert states.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from bench.apply_bench import END_S, generate, load  # noqa: E402
from tests.support.servers import VictoriaMetrics  # noqa: E402
from vmrules import load_ruleset  # noqa: E402
from vmrules.commands.apply import ApplyOptions, apply  # noqa: E402

RULE = """version: 1
datasource: {{url: "{url}"}}
targets: {{alerts: {{type: csv, path: "alerts/{{{{ run.from }}}}.csv"}}}}
rules:
  - name: hot
    query: bench_lookback
    range: 1h
    step: 1m
    thresholds: [{{above: 80, for: 15m}}]
    route: [{{when: alert, to: alerts}}]
"""


def one(ruleset: object, out: str, **kw: object) -> tuple[int, int, int]:
    report = apply(ruleset, ApplyOptions(output_dir=out, **kw))  # type: ignore[arg-type]
    (rep,) = report.rules
    if rep.status != "ok":
        raise SystemExit(f"failed: {rep.error}")
    return rep.counts.samples, rep.fetched, rep.bytes_read


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=24)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="vmrules-lookback-")
    vm = VictoriaMetrics(work)
    try:
        data = os.path.join(work, "d.jsonl")
        generate("bench_lookback", a.series, 1440, data)
        load(vm, data)
        vm.wait_for("bench_lookback", a.series, END_S)
        rules = os.path.join(work, "rules")
        os.makedirs(rules)
        with open(os.path.join(rules, "r.yaml"), "w") as f:
            f.write(RULE.format(url=vm.url))
        ruleset = load_ruleset([rules])
        start = END_S - (a.runs + 1) * 300
        first = one(ruleset, os.path.join(work, "inc"), incremental=True, lag_ms=0, to_ms=start * 1000)
        incremental, adhoc = [], []
        for i in range(1, a.runs + 1):
            to = start + i * 300
            incremental.append(one(ruleset, os.path.join(work, "inc"), incremental=True, lag_ms=0, to_ms=to * 1000))
            adhoc.append(one(ruleset, os.path.join(work, f"adhoc{i}"), from_ms=(to - 299) * 1000, to_ms=to * 1000))
        print(f"first incremental run (1h range + 15m lookback): {first[0]:,} samples in the window, "
              f"{first[1]:,} fetched ({first[1] / first[0]:.2f} x), {first[2]:,} bytes")
        print("\n| 5-minute runs, for: 15m | window samples | fetched samples | fetched / window | bytes read |")
        print("|---|---|---|---|---|")
        for name, runs in (("incremental (state carried)", incremental), ("--from/--to (lookback)", adhoc)):
            w, f_, b = (statistics.median(x[k] for x in runs) for k in range(3))
            print(f"| {name} | {w:,.0f} | {f_:,.0f} | {f_ / w:.2f} | {b:,.0f} |")
        size = os.path.getsize(os.path.join(work, "inc", ".vmrules-state.json"))
        print(f"\nstate file after the incremental runs: {size:,} bytes")
    finally:
        vm.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
