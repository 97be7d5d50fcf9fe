"""Which labels a query's series can carry, where the query decides it (aggregations, label functions).

Used by the lints: a `where` on a label that the query aggregates away, or that its selector fixes to
another value, can never match.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from vmrules.querylang.functions import PROMQL_AGGREGATIONS
from vmrules.querylang.syntax import Aggregate, Binary, Call, Node, Number, Paren, Range, Selector, String, Unary

# Functions whose result keeps the labels of their (first instant vector) argument.
_KEEP_FIRST = frozenset({
    "abs", "ceil", "floor", "round", "exp", "ln", "log2", "log10", "sqrt", "sgn", "clamp", "clamp_min", "clamp_max",
    "sort", "sort_desc", "sort_by_label", "sort_by_label_desc", "timestamp", "deg", "rad", "sin", "cos", "tan",
    "asin", "acos", "atan", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh", "rate", "irate", "increase",
    "delta", "idelta", "deriv", "predict_linear", "changes", "resets", "avg_over_time", "min_over_time",
    "max_over_time", "sum_over_time", "count_over_time", "quantile_over_time", "stddev_over_time",
    "stdvar_over_time", "last_over_time", "present_over_time", "absent_over_time", "mad_over_time",
    "day_of_month", "day_of_week", "day_of_year", "days_in_month", "hour", "minute", "month", "year",
})
_PARAM_KEEPS = frozenset({"topk", "bottomk", "limitk", "limit_ratio"})


@dataclass(frozen=True)
class Labels:
    """The labels a query's series may have: exactly `known` when it is not None (else any), never `removed`."""

    known: frozenset[str] | None = None
    removed: frozenset[str] = frozenset()
    how: str = ""                 # the part of the query that decides it, for messages
    fixed: Mapping[str, str] = field(default_factory=dict)     # label -> the one value a `=` matcher leaves it

    def lacks(self, label: str) -> bool:
        """The query can never return a series with this label."""
        if label in self.removed:
            return True
        return self.known is not None and label not in self.known


ANY = Labels()


def output_labels(node: Node, text: str) -> Labels:
    """The labels of the series `node` returns; `text` is the query, for quoting its parts."""
    match node:
        case Paren(inner=sub) | Unary(inner=sub):
            return output_labels(sub, text)
        case Number():
            return Labels(frozenset(), how="a number has no labels")
        case Selector(groups=[matchers]):
            return Labels(fixed={m.label: m.value for m in matchers if m.op == "=" and m.label != "__name__"})
        case Aggregate():
            return _aggregate(node, text)
        case Call(name="label_replace" | "label_join", args=args) if len(args) >= 2 and args[1].type == "string":
            first = output_labels(args[0], text)
            dst = getattr(args[1], "value", "")
            fixed = {k: v for k, v in first.fixed.items() if k != dst}
            if first.known is not None:
                return Labels(first.known | {dst}, first.removed - {dst}, first.how, fixed)
            return Labels(None, first.removed - {dst}, first.how, fixed)
        case Call(name="absent", args=[Selector(groups=[matchers])]):
            sets = {m.label: m.value for m in matchers if m.op == "=" and m.label != "__name__"}
            return Labels(frozenset(sets), how=f"absent() returns only the labels its selector sets with = "
                          f"({_cut(node, text)})", fixed=sets)
        case Call(name="vector" | "time" | "scalar"):
            return Labels(frozenset(), how=f"{node.name}() has no labels")
        case Call(name="histogram_quantile", args=[_, arg]):
            of = output_labels(arg, text)
            return Labels(of.known - {"le"} if of.known is not None else None, of.removed | {"le"}, of.how,
                          {k: v for k, v in of.fixed.items() if k != "le"})
        case Call(name=name, args=args) if name in _KEEP_FIRST:
            series = [a for a in args if not isinstance(a, (Number, String))]    # quantile_over_time(0.9, m[5m])
            if not series:
                return ANY
            return output_labels(series[0].inner if isinstance(series[0], (Range, Paren)) else series[0], text)
        case Binary():
            return _binary(node, text)
    return ANY


def _aggregate(node: Aggregate, text: str) -> Labels:
    if node.name not in PROMQL_AGGREGATIONS:
        return ANY                        # MetricsQL's own (topk_avg, zscore, quantiles...) keep or add labels
    how = _cut(node, text)
    if node.name in _PARAM_KEEPS and node.args:
        return output_labels(node.args[-1], text)
    if node.grouping is None:
        extra: frozenset[str] = frozenset()
        if node.name == "count_values" and node.args and node.args[0].type == "string":
            extra = frozenset({getattr(node.args[0], "value", "")})
        return Labels(extra, how=f"{node.name}() without by(...) keeps no labels: {how}")
    inner = output_labels(node.args[-1], text) if node.args else ANY
    added: frozenset[str] = frozenset({str(getattr(node.args[0], "value", ""))}) \
        if node.name == "count_values" and node.args else frozenset()        # count_values("version", x) by (job)
    if node.without:
        known = (inner.known - set(node.grouping)) | added if inner.known is not None else None
        return Labels(known, (inner.removed | set(node.grouping)) - added,
                      f"{node.name} without ({', '.join(node.grouping)})",
                      {k: v for k, v in inner.fixed.items() if k not in node.grouping})
    return Labels(frozenset(node.grouping) | added, how=f"{node.name} by ({', '.join(node.grouping)})",
                  fixed={k: v for k, v in inner.fixed.items() if k in node.grouping})


def _binary(node: Binary, text: str) -> Labels:
    left, right = output_labels(node.left, text), output_labels(node.right, text)
    if node.op in ("and", "unless"):
        return left
    if node.left.type == "scalar":
        return right
    if node.right.type == "scalar":
        return left
    if node.op == "or" and left.known is not None and right.known is not None:
        return Labels(left.known | right.known, left.removed & right.removed, left.how or right.how)
    return ANY


def _cut(node: Node, text: str, limit: int = 60) -> str:
    part = text[node.start:].strip().split("\n")[0]
    return part if len(part) <= limit else part[:limit - 3] + "..."
