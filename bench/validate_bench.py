"""Validation speed: N rule files of R rules each (default 1,000 x 10), in-process and as a fresh CLI process.

usage: python bench/validate_bench.py [FILES] [RULES_PER_FILE] [RUNS]
Prints the median of RUNS timings for each; the target is under 2 s for 1,000 x 10.
"""

from __future__ import annotations

import os
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


def make(root: str, files: int, rules: int) -> None:
    with open(os.path.join(root, "targets.yaml"), "w") as f:
        f.write(TARGETS)
    for n in range(files):
        text = "version: 1\ndatasource: {url: 'http://vmselect:8481/select/0/prometheus'}\nrules:\n"
        text += "".join(RULE.format(name=f"r{n}_{k}", i=n) for k in range(rules))
        with open(os.path.join(root, f"f{n:04d}.yaml"), "w") as f:
            f.write(text)


def main() -> None:
    files = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    rules = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    from vmrules.config.validate import validate_paths
    with tempfile.TemporaryDirectory() as root:
        make(root, files, rules)
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


if __name__ == "__main__":
    main()
