"""The alert state of each series under one threshold: `for`, `keep_firing_for` and `clear`.

The semantics are those of a rule evaluated at every step, as vmalert and
Prometheus evaluate alerting rules; per series and threshold, at each step t:

- the condition *holds* when the series has a kept sample at t and the condition
  is true for it (a missing sample, or one dropped by `valid` or `where`, is a
  step at which it does not hold);
- the state turns *firing* once the condition has held at every step of
  [t - for, t]; it stays firing while the condition holds, and with `clear` also
  at samples where the clear condition does not hold (hysteresis);
- when a firing state stops holding, `keep_firing_for` keeps it firing while
  less than that has passed since the first step it stopped; then it ends.

Rows exist only at kept samples; a row has the threshold's severity when its
state is firing there. All of it is computed with numpy over the rows of a
batch: a firing stretch begins at a *trigger* (a row whose condition has held
for `for`) and ends at a *reset* (a row, or a gap between rows, at which the
state stopped holding `keep_firing_for` ago), so a row fires when its latest
trigger is later than its latest reset. What a batch leaves for the next
(another request, chunk or run) is a `Carried` state per series.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NONE = np.iinfo(np.int64).min        # "no time" in int64 arrays


@dataclass(frozen=True)
class Carried:
    """One threshold's state of one series at its last row (`ts`).

    `run_start`: when the current run of the condition began (None: it did not hold);
    `firing`; `stopped`: when the firing state stopped holding (None: it held).
    """

    ts: int
    run_start: int | None
    firing: bool
    stopped: int | None

    def to_list(self) -> list[int | bool | None]:
        return [self.ts, self.run_start, self.firing, self.stopped]

    @classmethod
    def from_list(cls, v: list[int | bool | None]) -> Carried:
        ts, run_start, firing, stopped = v
        return cls(int(ts or 0), None if run_start is None else int(run_start), bool(firing),
                   None if stopped is None else int(stopped))

    @property
    def matters(self) -> bool:
        """False when the next row would start afresh anyway."""
        return self.firing or self.run_start is not None


@dataclass
class Prior:
    """Per row, the carried state at the first row of each series in the batch (elsewhere unused)."""

    has: np.ndarray          # bool: a carried state exists
    ts: np.ndarray
    run_start: np.ndarray    # NONE: the condition did not hold
    firing: np.ndarray
    holding: np.ndarray      # bool: the state held at that row
    stopped: np.ndarray

    @classmethod
    def of(cls, n: int, heads: np.ndarray, carried: list[Carried | None]) -> Prior:
        p = cls(np.zeros(n, bool), np.zeros(n, np.int64), np.full(n, NONE), np.zeros(n, bool),
                np.zeros(n, bool), np.full(n, NONE))
        for h, c in zip(heads, carried, strict=True):
            if c is None:
                continue
            p.has[h], p.ts[h], p.firing[h] = True, c.ts, c.firing
            p.run_start[h] = NONE if c.run_start is None else c.run_start
            p.holding[h] = c.stopped is None
            p.stopped[h] = NONE if c.stopped is None else c.stopped
        return p


@dataclass
class Outcome:
    firing: np.ndarray       # bool per row
    run_start: np.ndarray    # per row; NONE where the condition does not hold
    holding: np.ndarray      # bool per row: the (hysteresis-extended) condition holds
    stopped: np.ndarray      # per row where not holding: when it stopped holding
    continued: np.ndarray    # bool per row: firing, and firing without a break since the previous row
    ends_by: np.ndarray      # per row: when the firing state ends if no later row holds it

    def carried(self, ts: np.ndarray, tails: np.ndarray) -> list[Carried]:
        out = []
        for t in tails:
            rs, st = int(self.run_start[t]), int(self.stopped[t])
            out.append(Carried(int(ts[t]), None if rs == NONE else rs, bool(self.firing[t]),
                               None if self.holding[t] else st))
        return out


def _shift(a: np.ndarray, head: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """The previous row's value; at each series' first row, the carried one."""
    prev = np.empty_like(a)
    prev[1:] = a[:-1]
    if len(a):
        prev[0] = prior[0]
    return np.where(head, prior, prev)


def _fill(is_start: np.ndarray, value: np.ndarray) -> np.ndarray:
    """At each row, `value` at the latest row (at or before it) where `is_start`."""
    idx = np.maximum.accumulate(np.where(is_start, np.arange(len(is_start)), -1))
    return value[np.maximum(idx, 0)]


def run(cond: np.ndarray, clear: np.ndarray | None, ts: np.ndarray, head: np.ndarray, prior: Prior,
        step_ms: int, for_ms: int, keep_ms: int) -> Outcome:
    """The state of one threshold at every row (rows sorted by series, then time; `head`: first row of a series)."""
    n = len(ts)
    has_prev = np.where(head, prior.has, True)
    prev_ts = _shift(ts, head, prior.ts)
    contiguous = has_prev & (ts - prev_ts == step_ms)
    if clear is None and not keep_ms:
        return _for_only(cond, ts, head, prior, step_ms, for_ms, contiguous)

    # runs of the condition (for `for`): a run goes on from the previous row when both held, one step apart
    prev_held = np.where(head, prior.run_start != NONE, _shift(cond, head, prior.run_start != NONE))
    goes_on = cond & contiguous & prev_held
    start_val = np.where(head & goes_on, prior.run_start, ts)
    run_start = np.where(cond, _fill(cond & (~goes_on | head), start_val), NONE)
    trigger = cond & (ts - run_start >= for_ms)

    # the firing state holds at a row while the condition holds (or, with clear, while it is not cleared)
    holding = cond | ~clear if clear is not None else cond
    prev_holding = np.where(head, prior.holding, _shift(holding, head, prior.holding))
    not_holding = ~holding
    inherit = not_holding & has_prev & ~prev_holding
    began = np.where(has_prev & prev_holding, prev_ts + step_ms, ts)   # the first step it stopped holding
    stopped = np.where(not_holding, _fill(not_holding & (~inherit | head), np.where(head & inherit, prior.stopped,
                                                                                  began)), NONE)
    dead = not_holding & (ts - stopped >= keep_ms)
    prev_stopped = np.where(prev_holding, prev_ts + step_ms, _shift(stopped, head, prior.stopped))
    ended_in_gap = has_prev & ~contiguous & (ts - step_ms - prev_stopped >= keep_ms)

    # events, ordered within a row: series start (reset), carried firing (trigger), a gap's end (reset),
    # the row itself (trigger or reset: never both, a trigger holds)
    pos = 4 * np.arange(n, dtype=np.int64)
    last_trigger = np.maximum.accumulate(np.where(trigger, pos + 3, np.where(head & prior.firing, pos + 1, -1)))
    last_reset = np.maximum.accumulate(np.where(dead, pos + 3, np.where(ended_in_gap, pos + 2,
                                                                           np.where(head, pos, -1))))
    firing = last_trigger > last_reset
    continued = firing & _shift(firing, head, prior.firing) & ~ended_in_gap
    ends_by = _on_grid(np.where(holding, ts + step_ms, stopped) + keep_ms, step_ms)
    return Outcome(firing, run_start, holding, stopped, continued, ends_by)


def _for_only(cond: np.ndarray, ts: np.ndarray, head: np.ndarray, prior: Prior, step_ms: int, for_ms: int,
              contiguous: np.ndarray) -> Outcome:
    """Without keep_firing_for or clear, firing is the condition held for `for`: no events to order."""
    prev_held = np.where(head, prior.run_start != NONE, _shift(cond, head, prior.run_start != NONE))
    goes_on = cond & contiguous & prev_held
    start_val = np.where(head & goes_on, prior.run_start, ts)
    run_start = np.where(cond, _fill(cond & (~goes_on | head), start_val), NONE)
    firing = cond & (ts - run_start >= for_ms)
    continued = firing & goes_on & _shift(firing, head, prior.firing)
    return Outcome(firing, run_start, cond, np.where(cond, NONE, ts), continued, ts + step_ms)


def _on_grid(ms: np.ndarray, step_ms: int) -> np.ndarray:
    """Up to the next point on the step's grid (where the state is evaluated)."""
    return -(-ms // step_ms) * step_ms
