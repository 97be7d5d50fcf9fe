"""Evaluate a rule on fetched samples: valid, where, thresholds (alert states in alertstate.py), routes.

Work is per sample in numpy/Arrow kernels and per series in Python; there is
no Python loop over rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vmrules import expr
from vmrules.errors import RuleError
from vmrules.evaluate import alertstate, episodes, templated
from vmrules.evaluate.counts import Counts
from vmrules.model import ROW_COLUMNS, SEVERITY_LABEL, Condition, Rule, Target
from vmrules.sources.result import QueryResult
from vmrules.thresholds import BY_OP

TIMESTAMP = pa.timestamp("ms", tz="UTC")


@dataclass
class Evaluation:
    """A rule's row table, the rows routed to each target, and the numbers of the run."""

    rule: str
    table: pa.Table
    routed: dict[str, pa.Table]
    counts: Counts = field(default_factory=Counts)


@dataclass
class _Series:
    """Per-series facts (few), shared by every column built from them."""

    labels: list[dict[str, str]]      # without __name__, with the rule's static labels
    metric: list[str]
    labels_json: list[str]

    @classmethod
    def of(cls, result: QueryResult, static: Mapping[str, str], external: Mapping[str, str] | None = None) -> _Series:
        labels, metric = [], []
        name = static.get("__name__")          # a recording rule names its series after the record
        static = {k: v for k, v in static.items() if k != "__name__"} if name is not None else static
        for lab in result.labels:
            rest = {k: v for k, v in lab.items() if k != "__name__"}
            rest.update(static)
            for k, v in (external or {}).items():
                rest.setdefault(k, v)
            labels.append(rest)
            metric.append(name if name is not None else lab.get("__name__", ""))
        as_json = [json.dumps(lab, sort_keys=True, separators=(",", ":"), ensure_ascii=False) for lab in labels]
        return cls(labels, metric, as_json)

    def key(self, i: int) -> tuple[str, str]:
        """The identity of series i across batches: name and labels."""
        return self.metric[i], self.labels_json[i]

    def label(self, name: str) -> list[str]:
        if name == "__name__":
            return self.metric
        return [lab.get(name, "") for lab in self.labels]


def dict_column(per_series: Sequence[str], series_id: np.ndarray) -> pa.DictionaryArray:
    """A row column from per-series strings: dictionary-encoded, no per-row work in Python."""
    index: dict[str, int] = {}
    codes = np.fromiter((index.setdefault(v, len(index)) for v in per_series), np.int32, len(per_series))
    if len(index) == len(codes):        # every value its own (labels, one rule): the codes are the series ids
        rows = series_id
    elif len(index) == 1:               # one value (a metric name): all zeros, without a gather per row
        rows = np.zeros(len(series_id), np.int32)
    else:
        rows = codes[series_id]
    return pa.DictionaryArray.from_arrays(pa.array(rows, pa.int32()), pa.array(list(index), pa.string()))


def series_keys(table: pa.Table) -> pa.DictionaryArray:
    """A row table's series as dictionary codes; each value is `metric + "\\x00" + labels JSON`."""
    keys = pc.binary_join_element_wise(table.column("metric").cast(pa.string()),
                                       table.column("labels").cast(pa.string()), "\x00")
    return pc.dictionary_encode(keys).combine_chunks()


