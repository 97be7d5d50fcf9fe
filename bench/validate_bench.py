"""Validation speed: N rule files of R rules each (default 1,000 x 10), in-process and as a fresh CLI process.

usage: python bench/validate_bench.py [FILES] [RULES_PER_FILE] [RUNS] [--against OTHER_CHECKOUT] [--promtool]
Prints the median of RUNS timings for each; the target is under 2 s for 1,000 x 10. `--against DIR` also
times the vmrules of another checkout (with its own .venv) on the same files, the two interleaved run by
run; each in-process figure then comes from a fresh process (its first call, and a second one).
`--promtool`: every rule gets its own query (ten real alert shapes, each with its own labels), and
`promtool check rules` checks the same queries written as Prometheus alerting rules, the two interleaved;
the target is vmrules within 1.3 x promtool.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

TARGETS = """version: 1
targets:
  alerts_csv: {type: csv, path: "alerts/{{ run.stamp }}.csv", columns: [rule, timestamp, value, severity, instance]}
  history: {type: parquet, path: "{{ rule.name }}/{{ run.stamp }}.parquet"}
  db: {type: sqlite, path: rules.db, table: "{{ rule.name }}", mode: upsert}
"""

RULE = """  - name: {name}
    description: CPU of {name}
    query: 'instance:node_cpu_utilisation:rate5m{{job="node", team="t{i}"}}'
    range: 6h
    step: 1m
    labels: {{team: t{i}}}
    valid: {{min: 0, max: 1}}
    where: 'env == "prod" and instance =~ "db-.*"'
    thresholds:
      - {{severity: critical, above: 0.95, for: 15m}}
      - {{severity: warning, above: 0.8}}
    route:
      - when: 'severity == "critical"'
        to: [alerts_csv, db]
      - to: history
"""

SHAPES = (        # real alert expressions; {m} makes each rule's query its own
    'instance:node_cpu_utilisation:rate5m{{job="node", team="t{n}", shard="{m}"}}',
    '1 - node_filesystem_avail_bytes{{fstype!~"tmpfs|overlay", team="t{n}", shard="{m}"}} / '
    'node_filesystem_size_bytes{{fstype!~"tmpfs|overlay", team="t{n}"}}',
    'sum by (instance) (rate(http_requests_total{{code=~"5..", team="t{n}", shard="{m}"}}[5m])) / '
    'sum by (instance) (rate(http_requests_total{{team="t{n}"}}[5m]))',
    'histogram_quantile(0.99, sum by (le, service) (rate(http_request_duration_seconds_bucket'
    '{{team="t{n}", shard="{m}"}}[5m])))',
    'increase(kube_pod_container_status_restarts_total{{namespace="t{n}", shard="{m}"}}[1h])',
    'avg_over_time(up{{job="api", team="t{n}", shard="{m}"}}[10m])',
    'max by (instance) (node_load5{{team="t{n}", shard="{m}"}}) / count by (instance) '
    '(node_cpu_seconds_total{{mode="idle", team="t{n}"}})',
    'predict_linear(node_filesystem_free_bytes{{team="t{n}", shard="{m}"}}[6h], 4 * 3600) / 1e9',
    'rate(node_network_receive_errs_total{{device!~"lo|veth.*", team="t{n}", shard="{m}"}}[5m])',
    'sum without (pod) (kube_deployment_status_replicas_unavailable{{namespace="t{n}", shard="{m}"}})',
)
VM_RULE = """  - name: {name}
    query: '{query}'
    range: 6h
    step: 1m
    labels: {{team: t{n}}}
    thresholds:
      - {{severity: critical, above: 0.95, for: 15m}}
    route:
      - when: 'severity == "critical"'
        to: [alerts_csv, db]
      - to: history
"""
PROM_RULE = """      - alert: {name}
        expr: '{query} > 0.95'
        for: 15m
        labels: {{severity: critical, team: t{n}}}
        annotations: {{summary: "{{{{ $labels.instance }}}} at {{{{ $value | humanizePercentage }}}}"}}
