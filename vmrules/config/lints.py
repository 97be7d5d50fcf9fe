"""Lints: rules that are valid but cannot do what they say. Warnings, each with where and how to fix it;
`validate --strict` fails on them."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from vmrules import expr
from vmrules.config.load import LoadedFile
from vmrules.durations import format_duration_ms
from vmrules.errors import Problem
from vmrules.model import Rule, Threshold
from vmrules.thresholds import BY_OP

_BARE_VAR = re.compile(r"(?<![$\\])\$([A-Za-z_][A-Za-z0-9_]*)")


def warning(f: LoadedFile, path: tuple[Any, ...], message: str) -> Problem:
    return Problem(f.where(path), message, "warning")


def lint_rule(f: LoadedFile, path: tuple[Any, ...], spec: dict[str, Any], rule: Rule, tree: Any) -> Iterator[Problem]:
    """Every lint of one well-formed rule (`tree`: its parsed query, or None)."""
    yield from _thresholds(f, path, rule)
    yield from _labels(f, path, spec, rule, tree)
    yield from _file_datasource(f, path, spec, rule)
    if not rule.routes:
        yield warning(f, path + ("name",), f"rule {rule.name!r} routes to no target: `apply` computes its rows and "
                      "writes them nowhere; add route: [{to: TARGET}]")


def _file_datasource(f: LoadedFile, path: tuple[Any, ...], spec: dict[str, Any], rule: Rule) -> Iterator[Problem]:
    """A `file:` datasource answers plain series selectors: another query runs only with --datasource URL."""
    if rule.datasource is None or not rule.datasource.url.startswith("file:") or "query" not in spec:
        return
    from vmrules.sources.exportfile import parse_selector
    from vmrules.sources.result import FetchError

    try:
        parse_selector(rule.query)
    except FetchError as exc:
        yield warning(f, path + ("query",), f"{exc}; `apply` fails on it unless --datasource names a server")


def lint_headers(f: LoadedFile, path: tuple[Any, ...], spec: dict[str, Any]) -> Iterator[Problem]:
    """`$VAR` without braces is sent as it is written: only `${VAR}` is taken from the environment."""
    for key in ("headers",):
        for name, value in (spec.get(key) or {}).items():
            if isinstance(value, str) and (m := _BARE_VAR.search(value)):
                yield warning(f, path + (key, name), f"header {name}: ${m.group(1)} is sent as written; only "
                              f"${{{m.group(1)}}} is taken from the environment: write ${{{m.group(1)}}}")
    for key in ("bearer_token", "dsn"):
        value = spec.get(key)
        if isinstance(value, str) and (m := _BARE_VAR.search(value)):
            yield warning(f, path + (key,), f"{key}: ${m.group(1)} is used as written; only ${{{m.group(1)}}} is "
                          f"taken from the environment: write ${{{m.group(1)}}}")


# -- thresholds ---------------------------------------------------------------
@dataclass(frozen=True)
class _Interval:
    """The values a condition accepts: an interval, or everything but one value (`hole`)."""

    lo: float = -math.inf
    lo_in: bool = False
    hi: float = math.inf
    hi_in: bool = False
    hole: float | None = None

    def empty(self) -> bool:
        return self.lo > self.hi or self.lo == self.hi and not (self.lo_in and self.hi_in)

    def within(self, other: _Interval) -> bool:
        """Every value of self is a value of other."""
        if self.empty():
            return True
        if other.hole is not None:
            if self.hole is not None:
                return self.hole == other.hole and other.lo == -math.inf and other.hi == math.inf
            if _contains(self, other.hole):
                return False
        elif self.hole is not None and not (other.lo == -math.inf and other.hi == math.inf):
            return False
        lo_ok = other.lo < self.lo or other.lo == self.lo and (other.lo_in or not self.lo_in)
        hi_ok = other.hi > self.hi or other.hi == self.hi and (other.hi_in or not self.hi_in)
        return lo_ok and hi_ok

    def __and__(self, other: _Interval) -> _Interval:
        lo, lo_in = max((self.lo, not self.lo_in), (other.lo, not other.lo_in))
        hi, hi_in = min((self.hi, self.hi_in), (other.hi, other.hi_in))
        return _Interval(lo, not lo_in, hi, hi_in, self.hole if self.hole is not None else other.hole)


def _contains(i: _Interval, x: float) -> bool:
    return (i.lo < x or i.lo == x and i.lo_in) and (x < i.hi or x == i.hi and i.hi_in)


def _interval(op: str, value: float) -> _Interval:
    match op:
        case ">":
            return _Interval(lo=value)
        case ">=":
            return _Interval(lo=value, lo_in=True)
        case "<":
            return _Interval(hi=value)
        case "<=":
            return _Interval(hi=value, hi_in=True)
        case "==":
            return _Interval(value, True, value, True)
    return _Interval(hole=value)


def _describe(i: int, t: Threshold) -> str:
    key = BY_OP[t.op].key if t.op in BY_OP else t.op
    return f"threshold {i + 1} ({t.severity} {key} {t.value:g})"


def _thresholds(f: LoadedFile, path: tuple[Any, ...], rule: Rule) -> Iterator[Problem]:
    numeric = [t for t in rule.thresholds if t.op != "when" and t.value is not None]
    if len(numeric) < 2 and rule.valid_min is None and rule.valid_max is None:
        for i, t in enumerate(rule.thresholds):            # nothing to compare: only `for` against the step
            if 0 < t.for_ms < rule.step_ms and not rule.instant:
                yield _short_for(f, path + ("thresholds", i, "for"), t, rule)
        return
    valid = _Interval(-math.inf if rule.valid_min is None else rule.valid_min, True,
                      math.inf if rule.valid_max is None else rule.valid_max, True)
    kept = f"valid keeps {rule.valid_min if rule.valid_min is not None else '-inf'} .. " \
           f"{rule.valid_max if rule.valid_max is not None else '+inf'}"
    for i, t in enumerate(rule.thresholds):
        here = path + ("thresholds", i)
        if 0 < t.for_ms < rule.step_ms and not rule.instant:
            yield _short_for(f, here + ("for",), t, rule)
        if t.op == "when" or t.value is None:
            continue
        accepts = _interval(t.op, t.value) & valid
        if accepts.empty():
            yield warning(f, here, f"{_describe(i, t)} can never match: {kept} (rows outside are dropped before the "
                          "thresholds); change the threshold or valid")
            continue
        for j, first in enumerate(rule.thresholds[:i]):
            if first.op == "when" or first.value is None or first.for_ms:
                continue            # a threshold still waiting out its `for` lets the row fall through
            if accepts.within(_interval(first.op, first.value)):
                yield warning(f, here, f"{_describe(i, t)} can never match: {_describe(j, first)} comes first and "
                              "matches every value it does (first match wins); list the most severe first")
                break


def _short_for(f: LoadedFile, path: tuple[Any, ...], t: Threshold, rule: Rule) -> Problem:
    step = format_duration_ms(rule.step_ms)
    return warning(f, path, f"for: {format_duration_ms(t.for_ms)} is shorter than the step {step}: a condition is "
                   f"seen once per step, so it acts as for: {step}; write that, or a multiple of the step")


# -- labels -------------------------------------------------------------------
def _labels(f: LoadedFile, path: tuple[Any, ...], spec: dict[str, Any], rule: Rule, tree: Any) -> Iterator[Problem]:
    """A `where` or a route's `when` on a label the query never returns can never be true as written."""
    if tree is None:
        return
    static = set(rule.labels)
    places = [(path + ("where",), sorted(expr.label_names(rule.where) - static))] if rule.where is not None else []
    places += [(path + ("route", i, "when"), sorted(expr.label_names(r.when) - static))
               for i, r in enumerate(rule.routes) if r.when is not None]
    places = [(where, names) for where, names in places if names]
    if not places:
        return
    from vmrules.querylang.labels import output_labels

    labels = output_labels(tree, rule.query)
    for where, names in places:
        node = rule.where if where[-1] == "where" else rule.routes[where[-2]].when
        for name, text in _contradictions(node, labels.fixed, static):
            yield warning(f, where, f"{where[-1]}: {text} can never hold: the query's selector gives every series "
                          f"{name}=\"{labels.fixed[name]}\"; change the condition or the selector")
        for name in names:
            if labels.lacks(name):
                yield warning(f, where, f"{where[-1]}: the query never returns label {name!r} ({labels.how}), so "
                              f"{name} reads as \"\"; keep it in the query (e.g. by ({name}, ...)) or drop the "
                              "condition")


def _contradictions(node: Any, fixed: Mapping[str, str], static: set[str]) -> Iterator[tuple[str, str]]:
    """The comparisons of a label with a string, among the conditions `node` requires (joined by `and`),
    that the label's fixed value can never satisfy."""
    match node:
        case expr.BoolOp(op="and", left=left, right=right):
            yield from _contradictions(left, fixed, static)
            yield from _contradictions(right, fixed, static)
        case expr.Compare(op=op, left=expr.Name(name=name), right=expr.Lit(value=str() as value)) \
                if name in fixed and name not in static and op in ("==", "!=", "=~", "!~"):
            have = fixed[name]
            holds = {"==": have == value, "!=": have != value}.get(op)
            if holds is None:
                matched = expr._re2_match([have], value)[0]
                holds = matched if op == "=~" else not matched
            if not holds:
                yield name, f'{name} {op} "{value}"'
