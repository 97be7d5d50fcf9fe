"""Alert states (for, keep_firing_for, clear) against a plain step-by-step machine, and window independence.

The oracle evaluates each series at every step, as vmalert and Prometheus
evaluate an alerting rule; vmrules computes the same with numpy over rows, in
batches that carry the state from one to the next.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from vmrules.evaluate.rows import EvalState, evaluate, finish_episodes
from vmrules.model import Condition, Route, Rule, Target, Threshold
from vmrules.sources.result import QueryResult
from vmrules.thresholds import BY_OP, COMPARISONS

STEP = 60_000
VALUES = [50.0, 69.9, 70.0, 75.0, 80.0, 80.1, 95.0, math.nan]
OPS = {c.op: c for c in COMPARISONS.values()}


def compare(op: str, x: float) -> Callable[[float], bool]:
    return lambda v: bool(getattr(np, BY_OP[op].ufunc)(v, x))


def oracle(values: list[float | None], th: Threshold) -> list[bool | None]:
    """Per step: None where no row, else whether the threshold fires there (plain Python, step by step)."""
    cond = compare(th.op, float(th.value or 0))
    clear = compare(th.clear.op, float(th.clear.value or 0)) if th.clear is not None else None
    active_at: int | None = None
    firing, since = False, None
    out: list[bool | None] = []
    for k, v in enumerate(values):
        t = k * STEP
        holds = v is not None and cond(v)
        if firing and v is not None and not holds and clear is not None:
            holds = not clear(v)
        if holds:
            since = None
            active_at = t if active_at is None else active_at
            firing = firing or t - active_at >= th.for_ms
        else:
            keep = False
            if firing and th.keep_firing_ms > 0:
                since = t if since is None else since
                keep = t - since < th.keep_firing_ms
            if not keep:
                firing, active_at, since = False, None, None
        out.append(None if v is None else firing)
    return out


def threshold(op: str, for_m: int, keep_m: int, clear: str | None) -> Threshold:
    return Threshold("s", op, 80.0, None, for_m * STEP, None, keep_m * STEP,  # type: ignore[arg-type]
                     Condition(clear, 70.0, None) if clear else None)


def answer(series: list[list[float | None]], lo: int, hi: int) -> QueryResult:
    """The samples at steps lo..hi of every series, as one query answer."""
    labels, sid, ts, val = [], [], [], []
    for i, values in enumerate(series):
        labels.append({"__name__": "m", "i": str(i)})
        for k in range(lo, min(hi, len(values) - 1) + 1):
            if values[k] is not None:
                sid.append(i)
                ts.append(k * STEP)
                val.append(values[k])
    return QueryResult(labels, np.array(sid, np.int32), np.array(ts, np.int64), np.array(val, np.float64))


def fired(rule: Rule, series: list[list[float | None]], cuts: list[int], emit_from: int | None = None,
          start: int = 0) -> dict[tuple[str, int], bool]:
    """Per (series, step): whether it alerted, evaluated in requests split at `cuts` (state carried)."""
    state = EvalState()
    bounds = [start, *cuts, max(len(s) for s in series)]
    out = {}
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        ev = evaluate(rule, answer(series, lo, hi - 1), {}, state, emit_from=emit_from)
        for r in ev.table.select(["labels", "timestamp", "alert"]).to_pylist():
            out[(r["labels"], int(r["timestamp"].timestamp() * 1000) // STEP)] = r["alert"]
    return out


values = st.lists(st.one_of(st.none(), st.sampled_from(VALUES)), min_size=1, max_size=40)
thresholds = st.builds(threshold, st.sampled_from(sorted(OPS)), st.sampled_from([0, 1, 2, 5]),
                       st.sampled_from([0, 1, 3]), st.sampled_from([None, "<", "<="]))


@settings(max_examples=400, deadline=None)
@given(st.lists(values, min_size=1, max_size=3), thresholds, st.lists(st.integers(1, 39), max_size=4))
def test_states_agree_with_the_step_by_step_machine(series: list[list[float | None]], th: Threshold,
                                                    cuts: list[int]) -> None:
    rule = Rule("r", "m", None, step_ms=STEP, thresholds=(th,))  # type: ignore[arg-type]
    got = fired(rule, series, sorted(set(cuts)))
    for i, vals in enumerate(series):
        for k, want in enumerate(oracle(vals, th)):
            if want is not None:
                assert got[(f'{{"i":"{i}"}}', k)] == want, (i, k)


@settings(max_examples=300, deadline=None)
@given(st.lists(values, min_size=1, max_size=3), st.lists(thresholds, min_size=1, max_size=3),
       st.lists(st.integers(1, 39), max_size=4), st.lists(st.integers(1, 39), max_size=4))
def test_splits_never_change_severities(series: list[list[float | None]], ths: list[Threshold],
                                        cuts_a: list[int], cuts_b: list[int]) -> None:
    ths = [Threshold(f"s{i}", t.op, t.value, t.when, t.for_ms, t.location, t.keep_firing_ms, t.clear)
           for i, t in enumerate(ths)]
    rule = Rule("r", "m", None, step_ms=STEP, thresholds=tuple(ths))  # type: ignore[arg-type]

    def severities(cuts: list[int]) -> list[tuple[str, int, str | None]]:
        state, rows = EvalState(), []
        bounds = [0, *sorted(set(cuts)), 40]
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            ev = evaluate(rule, answer(series, lo, hi - 1), {}, state)
            rows += [(r["labels"], r["timestamp"], r["severity"]) for r in ev.table.to_pylist()]
        return sorted(rows)

    assert severities(cuts_a) == severities(cuts_b)


@settings(max_examples=300, deadline=None)
@given(st.lists(values, min_size=1, max_size=3), st.lists(thresholds, min_size=1, max_size=2),
       st.integers(0, 39))
def test_a_window_with_its_lookback_agrees_with_a_longer_run(series: list[list[float | None]],
                                                           ths: list[Threshold], start: int) -> None:
    """`for` alone needs only `for` of lookback to be exact at the window's start."""
    ths = [Threshold(f"s{i}", t.op, t.value, None, t.for_ms, None, 0, None)  # type: ignore[arg-type]
           for i, t in enumerate(ths)]
    rule = Rule("r", "m", None, step_ms=STEP, thresholds=tuple(ths))  # type: ignore[arg-type]
    whole = fired(rule, series, [])
    lookback = rule.warmup_ms // STEP
    part = fired(rule, series, [], emit_from=start * STEP, start=max(0, start - lookback))
    assert part == {k: v for k, v in whole.items() if k[1] >= start}


