"""Alert episodes: one row per stretch of a series at one severity, for `shape: episodes` targets.

An episode is a run of a series' rows with the same severity, one step apart
or kept firing in between (`keep_firing_for`), whichever threshold of that
severity gave it. It has `start` (its first row), `end` (the first step at
which the series no longer had that severity; null while it goes on), `peak`
(its most extreme value: the largest, or the least for `below` and `at_most`),
`last_value` and `samples`. Episodes are tracked across batches, requests,
chunks and incremental runs (an open one is carried), so
split runs give the episodes of one whole run. A target receives an episode
when any of its rows was routed to it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from vmrules.model import EPISODE_COLUMNS as COLUMNS

Key = tuple[str, str]                   # (metric, labels JSON)
TIMESTAMP = pa.timestamp("ms", tz="UTC")


@dataclass
class Open:
    """An episode still going at the last row seen of its series."""

    severity: str
    threshold: int
    start: int
    peak: float
    last_value: float
    samples: int
    ends_by: int                        # when it ends if no later row holds it (ms)
    targets: set[str] = field(default_factory=set)
    last_ts: int = 0                    # its last row

    def to_list(self) -> list[object]:
        return [self.severity, self.threshold, self.start, _num(self.peak), _num(self.last_value), self.samples,
                self.ends_by, sorted(self.targets), self.last_ts]

    @classmethod
    def from_list(cls, v: Sequence[Any]) -> Open:
        sev, thr, start, peak, last, samples, ends_by, targets, last_ts = v
        return cls(str(sev), int(thr), int(start), float(peak), float(last), int(samples), int(ends_by),
                   {str(t) for t in targets}, int(last_ts))


def _num(v: float) -> float | str:
    return v if np.isfinite(v) else repr(v)          # JSON has no NaN or infinity: "nan", "inf", "-inf"


@dataclass
class Closed:
    """Episodes as columns (few rows), with the targets each goes to."""

    keys: list[Key] = field(default_factory=list)
    severity: list[str] = field(default_factory=list)
    start: list[int] = field(default_factory=list)
    end: list[int | None] = field(default_factory=list)
    peak: list[float] = field(default_factory=list)
    last_value: list[float] = field(default_factory=list)
    samples: list[int] = field(default_factory=list)
    targets: list[set[str]] = field(default_factory=list)

    def add(self, key: Key, ep: Open, end: int | None) -> None:
        self.keys.append(key)
        self.severity.append(ep.severity)
        self.start.append(ep.start)
        self.end.append(end)
        self.peak.append(ep.peak)
        self.last_value.append(ep.last_value)
        self.samples.append(ep.samples)
        self.targets.append(ep.targets)

    def for_target(self, rule: str, name: str, columns: Sequence[str]) -> pa.Table | None:
        """The episodes that go to target `name`, in its columns (None: none)."""
        pick = [i for i, t in enumerate(self.targets) if name in t]
        if not pick:
            return None
        keys = [self.keys[i] for i in pick]
        cols: dict[str, pa.Array] = {
            "rule": pa.array([rule] * len(pick), pa.string()),
            "metric": pa.array([k[0] for k in keys], pa.string()),
            "labels": pa.array([k[1] for k in keys], pa.string()),
            "severity": pa.array([self.severity[i] for i in pick], pa.string()),
            "start": pa.array([self.start[i] for i in pick], TIMESTAMP),
            "end": pa.array([self.end[i] for i in pick], TIMESTAMP),
            "peak": pa.array([self.peak[i] for i in pick], pa.float64()),
            "last_value": pa.array([self.last_value[i] for i in pick], pa.float64()),
            "samples": pa.array([self.samples[i] for i in pick], pa.int64()),
        }
        if tuple(columns) == COLUMNS:
            return pa.table(cols)
        labels = [json.loads(k[1]) for k in keys]
        return pa.table({c: cols[c] if c in cols else pa.array([lab.get(c, "") for lab in labels], pa.string())
                         for c in columns})


@dataclass
class Rows:
    """What episode tracking needs of a batch's rows (sorted by series, then time)."""

    keys: list[Key]                 # per series of the batch
    sid: np.ndarray
    ts: np.ndarray
    val: np.ndarray
    severity: np.ndarray            # index into `names`, -1: none
    names: list[str]
    threshold: np.ndarray           # the firing threshold that gave the severity
    continued: np.ndarray           # that threshold was firing at the previous row and stayed so
    ends_by: np.ndarray             # when that threshold stops firing if no later row holds it
    routed: Mapping[str, np.ndarray]   # per episode target: the rows routed to it
    low: np.ndarray                 # that threshold fires on low values (below, at_most): its peak is the least
    step_ms: int = 60_000


