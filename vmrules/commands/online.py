"""`validate --online`: ask each rule's datasource whether the selectors of its query have any series.

A selector without series is usually a typo in a metric or label name that no offline check can see
(pint's series check does the same). Only this mode reads the secrets the rule files name.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Mapping

from vmrules import querylang
from vmrules.commands.apply import rule_datasource
from vmrules.commands.variables import check_variables
from vmrules.config.load import LoadedFile, load_file
from vmrules.durations import format_duration_ms
from vmrules.errors import ConfigError, Location, Problem
from vmrules.model import Datasource, Rule, RuleSet
from vmrules.net.http import HttpError, redact_url, rule_env
from vmrules.querylang.syntax import ANY, Selector, With, walk
from vmrules.sources.prometheus import HttpSource
from vmrules.sources.result import FetchError

__all__ = ["check_series", "selectors"]


def selectors(query: str, dialect: str) -> dict[str, int]:
    """The series selectors of `query` as written (MetricsQL templates left out), each once, with the offset
    where it first appears."""
    result = querylang.check(query, dialect)
    if result.tree is None:
        return {}
    nodes = list(walk(result.tree))
    filters = {id(v) for n in nodes if isinstance(n, With) for v in n.names.values()
               if isinstance(v, Selector) and v.name is None}          # WITH (f = {job="a"}): a filter, not a query
    out: dict[str, int] = {}
    for node in sorted(nodes, key=lambda n: n.start):
        if isinstance(node, Selector) and id(node) not in filters and node.type != ANY and node.end > node.start and \
                all(m.op for g in node.groups for m in g):
            out.setdefault(query[node.start:node.end], node.start)
    return out


def check_series(ruleset: RuleSet, env: Mapping[str, str] | None = None,
                 allow: Mapping[str, tuple[str, ...]] | None = None, datasource: str | None = None,
                 now_ms: int | None = None, log: Callable[[str], None] | None = None) -> list[Problem]:
    """A warning for each selector that has no series in its rule's window (its range, ending now), and for
    each datasource that could not be asked. `datasource`: a URL in place of every rule's own (as in apply).
    UsageError, before any request, for an allowed variable that is not set."""
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    environ = rule_env(os.environ if env is None else env, allow)
    asked = {r.name: rule_datasource(r, datasource) for r in ruleset.rules if r.datasource is not None or datasource}
    check_variables([r for r in ruleset.rules if r.name in asked], asked, {}, environ, writes=False)
    sources: dict[int, HttpSource] = {}
    answers: dict[tuple[int, str, int], bool] = {}
    failed: set[int] = set()
    out: list[Problem] = []
    for rule in ruleset.rules:
        if rule.datasource is None and not datasource:
            continue
        ds = rule_datasource(rule, datasource)
        at = id(rule.datasource)         # rules of one file share their datasource, and so a session
        if ds.is_file or at in failed:
            continue
        where = rule.query_location or rule.location
        try:
            source = sources.get(at) or sources.setdefault(at, HttpSource(ds, environ, log))
            for text, offset in selectors(rule.query, ds.dialect).items():
                key = (at, text, rule.range_ms)
                if key not in answers:
                    answers[key] = source.has_series(text, now_ms - rule.range_ms, now_ms)
                if not answers[key]:
                    out.append(Problem(_within(where, offset), f"query: {text} has no series at {redact_url(ds.url)} "
                                       f"in the last {format_duration_ms(rule.range_ms)} (rule {rule.name!r}): check "
                                       "the metric and label names", "warning"))
        except (FetchError, HttpError) as exc:
            failed.add(at)
            out.append(_unreachable(rule, ds, where, str(exc)))
    for source in sources.values():
        source.close()
    return out


def _within(where: Location, offset: int) -> Location:
    """The location `offset` characters into the query that starts at `where` (its file read again)."""
    try:
        f = _loaded(where.path)
    except ConfigError:
        return where
    for path, mark in f.marks.items():
        if mark == (where.line, where.col) and path and path[-1] == "query":
            return f.where_in(path, offset)
    return where


@functools.lru_cache(maxsize=64)
def _loaded(path: str) -> LoadedFile:
    return load_file(path)


def _unreachable(rule: Rule, ds: Datasource, where: Location, why: str) -> Problem:
    return Problem(where, f"--online: cannot ask {redact_url(ds.url)} (rule {rule.name!r}; the other rules on it "
                   f"are not asked): {why}", "warning")