def test_keep_firing_for_bridges_a_gap_and_a_dip() -> None:
    th = threshold(">", 2, 3, None)
    vals: list[float | None] = [95, 95, 95, 50, None, 95, 50, 50, 50, 50, 95]
    assert oracle(vals, th) == [False, False, True, True, None, True, True, True, True, False, False]
    rule = Rule("r", "m", None, step_ms=STEP, thresholds=(th,))  # type: ignore[arg-type]
    got = fired(rule, [vals], [4, 7])
    assert [got.get(('{"i":"0"}', k)) for k in range(len(vals))] == oracle(vals, th)


def test_clear_holds_the_alert_inside_the_band() -> None:
    th = threshold(">", 0, 0, "<")      # fire above 80, clear below 70
    vals: list[float | None] = [75, 85, 75, 72, 69, 75, 85, 75, None, 75]
    assert oracle(vals, th) == [False, True, True, True, False, False, True, True, None, False]
    rule = Rule("r", "m", None, step_ms=STEP, thresholds=(th,))  # type: ignore[arg-type]
    got = fired(rule, [vals], [3])
    assert [got.get(('{"i":"0"}', k)) for k in range(len(vals))] == oracle(vals, th)


# -- episodes -------------------------------------------------------------------------------------
EPISODE_TARGET = {"e": Target("e", "csv", {"path": "e.csv", "shape": "episodes"}, None)}  # type: ignore[arg-type]


def episode_rows(rule: Rule, series: list[list[float | None]], cuts: list[int]) -> list[tuple]:
    """Every episode (ended and still open) of a run split into requests at `cuts`."""
    state, out = EvalState(), []
    bounds = [0, *cuts, max(len(s) for s in series)]
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        ev = evaluate(rule, answer(series, lo, hi - 1), EPISODE_TARGET, state)
        out += ev.routed["e"].to_pylist() if "e" in ev.routed else []
    tail = finish_episodes(rule, state, (bounds[-1] - 1) * STEP, None, EPISODE_TARGET, ["e"])
    out += tail.routed["e"].to_pylist() if "e" in tail.routed else []
    return sorted((r["labels"], r["severity"], r["start"], r["end"], r["samples"], repr(r["last_value"])) for r in out)