def track(rows: Rows, open_: dict[Key, Open], emit_from: int | None) -> Closed:
    """Extend and close episodes with a batch's rows; `open_` (by series) is updated in place.

    Returns the episodes that closed (those wholly before `emit_from`, the lookback, left out).
    """
    closed = Closed()
    sid, sev = rows.sid, rows.severity
    n = len(sid)
    head = np.ones(n, bool)
    head[1:] = sid[1:] != sid[:-1]
    alert = sev >= 0
    goes_on = np.zeros(n, bool)          # the same severity as the row before, one step on or kept firing since
    goes_on[1:] = ~head[1:] & alert[:-1] & (sev[1:] == sev[:-1]) & \
        ((np.diff(rows.ts) == rows.step_ms) | rows.continued[1:])
    starts = alert & (head | ~goes_on)
    for h in np.flatnonzero(head):                   # an episode carried in: goes on at the head, or closes there
        key = rows.keys[sid[h]]
        ep = open_.get(key)
        if ep is None:
            continue
        same = alert[h] and rows.names[sev[h]] == ep.severity and \
            (int(rows.ts[h]) - ep.last_ts == rows.step_ms or bool(rows.continued[h]))
        if not same:
            _close(closed, key, open_.pop(key), min(int(rows.ts[h]), ep.ends_by), emit_from)
    first = np.flatnonzero(starts)
    if not len(first):
        return closed
    bounds = np.r_[first[1:], n] - 1
    last = np.array([_last_alert(alert, int(f), int(b)) for f, b in zip(first, bounds, strict=True)], np.int64)
    signed = np.where(rows.low, -rows.val, rows.val)             # the peak is the most extreme value (not NaN)
    peaks = np.fmax.reduceat(signed, first)                      # up to the next start: cut at the last row below
    peaks = np.array([p if lst == b else np.fmax.reduce(signed[f:lst + 1])
                      for f, b, lst, p in zip(first, bounds, last, peaks, strict=True)])
    for j, (f, l_) in enumerate(zip(first, last, strict=True)):
        key = rows.keys[sid[f]]
        ep = open_.pop(key, None) if head[f] else None
        if ep is None or ep.severity != rows.names[sev[f]]:
            ep = Open(rows.names[sev[f]], int(rows.threshold[f]), int(rows.ts[f]), float("-inf"), 0.0, 0, 0)
        low = bool(rows.low[f])
        peak = -float(peaks[j]) if low else float(peaks[j])
        if ep.samples == 0 or np.isnan(ep.peak):
            ep.peak = peak
        elif not np.isnan(peak):
            ep.peak = min(ep.peak, peak) if low else max(ep.peak, peak)
        ep.last_value = float(rows.val[l_])
        ep.samples += int(l_ - f + 1)
        ep.ends_by = int(rows.ends_by[l_])
        ep.last_ts = int(rows.ts[l_])
        ep.targets |= {name for name, m in rows.routed.items() if m[f:l_ + 1].any()}
        if l_ + 1 < n and not head[l_ + 1]:          # a later row of the series without it: closed
            _close(closed, key, ep, min(int(rows.ts[l_ + 1]), ep.ends_by), emit_from)
        else:
            open_[key] = ep
    return closed


def _last_alert(alert: np.ndarray, first: int, bound: int) -> int:
    """The last row of the episode starting at `first`: its rows are consecutive alerting rows."""
    stop = np.flatnonzero(~alert[first:bound + 1])
    return first + int(stop[0]) - 1 if len(stop) else bound


def _close(closed: Closed, key: Key, ep: Open, end: int, emit_from: int | None) -> None:
    if emit_from is None or end >= emit_from:        # it ended inside the window, or later
        closed.add(key, ep, end)


def finish(open_: dict[Key, Open], window_end: int, emit_from: int | None) -> tuple[Closed, Closed]:
    """At the end of a window: the episodes that ended by then (removed from `open_`), and those still open."""
    ended, still = Closed(), Closed()
    for key in sorted(open_):
        ep = open_[key]
        if ep.ends_by <= window_end:
            _close(ended, key, open_.pop(key), ep.ends_by, emit_from)
        else:
            still.add(key, ep, None)
    return ended, still