def evaluate(rule: Rule, result: QueryResult, targets: Mapping[str, Target],
             state: EvalState | None = None, after: Mapping[str, int] | None = None,
             emit_from: int | None = None) -> Evaluation:
    """Apply the rule to fetched samples and route the rows to its targets.

    With a `state`, the samples are one batch of several (in time order for each
    series): series are counted once and alert states go on across batches.
    `after` holds, per target, a time (ms) the target already has every row up to:
    only later rows are routed to it. Samples before `emit_from` (the lookback)
    only feed the alert state: they are neither counted nor emitted.
    """
    if rule.label_templates:
        result = templated.relabel(rule, result, None if state is None else state.request_identities)
    series = _Series.of(result, rule.labels, rule.external_labels)
    _check_distinct(rule, result, series, state)
    sid, ts, val = result.series_id, result.ts_ms, result.values
    inside = np.ones(len(ts), bool) if emit_from is None else ts >= emit_from
    present = np.unique(sid[inside]) if emit_from is not None else range(len(series.labels))
    if state is not None:
        state.seen.update(series.key(int(i)) for i in present)
    ev = Evaluation(rule.name, pa.table({}), {}, Counts(series=len(present), samples=int(inside.sum())))
    keep = np.ones(len(val), bool)
    if rule.valid_min is not None or rule.valid_max is not None:
        keep &= ~np.isnan(val)
        if rule.valid_min is not None:
            keep &= val >= rule.valid_min
        if rule.valid_max is not None:
            keep &= val <= rule.valid_max
        ev.counts.invalid = int((~keep & inside).sum())
        sid, ts, val, inside = sid[keep], ts[keep], val[keep], inside[keep]
    table = _rows(rule, series, sid, ts, val)
    if rule.where is not None:
        passed = _mask(table, series, sid, rule.where)
        ev.counts.filtered = int((~passed & inside).sum())
        sid, ts, val, inside = sid[passed], ts[passed], val[passed], inside[passed]
        table = table.filter(pa.array(passed))
    shaped = episode_targets(rule, targets)
    whole = state is None and bool(shaped)        # one call for everything: open episodes come out too
    state = EvalState() if whole else state
    sev_idx, names, winner = _severities(rule, series, table, sid, ts, val, state, bool(shaped))
    alert = sev_idx >= 0
    severity = pa.DictionaryArray.from_arrays(pa.array(np.where(alert, sev_idx, 0).astype(np.int32), mask=~alert),
                                              pa.array(names, pa.string()))
    table = table.set_column(5, "severity", severity).set_column(6, "alert", pa.array(alert, pa.bool_()))
    masks = _route_masks(rule, series, sid, table)     # the lookback's rows too: an episode may end in the window
    all_rows = (sid, ts, val, sev_idx)
    lookback = not inside.all()
    if lookback:
        sid, ts, alert, sev_idx, table = sid[inside], ts[inside], alert[inside], sev_idx[inside], \
            table.filter(pa.array(inside))
    ev.table = table
    ev.counts.alerts = int(alert.sum())
    ev.counts.severities = tuple(dict.fromkeys(names))
    if names:
        counts = np.bincount(sev_idx[alert], minlength=len(names))
        ev.counts.by_severity = {n: int(c) for n, c in zip(names, counts, strict=True) if c}
    ev.routed = {name: _rows_to(name, m[inside] if lookback else m, ts, ev.table, targets, after or {}, series, sid)
                 for name, m in masks.items() if name not in shaped}
    if shaped:
        assert state is not None and winner is not None
        _episodes(rule, series, all_rows, names, winner, {n: masks[n] for n in shaped}, state, emit_from, ev, targets)
        if whole:
            ended, still = episodes.finish(state.open, int(ts.max()) if len(ts) else 0, emit_from)
            _add_episodes(ev, rule, ended, shaped, targets)
            _add_episodes(ev, rule, still, shaped, targets)
    return ev


def episode_targets(rule: Rule, targets: Mapping[str, Target]) -> list[str]:
    """The targets the rule routes to that take episodes."""
    return [n for n in dict.fromkeys(n for r in rule.routes for n in r.to) if targets[n].shape == "episodes"]


def finish_episodes(rule: Rule, state: EvalState, window_end: int, emit_from: int | None,
                    targets: Mapping[str, Target], with_open: Sequence[str]) -> Evaluation:
    """At a window's end: the episodes that ended by then (to every episodes target they belong to), and
    the ones still open to the targets in `with_open` (they stay in the state for the next window)."""
    ev = Evaluation(rule.name, pa.table({}), {})
    shaped = episode_targets(rule, targets)
    ended, still = episodes.finish(state.open, window_end, emit_from)
    _add_episodes(ev, rule, ended, shaped, targets)
    _add_episodes(ev, rule, still, [n for n in shaped if n in with_open], targets)
    return ev


def _episodes(rule: Rule, series: _Series, rows: tuple[np.ndarray, ...], names: list[str],
              winner: tuple[np.ndarray, np.ndarray, np.ndarray], masks: Mapping[str, np.ndarray], state: EvalState,
              emit_from: int | None, ev: Evaluation, targets: Mapping[str, Target]) -> None:
    """Track the batch's episodes; those that closed go to the targets of shape episodes."""
    sid, ts, val, sev_idx = rows
    routed = dict(masks)
    keys = [series.key(i) for i in range(len(series.labels))]
    low = np.array([t.op in ("<", "<=") for t in rule.thresholds] + [False])[winner[0]]    # -1: none
    closed = episodes.track(episodes.Rows(keys, sid, ts, val, sev_idx, names, *winner, routed, low, rule.step_ms),
                            state.open, emit_from)
    _add_episodes(ev, rule, closed, list(masks), targets)