"""

CHILD = """
import sys, time
import vmrules
from vmrules.config.validate import validate_paths
times = []
for _ in range(2):
    t = time.perf_counter()
    result = validate_paths([sys.argv[1]])
    times.append(time.perf_counter() - t)
    assert result.ok and result.ruleset is not None and len(result.ruleset.rules) == int(sys.argv[2])
print(*times, vmrules.__file__)
"""


def make(root: str, files: int, rules: int) -> None:
    with open(os.path.join(root, "targets.yaml"), "w") as f:
        f.write(TARGETS)
    for n in range(files):
        text = "version: 1\ndatasource: {url: 'http://vmselect:8481/select/0/prometheus'}\nrules:\n"
        text += "".join(RULE.format(name=f"r{n}_{k}", i=n) for k in range(rules))
        with open(os.path.join(root, f"f{n:04d}.yaml"), "w") as f:
            f.write(text)


def make_pair(root: str, files: int, rules: int) -> tuple[str, str]:
    """The same queries as vmrules files (with targets) and as Prometheus rule files; their two folders."""
    vm, prom = os.path.join(root, "vmrules"), os.path.join(root, "prometheus")
    os.makedirs(vm)
    os.makedirs(prom)
    with open(os.path.join(vm, "targets.yaml"), "w") as f:
        f.write(TARGETS)
    for n in range(files):
        queries = [(f"r{n}_{k}", SHAPES[k % len(SHAPES)].format(n=n, m=k)) for k in range(rules)]
        with open(os.path.join(vm, f"f{n:04d}.yaml"), "w") as f:
            f.write("version: 1\ndatasource: {url: 'http://vmselect:8481/select/0/prometheus'}\nrules:\n" +
                    "".join(VM_RULE.format(name=name, query=q, n=n) for name, q in queries))
        with open(os.path.join(prom, f"f{n:04d}.yml"), "w") as f:
            f.write(f"groups:\n  - name: g{n}\n    rules:\n" +
                    "".join(PROM_RULE.format(name=name, query=q, n=n) for name, q in queries))
    return vm, prom


def against_promtool(root: str, files: int, rules: int, runs: int) -> None:
    """`vmrules validate` and `promtool check rules` on the same queries, interleaved, fresh processes."""
    import glob
    import shutil

    promtool = shutil.which("promtool")
    if promtool is None:
        raise SystemExit("promtool is not installed (Debian's prometheus package)")
    vm, prom = make_pair(root, files, rules)
    commands = {"vmrules validate": [os.path.join(os.path.dirname(sys.executable), "vmrules"), "validate", "-q", vm],
                "promtool check rules": [promtool, "check", "rules", *sorted(glob.glob(os.path.join(prom, "*.yml")))]}
    times: dict[str, list[float]] = {k: [] for k in commands}
    for cmd in commands.values():                       # warm-up; both must accept their files
        subprocess.run(cmd, check=True, capture_output=True)
    for run in range(runs):
        for name in (list(commands) if run % 2 == 0 else list(commands)[::-1]):
            t = time.perf_counter()
            subprocess.run(commands[name], check=True, capture_output=True)
            times[name].append(time.perf_counter() - t)
        print(f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
    ratios = [a / b for a, b in zip(*times.values(), strict=True)]
    print(f"{files} files x {rules} rules, each with its own query; {runs} interleaved runs, median (min)")
    for name, values in times.items():
        print(f"  {name}: {statistics.median(values):.2f} s ({min(values):.2f})")
    print(f"  vmrules / promtool, median of paired ratios: {statistics.median(ratios):.2f} (target <= 1.3)")


def compile_package(checkout: str) -> None:
    """An installed package has its bytecode compiled by pip; an editable checkout under
    PYTHONDONTWRITEBYTECODE would compile every module in every run instead."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(checkout, "vmrules")], check=True)