@settings(max_examples=300, deadline=None)
@given(st.lists(values, min_size=1, max_size=3), st.lists(thresholds, min_size=1, max_size=2),
       st.lists(st.integers(1, 39), max_size=4))
def test_episodes_do_not_depend_on_splits(series: list[list[float | None]], ths: list[Threshold],
                                          cuts: list[int]) -> None:
    ths = [Threshold(f"s{i}", t.op, t.value, t.when, t.for_ms, t.location, t.keep_firing_ms, t.clear)
           for i, t in enumerate(ths)]
    rule = Rule("r", "m", None, step_ms=STEP, thresholds=tuple(ths),  # type: ignore[arg-type]
                routes=(Route(("e",), None, None),))  # type: ignore[arg-type]
    whole = episode_rows(rule, series, [])
    assert episode_rows(rule, series, sorted(set(cuts))) == whole
    alerting = sum(r["alert"] for r in evaluate(rule, answer(series, 0, 40), EPISODE_TARGET).table.to_pylist())
    assert sum(e[4] for e in whole) == alerting          # every alerting row is in exactly one episode


def test_episode_end_is_the_first_step_without_the_severity() -> None:
    th = threshold(">", 0, 2, None)                      # keep_firing_for 2m
    rule = Rule("r", "m", None, step_ms=STEP, thresholds=(th,),  # type: ignore[arg-type]
                routes=(Route(("e",), None, None),))  # type: ignore[arg-type]
    vals: list[float | None] = [95, 95, 50, 50, 50, None, 95, None, None, None, 95, 95]
    got = [(e[2].minute, e[3].minute if e[3] else None, e[4]) for e in episode_rows(rule, [vals], [])]
    # 95 95 50 50 | dip of 2m kept, ends at 4m; 95 at 6m, absent after: ends 2m after it stopped (7m + 2m)
    assert got == [(0, 4, 4), (6, 9, 1), (10, None, 2)]


def episodes_of(rule: Rule, vals: list[float | None], cuts: list[int] | None = None) -> list[tuple]:
    return [(e[1], e[2].minute if STEP == 60_000 else e[2], e[3] and e[3].minute, e[4], e[5])
            for e in episode_rows(rule, [vals], cuts or [])]


def test_thresholds_that_share_a_severity_make_one_episode() -> None:
    ths = (Threshold("warning", ">", 80.0, None, 0, None), Threshold("warning", ">=", 70.0, None, 0, None))  # type: ignore[arg-type]
    rule = Rule("r", "m", None, step_ms=STEP, thresholds=ths, routes=(Route(("e",), None, None),))  # type: ignore[arg-type]
    assert episodes_of(rule, [75, 85, 75, 50]) == [("warning", 0, 3, 3, "75.0")]


def test_an_end_falls_on_the_step_grid_and_a_nan_is_never_the_peak() -> None:
    th = Threshold("page", ">", 90.0, None, 0, None, keep_firing_ms=7 * STEP // 5)  # type: ignore[arg-type]
    rule = Rule("r", "m", None, step_ms=STEP, thresholds=(th,), routes=(Route(("e",), None, None),))  # type: ignore[arg-type]
    (ep,) = episodes_of(rule, [95, 95, 50, 50, 50])       # kept 1.4 steps after the dip: ends at the next step
    assert ep[:4] == ("page", 0, 4, 4)
    nan_rule = Rule("r", "m", None, step_ms=STEP, routes=(Route(("e",), None, None),),  # type: ignore[arg-type]
                    thresholds=(Threshold("s", "!=", 0.0, None, 0, None),))  # type: ignore[arg-type]
    for cuts in ([], [1], [2]):
        state, out = EvalState(), []
        bounds = [0, *cuts, 3]
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            ev = evaluate(nan_rule, answer([[5.0, math.nan, 7.0]], lo, hi - 1), EPISODE_TARGET, state)
            out += ev.routed["e"].to_pylist() if "e" in ev.routed else []
        tail = finish_episodes(nan_rule, state, 2 * STEP, None, EPISODE_TARGET, ["e"])
        out += tail.routed["e"].to_pylist()
        assert [e["peak"] for e in out] == [7.0], cuts