def _add_episodes(ev: Evaluation, rule: Rule, closed: episodes.Closed, names: Sequence[str],
                  targets: Mapping[str, Target]) -> None:
    for name in names:
        table = closed.for_target(rule.name, name, targets[name].columns)
        if table is not None:
            ev.routed[name] = table if name not in ev.routed else pa.concat_tables([ev.routed[name], table])


def _check_distinct(rule: Rule, result: QueryResult, series: _Series, state: EvalState | None) -> None:
    """Static labels that overwrite a label telling series apart would merge them: refuse, naming both."""
    if not rule.labels:
        return
    seen = {} if state is None else state.request_series
    if state is not None and result.request_start:
        seen.clear()
    for i, lab in enumerate(result.labels):
        key = series.key(i)
        other = seen.setdefault(key, lab)
        if other is not lab and other != lab:
            raise RuleError(rule.name, f"the static labels {dict(rule.labels)} make the series {other} and {lab} "
                            "the same series; drop the label from `labels:` or tell them apart in the query")


def _rows(rule: Rule, series: _Series, sid: np.ndarray, ts: np.ndarray, val: np.ndarray) -> pa.Table:
    """The row table of the contract, severity not yet assigned."""
    return pa.table({
        "rule": dict_column([rule.name], np.zeros(len(val), np.int32)),
        "metric": dict_column(series.metric, sid),
        "labels": dict_column(series.labels_json, sid),
        "timestamp": pa.array(ts, TIMESTAMP),
        "value": pa.array(val, pa.float64()),
        "severity": pa.nulls(len(val), pa.string()),
        "alert": pa.array(np.zeros(len(val), bool)),
    })


def _mask(table: pa.Table, series: _Series, sid: np.ndarray, node: expr.Node) -> np.ndarray:
    """Boolean mask of the rows for which the expression is true (null counts as false).

    The expression sees the row columns (dictionaries decoded) and one plain string
    column per label it reads.
    """
    def column(name: str) -> pa.Array:
        if name in table.column_names:
            col = table.column(name)
            return col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col
        return pa.array(series.label(name), pa.string()).take(pa.array(sid))

    result = expr.evaluate_columns(node, column)
    if isinstance(result, pa.Scalar):
        return np.full(table.num_rows, bool(result.as_py()))
    return np.asarray(pc.fill_null(result, False).to_numpy(zero_copy_only=False), bool)


Winner = tuple[np.ndarray, np.ndarray, np.ndarray]     # per row: threshold, continued, ends_by (for episodes)


def _severities(rule: Rule, series: _Series, table: pa.Table, sid: np.ndarray, ts: np.ndarray,
                val: np.ndarray, state: EvalState | None,
                episodes_too: bool = False) -> tuple[np.ndarray, list[str], Winner | None]:
    """Index into the severity names per row (-1: none); the first firing threshold wins.

    With `episodes_too`, also which threshold gave each row its severity, and its state there."""
    names = list(dict.fromkeys(t.severity for t in rule.thresholds))
    from_label = np.zeros(0, np.int64)
    if SEVERITY_LABEL in names:                       # a Prometheus alert's templated severity: per series
        per_series = [lab.get("severity") or "firing" for lab in series.labels]
        names = [n for n in names if n != SEVERITY_LABEL]
        names += [n for n in dict.fromkeys(per_series) if n not in names]
        from_label = np.array([names.index(n) for n in per_series], np.int64)[sid] if per_series else \
            np.zeros(0, np.int64)
    sev = np.full(len(val), -1, np.int64)
    winner = (np.full(len(val), -1, np.int64), np.zeros(len(val), bool), np.zeros(len(val), np.int64)) \
        if episodes_too else None
    if not rule.thresholds or not len(val):
        return sev, names, winner
    heads = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])          # each series' first row here
    tails = np.r_[heads[1:] - 1, len(sid) - 1]
    head = np.zeros(len(sid), bool)
    head[heads] = True
    keys = [series.key(int(sid[h])) for h in heads]
    for i in reversed(range(len(rule.thresholds))):
        th = rule.thresholds[i]
        cond = _condition(th.condition, table, series, sid, val)
        if not th.stateful and winner is None:      # its rows depend on their own values only
            sev[cond] = from_label[cond] if th.severity == SEVERITY_LABEL else names.index(th.severity)
            continue
        clear = _condition(th.clear, table, series, sid, val) if th.clear is not None else None
        prior = alertstate.Prior.of(len(sid), heads, [state.carried.get((k, i)) for k in keys] if state else
                                    [None] * len(heads))
        out = alertstate.run(cond, clear, ts, head, prior, rule.step_ms, th.for_ms, th.keep_firing_ms)
        if state is not None:
            state.keep(i, keys, out.carried(ts, tails))
        sev[out.firing] = from_label[out.firing] if th.severity == SEVERITY_LABEL else names.index(th.severity)
        if winner is not None:
            winner[0][out.firing] = i
            winner[1][out.firing] = out.continued[out.firing]
            winner[2][out.firing] = out.ends_by[out.firing]
    return sev, names, winner