def alone(root: str, files: int, rules: int, runs: int) -> None:
    """In one process, repeated; then fresh CLI processes."""
    from vmrules.config.validate import validate_paths
    inproc, cli = [], []
    vmrules = os.path.join(os.path.dirname(sys.executable), "vmrules")
    for _ in range(runs):
        t = time.perf_counter()
        result = validate_paths([root])
        inproc.append(time.perf_counter() - t)
        assert result.ok and result.ruleset is not None and len(result.ruleset.rules) == files * rules
        t = time.perf_counter()
        subprocess.run([vmrules, "validate", "-q", root], check=True)
        cli.append(time.perf_counter() - t)
    print(f"validate {files} files x {rules} rules ({files * rules} rules), {runs} runs")
    print(f"  in-process: median {statistics.median(inproc):.2f} s (min {min(inproc):.2f})")
    print(f"  vmrules validate (fresh process): median {statistics.median(cli):.2f} s (min {min(cli):.2f})")


def side_by_side(root: str, files: int, rules: int, runs: int, other: str) -> None:
    """This checkout and `other`, interleaved (the order alternates), each figure from a fresh process.

    Besides wall times, the CPU time of the CLI process and its workers: on a shared machine it moves
    far less than the wall time with what else runs."""
    bins = {"this": os.path.dirname(sys.executable), "other": os.path.join(other, ".venv", "bin")}
    keys = ("first", "second", "cli", "cpu")
    times: dict[str, dict[str, list[float]]] = {k: {key: [] for key in keys} for k in bins}

    def one(side: str, warm_up: bool = False) -> tuple[float, ...]:
        out = subprocess.run([os.path.join(bins[side], "python"), "-c", CHILD, root, str(files * rules)],
                             check=True, capture_output=True, text=True, cwd=root).stdout.split()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run([os.path.join(bins[side], "vmrules"), "validate", "-q", root], check=True, cwd=root)
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        if warm_up:
            print(f"{side}: {os.path.dirname(os.path.dirname(out[2]))}", flush=True)
        return float(out[0]), float(out[1]), wall, cpu

    for side in bins:                                   # warm-up: caches, page cache; also checks both work
        one(side, warm_up=True)
    for run in range(runs):
        for side in (("this", "other") if run % 2 == 0 else ("other", "this")):
            for key, value in zip(keys, one(side), strict=True):
                times[side][key].append(value)
        print(f"run {run + 1}: " + ", ".join(f"{s} " + "/".join(f"{times[s][k][-1]:.2f}" for k in keys) + " s"
                                             for s in bins), flush=True)
    print(f"validate {files} files x {rules} rules ({files * rules} rules), {runs} interleaved runs, medians (min)")
    print("| | in-process, first call | in-process, second call | `vmrules validate` fresh process | its CPU time |")
    print("|---|---|---|---|---|")
    for side in bins:
        cells = [f"{statistics.median(v):.2f} s ({min(v):.2f})" for v in times[side].values()]
        print(f"| {side} | " + " | ".join(cells) + " |")
    ratios = [statistics.median([a / b for a, b in zip(times["this"][k], times["other"][k], strict=True)])
              for k in keys]
    print("| this / other, median of paired ratios | " + " | ".join(f"{r:.3f}" for r in ratios) + " |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="?", type=int, default=1000)
    ap.add_argument("rules", nargs="?", type=int, default=10)
    ap.add_argument("runs", nargs="?", type=int, default=5)
    ap.add_argument("--against", default="", metavar="DIR", help="another checkout with its own .venv")
    ap.add_argument("--promtool", action="store_true", help="side by side with promtool check rules")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as root:
        if a.promtool:
            compile_package(os.path.join(os.path.dirname(__file__), ".."))
            against_promtool(root, a.files, a.rules, a.runs)
            return
        make(root, a.files, a.rules)
        if a.against:
            compile_package(os.path.join(os.path.dirname(__file__), ".."))
            compile_package(a.against)
            side_by_side(root, a.files, a.rules, a.runs, a.against)
        else:
            alone(root, a.files, a.rules, a.runs)


if __name__ == "__main__":
    main()
