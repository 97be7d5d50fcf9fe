"""The time window of a rule: step-aligned points, split into chunks for long ranges."""

from __future__ import annotations

from dataclasses import dataclass

from vmrules.model import Rule


@dataclass(frozen=True)
class Window:
    """Points start..end inclusive, every step (milliseconds), or one instant at `end`.

    `lookback_ms` before the start is fetched too, only to know the alert state at
    the start (those samples are neither counted nor exported).
    """

    start_ms: int
    end_ms: int
    step_ms: int
    instant: bool = False
    lookback_ms: int = 0

    @property
    def first_ms(self) -> int:
        """The first point that is exported."""
        return self.end_ms if self.instant else self.start_ms

    def fetches(self) -> list[Window]:
        """What to fetch, in time order: the lookback (a range, also for an instant rule), then the window."""
        if not self.lookback_ms or not self.points:
            return [self]
        first = self.first_ms
        before = Window(first - self.lookback_ms, first - self.step_ms, self.step_ms)
        if self.instant:
            return [before, self]
        return [Window(before.start_ms, self.end_ms, self.step_ms)]

    @property
    def points(self) -> int:
        if self.instant:
            return 1
        return 0 if self.end_ms < self.start_ms else (self.end_ms - self.start_ms) // self.step_ms + 1

    def chunks(self, max_points: int) -> list[Window]:
        """Consecutive sub-windows of at most `max_points` points, sharing no point."""
        if self.instant or self.points <= max_points:
            return [self] if self.points else []
        out, start, span = [], self.start_ms, (max_points - 1) * self.step_ms
        while start <= self.end_ms:
            end = min(start + span, self.end_ms)
            out.append(Window(start, end, self.step_ms))
            start = end + self.step_ms
        return out


def rule_window(rule: Rule, from_ms: int | None, to_ms: int) -> Window:
    """The rule's window: [from, to] when given, else its range ending at `to`; points on multiples of step;
    with the lookback its alert states need."""
    start = to_ms - rule.range_ms if from_ms is None else from_ms
    if rule.instant:
        return Window(start, to_ms, rule.step_ms, instant=True, lookback_ms=rule.warmup_ms)
    step = rule.step_ms
    first = -(-start // step) * step
    last = to_ms // step * step
    return Window(first, last, step, lookback_ms=rule.warmup_ms)