def _condition(c: Condition, table: pa.Table, series: _Series, sid: np.ndarray, val: np.ndarray) -> np.ndarray:
    """Per row, whether the condition is true."""
    if c.when is not None:
        return _mask(table, series, sid, c.when)
    return np.asarray(getattr(np, BY_OP[c.op].ufunc)(val, float(c.value or 0.0)), bool)


@dataclass
class EvalState:
    """What one batch leaves for the next of the same rule: series seen, and each series' alert state.

    Needed when a window comes in several requests (and chunks and incremental runs
    continue one another), so that a series' alert state goes on across the
    boundary exactly as within one request.
    """

    seen: set[tuple[str, str]] = field(default_factory=set)
    carried: dict[tuple[tuple[str, str], int], alertstate.Carried] = field(default_factory=dict)
    open: dict[tuple[str, str], episodes.Open] = field(default_factory=dict)     # episodes still going
    request_series: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)  # this request's series
    request_identities: set[tuple[tuple[str, str], ...]] = field(default_factory=set)  # rendered, this request

    def keep(self, i: int, keys: list[tuple[str, str]], states: list[alertstate.Carried]) -> None:
        for key, c in zip(keys, states, strict=True):
            if c.matters:
                self.carried[(key, i)] = c
            else:
                self.carried.pop((key, i), None)

    def forget_before(self, end_ms: int, step_ms: int, keep_ms: Sequence[int]) -> None:
        """Drop the states the next window cannot continue: a series not seen at `end_ms` starts afresh
        there, unless `keep_firing_for` still holds it firing (so the state file does not grow with churn)."""
        for (key, i), c in list(self.carried.items()):
            if c.ts < end_ms and not (c.firing and (c.stopped if c.stopped is not None else c.ts + step_ms)
                                      + keep_ms[i] > end_ms):
                del self.carried[(key, i)]

    def to_doc(self) -> dict[str, list[list[object]]]:
        """The alert states and open episodes as JSON-ready lists (for the incremental state file)."""
        return {"thresholds": [[metric, labels, i, *c.to_list()]
                               for ((metric, labels), i), c in sorted(self.carried.items())],
                "episodes": [[metric, labels, *ep.to_list()] for (metric, labels), ep in sorted(self.open.items())]}

    @classmethod
    def from_doc(cls, doc: Mapping[str, list[list[Any]]]) -> EvalState:
        state = cls()
        for metric, labels, i, *rest in doc.get("thresholds", []):
            state.carried[((str(metric), str(labels)), int(i))] = alertstate.Carried.from_list(rest)
        for metric, labels, *rest in doc.get("episodes", []):
            state.open[(str(metric), str(labels))] = episodes.Open.from_list(rest)
        return state


def _route_masks(rule: Rule, series: _Series, sid: np.ndarray, table: pa.Table) -> dict[str, np.ndarray]:
    """Per target, the rows any of its routes takes (a row reaches a target once)."""
    masks: dict[str, np.ndarray] = {}
    for route in rule.routes:
        m = np.ones(table.num_rows, bool) if route.when is None else _mask(table, series, sid, route.when)
        for name in route.to:
            masks[name] = masks[name] | m if name in masks else m
    return masks


def _rows_to(name: str, m: np.ndarray, ts: np.ndarray, table: pa.Table, targets: Mapping[str, Target],
             after: Mapping[str, int], series: _Series, sid: np.ndarray) -> pa.Table:
    """The rows of one target (those `after` its table's watermark), in its columns."""
    if name in after:
        m = m & (ts > after[name])
    if m.all():                         # a route of every row: the table as it is (a filter copies it all)
        return select_columns(table, targets[name].columns, series, sid)
    return select_columns(table.filter(pa.array(m)), targets[name].columns, series, sid[m])


def select_columns(table: pa.Table, columns: Sequence[str], series: _Series, sid: np.ndarray) -> pa.Table:
    """The target's columns in order; names that are not row columns are series labels."""
    if tuple(columns) == ROW_COLUMNS:
        return table
    cols = {}
    for name in columns:
        cols[name] = table.column(name) if name in ROW_COLUMNS else dict_column(series.label(name), sid)
    return pa.table(cols)
