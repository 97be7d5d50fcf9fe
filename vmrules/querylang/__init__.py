"""PromQL and MetricsQL queries parsed offline: syntax, matchers and their regexes, function names and, in
PromQL, argument counts and types. Problems carry 0-based offsets into the query text.

MetricsQL (VictoriaMetrics) is a superset of PromQL; a query it runs is never reported. Where its own
rules replace PromQL's (types converted, templates), `QueryCheck.partial` says what was not checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from vmrules.querylang.lexer import _SURROGATE, QueryError
from vmrules.querylang.syntax import Node

DIALECTS = ("metricsql", "promql")
__all__ = ["DIALECTS", "QueryCheck", "QueryError", "QueryProblem", "check"]


@dataclass(frozen=True, slots=True)
class QueryProblem:
    """One problem of a query, at `offset` (0-based) into its text."""

    offset: int
    message: str


@dataclass(frozen=True, slots=True)
class QueryCheck:
    """The outcome of checking one query: its problems (empty: valid), its tree, and what was not checked."""

    problems: tuple[QueryProblem, ...]
    tree: Node | None = None
    partial: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


@lru_cache(maxsize=16384)
def check(query: str, dialect: str = "metricsql") -> QueryCheck:
    """Check `query` in `dialect` ("promql" or "metricsql") without any network call."""
    from vmrules.querylang.parser import parse

    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}")
    metricsql = dialect == "metricsql"
    if not query.strip():
        return QueryCheck((QueryProblem(0, "the query is empty"),))
    if (bad := _SURROGATE.search(query)) is not None:       # no UTF-8 spelling: no server can be sent it
        return QueryCheck((QueryProblem(bad.start(), "the query holds a lone surrogate (\\ud800-\\udfff), "
                                        "which is not text any server reads"),))
    try:
        tree, unchecked, extensions = parse(query, metricsql)
    except QueryError as exc:
        return QueryCheck((QueryProblem(exc.offset, exc.message),))
    except RecursionError:
        return QueryCheck((QueryProblem(0, "the query is nested too deeply"),))
    return QueryCheck((), tree, _partial(unchecked, extensions) if metricsql else None)


def _partial(unchecked: QueryError | None, extensions: set[str]) -> str | None:
    """What a MetricsQL check left out, or None when the query was checked as fully as PromQL would be."""
    notes = []
    if unchecked is not None:
        notes.append(f"argument types as MetricsQL converts them (PromQL would say: {unchecked.message})")
    if "with" in extensions:
        notes.append("WITH templates for syntax, names and regexes only")
    own = sorted(extensions - {"with", "union"})
    if own:
        notes.append(f"argument types of the MetricsQL functions {', '.join(own)} not checked")
    if "union" in extensions:
        notes.append("unions (a, b) for syntax only")
    return "; ".join(notes) or None
