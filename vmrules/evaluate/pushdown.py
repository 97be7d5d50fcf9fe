"""Pushdown: ask the server only for the samples that can alert, when a rule's rows are its alert rows only.

When every route of a rule takes only alerting rows (a route `when` that is false for every row that does not
alert, or a target of shape episodes), the rule's query becomes `(q) > 80` (its thresholds, `clear` levels and
`valid` bounds as one filter), so the server sends the *candidates*: the samples at which some threshold's
condition holds or, with `clear`, is not yet cleared.

Why the rows come out the same (alertstate.py has the semantics): a sample the server leaves out is one at
which no threshold holds. Such a sample is never an alert row (without `keep_firing_for`, a state fires only
where it holds), and to every threshold's state it is a step at which the condition does not hold; a missing
sample is exactly that too (a `for` run starts afresh, a firing state ends, an episode ends one step after its
last row). So every sample that is sent has the state, the severity and the episode it has in a full fetch.
Where that cannot be made exact the rule is fetched as it is: `keep_firing_for` (its rows after the condition
stops are samples that fail it), `when:` conditions, NaN samples that may hold a state (no `valid` bounds), a
query whose result is not an instant vector offline, routes that take rows that do not alert.

The filter may be wider than the candidates (it is one interval, with single points left out): a sample that
is sent but cannot alert is evaluated as in a full fetch. Light to import: no numpy, no pyarrow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from vmrules import expr
from vmrules.model import Condition, Rule, Target

UNKNOWN_COUNTS = ("series", "samples", "invalid", "filtered")    # counts a pushed-down rule cannot know


@dataclass(frozen=True)
class Pushdown:
    """The decision for one rule: the query to send (None: the rule's own) and what it filters, or why not."""

    query: str | None = None
    filter: str = ""             # e.g. `> 80 <= 100`: the comparisons appended to the query
    reason: str = ""             # why the rule is fetched as it is (when `query` is None)

    @property
    def on(self) -> bool:
        return self.query is not None

    def describe(self) -> str:
        """One line for --dry-run and -v."""
        if self.on:
            return f"on: only samples that can alert are fetched (query {self.filter}); " \
                   "series, samples, invalid and filtered are not counted"
        return f"off: {self.reason}"


def decide(rule: Rule, targets: Mapping[str, Target], dialect: str = "metricsql", is_file: bool = False,
           off: str | None = None) -> Pushdown:
    """Whether the rule's conditions can go into its query exactly, and the query; `off`: why not for the run."""
    why = off or _why_not(rule, targets, dialect, is_file)
    if why:
        return Pushdown(reason=why)
    cand = _candidates(rule)
    if isinstance(cand, str):
        return Pushdown(reason=cand)
    query = f"({rule.query}\n)"             # a newline: the query may end in a comment
    for i, part in enumerate(cand):
        query = f"{query} {part}" if i == len(cand) - 1 else f"({query} {part})"
    return Pushdown(query, " ".join(cand))


def _why_not(rule: Rule, targets: Mapping[str, Target], dialect: str, is_file: bool) -> str:
    if is_file:
        return "the datasource is an export file (no query language)"
    if rule.origin == "prometheus":
        return "a Prometheus rule's alert: its expression is the filter already"
    if not rule.thresholds:
        return "the rule has no thresholds: every row is exported"
    for i, th in enumerate(rule.thresholds, 1):
        if th.keep_firing_ms:
            return f"threshold {i} ({th.severity}) has keep_firing_for: its rows after the condition stops " \
                   "are samples that fail it"
        if th.when is not None or (th.clear is not None and th.clear.when is not None):
            return f"threshold {i} ({th.severity}) has a `when:` expression, which the server cannot evaluate"
    for i, route in enumerate(rule.routes, 1):
        for name in route.to:
            if targets[name].shape == "episodes":
                continue                 # episodes are made of alerting rows
            if route.when is None:
                return f"route {i} sends every row to {name}, not only the alerting ones"
            if not alerting_only(route.when):
                return f"route {i} (line {route.location.line}) may send rows that do not alert to {name}: " \
                       "its `when` is not false on them (alert, or a severity comparison, makes it so)"
    return _query_problem(rule.query, dialect)


def _query_problem(query: str, dialect: str) -> str:
    from vmrules.querylang import check
    from vmrules.querylang.syntax import VECTOR

    result = check(query, dialect)
    if not result.ok or result.tree is None:
        return "the query does not parse offline"
    if result.tree.type != VECTOR:
        return f"the query's result is not known to be an instant vector offline ({result.tree.type})"
    return ""


# -- routes -----------------------------------------------------------------------------------------------

_UNKNOWN = object()


def alerting_only(node: expr.Node) -> bool:
    """Whether the expression is false on every row that does not alert (alert false, severity null: "")."""
    return _on_quiet_row(node) is False


def _on_quiet_row(n: expr.Node) -> object:
    """The expression's value on a row that does not alert, or _UNKNOWN where it depends on other columns."""
    match n:
        case expr.Lit(value=value):
            return value
        case expr.Name(name="alert"):
            return False
        case expr.Name(name="severity"):
            return ""
        case expr.Name():
            return _UNKNOWN
        case expr.Not(operand=operand):
            v = _on_quiet_row(operand)
            return _UNKNOWN if v is _UNKNOWN else not v
        case expr.BoolOp(op=op, left=left, right=right):
            a, b = _on_quiet_row(left), _on_quiet_row(right)
            stop = op == "or"                  # the value that decides: true for or, false for and
            if a is stop or b is stop:
                return stop
            return _UNKNOWN if _UNKNOWN in (a, b) else (not stop)
        case expr.Compare(op=op, left=left, right=right):
            a, b = _on_quiet_row(left), _on_quiet_row(right)
            if _UNKNOWN in (a, b):
                return _UNKNOWN
            if type(a) is not type(b) and not (isinstance(a, float | int) and isinstance(b, float | int)):
                return _UNKNOWN
            return expr.evaluate_row(expr.Compare(op, expr.Lit(a, 0), expr.Lit(b, 0), 0), {})  # type: ignore[arg-type]
    return _UNKNOWN


# -- values -----------------------------------------------------------------------------------------------

INF = math.inf


@dataclass(frozen=True)
class _Span:
    """Values lo..hi on the extended real line; `lo_in`/`hi_in`: the ends belong to it."""

    lo: float
    lo_in: bool
    hi: float
    hi_in: bool

    @property
    def empty(self) -> bool:
        return self.lo > self.hi or (self.lo == self.hi and not (self.lo_in and self.hi_in))


ALL = _Span(-INF, True, INF, True)


def _spans(op: str, x: float) -> list[_Span]:
    """The values for which `value OP x` holds (NaN apart)."""
    spans = {">": [_Span(x, False, INF, True)], ">=": [_Span(x, True, INF, True)],
             "<": [_Span(-INF, True, x, False)], "<=": [_Span(-INF, True, x, True)],
             "==": [_Span(x, True, x, True)],
             "!=": [_Span(-INF, True, x, False), _Span(x, False, INF, True)]}[op]
    return [s for s in spans if not s.empty]


def _union(spans: list[_Span]) -> list[_Span]:
    """Disjoint spans in order covering the same values."""
    out: list[_Span] = []
    for s in sorted((s for s in spans if not s.empty), key=lambda s: (s.lo, not s.lo_in)):
        if out and (s.lo < out[-1].hi or (s.lo == out[-1].hi and (s.lo_in or out[-1].hi_in))):
            last = out[-1]
            if (s.hi, s.hi_in) > (last.hi, last.hi_in):
                out[-1] = _Span(last.lo, last.lo_in, s.hi, s.hi_in)
        else:
            out.append(s)
    return out


def _complement(spans: list[_Span]) -> list[_Span]:
    out, lo, lo_in = [], -INF, True
    for s in _union(spans):
        out.append(_Span(lo, lo_in, s.lo, not s.lo_in))
        lo, lo_in = s.hi, not s.hi_in
    out.append(_Span(lo, lo_in, INF, True))
    return [s for s in out if not s.empty]


def _intersect(spans: list[_Span], w: _Span) -> list[_Span]:
    out = []
    for s in spans:
        lo, lo_in = max((s.lo, not s.lo_in), (w.lo, not w.lo_in))
        hi, hi_in = min((s.hi, s.hi_in), (w.hi, w.hi_in))
        out.append(_Span(lo, not lo_in, hi, hi_in))
    return [s for s in out if not s.empty]


def _holds(c: Condition) -> tuple[list[_Span], bool]:
    """The values at which a comparison holds, and whether it holds at NaN (numpy: only `!=`)."""
    assert c.value is not None
    return _spans(c.op, float(c.value)), c.op == "!="


def _candidates(rule: Rule) -> list[str] | str:
    """The comparisons that keep every candidate (a superset when the candidates are not one interval), or
    why there are none to push."""
    spans: list[_Span] = []
    nan = False
    for th in rule.thresholds:
        if th.value is None or math.isnan(th.value) or (th.clear is not None and (
                th.clear.value is None or math.isnan(th.clear.value))):
            return "a threshold compares with NaN"
        s, n = _holds(th.condition)
        spans += s
        nan |= n
        if th.clear is not None:                 # firing goes on until cleared: the rest holds it too
            cleared, n = _holds(th.clear)
            spans += _complement(cleared)
            nan |= not n
    bounded = rule.valid_min is not None or rule.valid_max is not None
    valid = _Span(-INF if rule.valid_min is None else rule.valid_min, True,
                  INF if rule.valid_max is None else rule.valid_max, True)
    keep = _intersect(_union(spans), valid)
    nan = nan and not bounded                    # valid bounds drop NaN samples before any threshold
    if not keep:
        return "no value can alert" if not nan else "only NaN samples can alert"
    parts = []
    lo, hi = keep[0], keep[-1]
    if lo.lo > -INF or not lo.lo_in:
        parts.append(f"{'>=' if lo.lo_in else '>'} {_num(lo.lo)}")
    if hi.hi < INF or not hi.hi_in:
        parts.append(f"{'<=' if hi.hi_in else '<'} {_num(hi.hi)}")
    for a, b in zip(keep, keep[1:], strict=False):     # a single value left out between two spans
        if a.hi == b.lo and not a.hi_in and not b.lo_in:
            parts.append(f"!= {_num(a.hi)}")
    if nan and any(not p.startswith("!=") for p in parts):
        return "NaN samples may alert or hold an alert, and a filter drops them (valid: bounds would drop them " \
               "before any threshold)"
    if not parts:
        return "every value may alert (no bound to push; valid: bounds would give one)"
    return parts


def _num(v: float) -> str:
    """A number as both query languages read it back exactly."""
    if math.isinf(v):
        return "Inf" if v > 0 else "-Inf"
    return repr(float(v))
