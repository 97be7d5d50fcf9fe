"""Deterministic test data aligned to a 60 s grid, and an oracle computed from it directly.

The oracle never touches vmrules code: it walks the raw samples in plain Python.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

END_S = 1_793_491_200            # 2026-11-01T00:00:00Z, the last sample of every series
POINTS = 240                     # four hours at 60 s
STEP_S = 60


def _cpu(s: int, i: int) -> float:
    v = round(40 + 30 * math.sin(i / 9 + s) + (s * 7 + i * 13) % 11, 3)
    if s == 3 and 100 <= i < 130:          # a sustained spike for `for`
        v = 97.5
    if s == 5 and i in (50, 51):
        v = 150.0 if i == 50 else -5.0      # out of the valid range
    if s == 11 and i == 200:
        v = math.inf
    return v


def dataset() -> list[dict[str, Any]]:
    """Import lines: 12 cpu_usage series and 4 disk_free series."""
    ts = [(END_S - (POINTS - 1 - i) * STEP_S) * 1000 for i in range(POINTS)]
    lines = []
    for s in range(12):
        labels = {"__name__": "cpu_usage", "job": "node", "instance": f"host-{s:02d}",
                  "env": "prod" if s % 2 == 0 else "staging"}
        lines.append({"metric": labels, "values": [_cpu(s, i) for i in range(POINTS)], "timestamps": ts})
    for s in range(4):
        labels = {"__name__": "disk_free", "job": "node", "instance": f"host-{s:02d}", "mount": "/"}
        lines.append({"metric": labels, "values": [float(10 ** 9 * (s + 1) - i * 10 ** 6) for i in range(POINTS)],
                      "timestamps": ts})
    return lines


def export_jsonl() -> str:
    """The dataset as a VictoriaMetrics export file (infinities written bare, as VM does)."""
    out = []
    for line in dataset():
        text = json.dumps(line, separators=(",", ":"))
        out.append(text.replace("Infinity", "Inf"))
    return "\n".join(out) + "\n"


Threshold = tuple[str, Callable[[float], bool], int]


def expected(rule: str, match: Callable[[dict[str, str]], bool], start_s: int, end_s: int, step_s: int = STEP_S, *,
             valid: tuple[float | None, float | None] = (None, None), where: Callable[[dict], bool] | None = None,
             thresholds: tuple[Threshold, ...] = (), labels: dict[str, str] | None = None,
             route: Callable[[dict], bool] | None = None) -> list[dict[str, Any]]:
    """Rows a rule must produce over [start, end] (inclusive, step-aligned) from the raw data.

    Window independent: the evaluation starts with the data, so a condition that
    held before `start` counts toward `for` inside the window."""
    rows = []
    first = -(-start_s // step_s) * step_s
    origin = -(-(END_S - (POINTS - 1) * STEP_S) // step_s) * step_s
    for line in dataset():
        metric = dict(line["metric"])
        if not match(metric):
            continue
        name = metric.pop("__name__", "")
        metric.update(labels or {})
        by_ts = dict(zip((t // 1000 for t in line["timestamps"]), line["values"], strict=True))
        held: dict[int, int | None] = {}
        for ts in range(min(first, origin), end_s + 1, step_s):
            if ts not in by_ts:
                held = {}
                continue
            v = by_ts[ts]
            lo, hi = valid
            if (lo is not None or hi is not None) and (math.isnan(v) or (lo is not None and v < lo)
                                                       or (hi is not None and v > hi)):
                held = {}
                continue
            row = {**metric, "rule": rule, "metric": name, "timestamp": ts, "value": v}
            if where and not where(row):
                held = {}
                continue
            severity = None
            for i, (sev, pred, for_s) in enumerate(thresholds):
                if pred(v):
                    held[i] = ts if held.get(i) is None else held[i]
                    if severity is None and ts - held[i] >= for_s:  # type: ignore[operator]
                        severity = sev
                else:
                    held[i] = None
            row["severity"] = severity
            row["alert"] = severity is not None
            if ts >= first and (route is None or route(row)):
                rows.append(row)
    return rows


def key(row: dict[str, Any]) -> tuple[Any, ...]:
    """A comparable identity of a row: labels, unix seconds, value, severity."""
    skip = {"rule", "metric", "timestamp", "value", "severity", "alert", "labels"}
    labels = tuple(sorted((k, str(v)) for k, v in row.items() if k not in skip and v not in (None, "")))
    return labels, int(row["timestamp"]), round(float(row["value"]), 6), row.get("severity")
