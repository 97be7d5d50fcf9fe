"""`for` and `keep_firing_for` agree with Prometheus: promtool (Debian's prometheus 2.42) checks vmrules' answers.

For each case, vmrules evaluates the series; its alerting steps become the
expected alerts of a `promtool test rules` file over the same samples (a
missing sample is `stale` there: the series is absent at that evaluation).
promtool passes only when Prometheus fires at exactly those steps.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import yaml

from vmrules.evaluate.rows import evaluate
from vmrules.model import Rule, Threshold
from vmrules.sources.result import QueryResult

STEP = 60_000
Case = tuple[list[float | None], int, int]       # values (None: no sample), for minutes, keep_firing_for minutes

CASES: list[Case] = [
    ([85, 85, 85, 50, 50, 50, 50, 50], 2, 3),          # keeps firing 3 steps after the dip
    ([85, 85, 85, 50, 85, 50, 50, 50, 50, 50], 2, 3),  # a new true sample renews it
    ([85, 85, 85, None, None, 85, 50, 50], 2, 3),      # absent samples count as false, bridged
    ([85, 85, 85, None, None, None, None, 85], 2, 3),  # too long a gap: pending again
    ([85, 50, 85, 50, 85, 50, 85], 0, 1),
    ([85, 85, 50, 85, 85, 85, 50, 50, 50, 50], 2, 0),
    ([50, 85, 85, 85, 85, 50, 85, 85, 85, 50], 1, 2),
]


def random_cases(n: int) -> list[Case]:
    rnd = random.Random(5)
    out = []
    for _ in range(n):
        values = [rnd.choice([50.0, 85.0, 85.0, None]) for _ in range(rnd.randint(5, 25))]
        out.append((values, rnd.choice([0, 1, 2, 4]), rnd.choice([0, 1, 2, 5])))
    return out


def vmrules_firing(values: list[float | None], for_m: int, keep_m: int, rule: Rule | None = None) -> list[bool]:
    th = Threshold("page", ">", 80.0, None, for_m * STEP, None, keep_m * STEP)  # type: ignore[arg-type]
    rule = rule or Rule("r", "m", None, step_ms=STEP, thresholds=(th,))  # type: ignore[arg-type]
    present = [i for i, v in enumerate(values) if v is not None]
    result = QueryResult([{"__name__": "m", "case": "x"}], np.zeros(len(present), np.int32),
                         np.array([i * STEP for i in present], np.int64),
                         np.array([values[i] for i in present], np.float64))
    state = {int(r["timestamp"].timestamp() * 1000) // STEP: r["alert"]
             for r in evaluate(rule, result, {}).table.to_pylist()}
    return [state.get(i, False) for i in range(len(values))]


def test_keep_firing_for_agrees_with_promtool(tmp_path: Path) -> None:
    run_against_promtool(tmp_path, from_the_file=False)


def test_the_rules_of_a_prometheus_rule_file_agree_with_promtool(tmp_path: Path) -> None:
    """The same alerts, run as vmrules runs a Prometheus rule file (prometheus_rules: / plan): the rules it
    builds from the file's own text fire where Prometheus does."""
    run_against_promtool(tmp_path, from_the_file=True)


def _alerts(cases: list[Case]) -> list[dict[str, object]]:
    groups = []
    for n, (_, for_m, keep_m) in enumerate(cases):
        alert: dict[str, object] = {"alert": f"Case{n}", "expr": f'm{{case="{n}"}} > 80',
                                    "labels": {"severity": "page"}}
        if for_m:
            alert["for"] = f"{for_m}m"
        if keep_m:
            alert["keep_firing_for"] = f"{keep_m}m"
        groups.append({"name": f"case{n}", "interval": "1m", "rules": [alert]})
    return groups


def run_against_promtool(tmp_path: Path, from_the_file: bool) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed: run `make test` (it installs Debian's prometheus)"
    cases = CASES + random_cases(40)
    groups = _alerts(cases)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": groups}))
    built: dict[str, Rule] = {}
    if from_the_file:
        from vmrules.config.load import load_file
        from vmrules.config.promrules import build_rules

        rules, warnings = build_rules(load_file(str(tmp_path / "rules.yml")), None, (), 3_600_000, {})
        assert not warnings and len(rules) == len(cases)
        built = {r.name: r for r in rules}
    tests = []
    for n, (values, for_m, keep_m) in enumerate(cases):
        text = " ".join("stale" if v is None else f"{v:g}" for v in values)
        fired = vmrules_firing(values, for_m, keep_m, built.get(f"Case{n}"))
        assert fired.count(True) or n > len(CASES), f"case {n} never fires: not a useful case"
        # a step without a sample has no row in vmrules; Prometheus' state there is still checked
        # through the steps after it, so only steps with a sample are compared
        tests.append({"interval": "1m", "input_series": [{"series": f'm{{case="{n}"}}', "values": text}],
                      "alert_rule_test": [
                          {"eval_time": f"{i}m", "alertname": f"Case{n}",
                           "exp_alerts": [{"exp_labels": {"severity": "page", "case": str(n)}}] if f else []}
                          for i, f in enumerate(fired) if values[i] is not None]})
    (tmp_path / "tests.yml").write_text(yaml.safe_dump({"rule_files": ["rules.yml"], "evaluation_interval": "1m",
                                                        "tests": tests}))
    res = subprocess.run([promtool, "test", "rules", "tests.yml"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "SUCCESS" in res.stdout + res.stderr
