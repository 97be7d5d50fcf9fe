"""Hostile and odd queries: the parser answers every string with problems or none, never an exception, in
bounded time; each case below was once answered wrongly (a false error is the worst: the servers run it).

`ok` per dialect is what the reference says: VictoriaMetrics 1.79.5 for MetricsQL, promtool 2.42 for PromQL.
"""

from __future__ import annotations

import random
import time

import pytest

from vmrules.querylang import check

CASES = {   # query: (MetricsQL accepts, PromQL accepts)
    '"\\U00110000"': (False, False),                        # escapes that are no code point
    'x{a="\\UFFFFFFFF"}': (False, False),
    '"\\777"': (False, False),
    'x{a=~"\ud800"}': (False, False),                       # a lone surrogate: no UTF-8 spelling
    "x * 0x" + "f" * 300: (True, True),                     # more digits than a float holds
    'x{a="1", or="2"}': (True, True),                       # a label named or
    "x * 1k": (True, False), "x * 1Kb": (True, False), "x * 1kib": (True, False), "x * 1gb": (True, False),
    "rate(x[1h-5m])": (True, False), "x[1h-5m:1m]": (True, False),
    "x @ -1": (True, True), "x @ +1": (True, True),
    "()": (True, False), "sum(())": (True, False), "-()": (True, False),
    'x{__name__!="y"}': (True, False), 'x{__name__=~"x.*"}': (True, False),
    "x[:5s]": (True, False), "rate(x[:5s])": (True, False),
    "x * 100unless y": (True, False), "x > 0and y": (True, False), "x offset 5mor y": (True, False),
    "::foo": (True, True), ":1": (True, True), "sum(::x)": (True, True), 'x{:="a"}': (True, False),
    "or": (True, True), "x and and": (True, True), "sum(rate(without[5m]))": (True, True),
    'offset{a="b"}': (True, True), "by + 1": (True, True),
    "rate(x[5m:1m])": (True, True), "x[5m:]": (True, True), "x[5m:1m:1m]": (False, False),
    "rate(x[5m]) keep_metric_names": (True, False), "x keep_metric_names": (False, False),
    "sum by (job) )x)": (False, False), "sum without (a) [x)": (False, False), "x offset 5m [5m]": (False, False),
    'x{a="b"}\u00a0': (False, False),                       # a pasted no-break space is not a blank
    "a * group_left b": (False, False), '{a="b" or}': (False, False), '{a="b", or c="d"}': (False, False),
    "sum(x) limit 1e3": (False, False), "sum(x) limit 3": (True, False),
}


@pytest.mark.parametrize("query", list(CASES), ids=[repr(q)[:40] for q in CASES])
def test_verdicts_agree_with_the_servers(query: str) -> None:
    for dialect, ok in zip(("metricsql", "promql"), CASES[query], strict=True):
        result = check(query, dialect)
        assert result.ok == ok, (dialect, result.problems)
        assert all(0 <= p.offset <= len(query) for p in result.problems)


@pytest.mark.parametrize("query", ["1" * 2000 + "x", "1" * 2000 + "." + "1" * 2000 + "e", "up * " + "1" * 2000 + "x",
                                   "(" * 5000 + "x" + ")" * 5000, "x{a=~\"" + "a|" * 20000 + "b\"}"])
def test_long_inputs_take_bounded_time(query: str) -> None:
    for dialect in ("metricsql", "promql"):
        started = time.monotonic()
        check.__wrapped__(query, dialect)
        assert time.monotonic() - started < 5, dialect          # once 21-35 s (backtracking number patterns)


def test_random_strings_never_raise() -> None:
    rng = random.Random(7)
    alphabet = 'abcxyz_:09.eE+-*/^%()[]{}=!~<>,@"\'`\\# \t\n' + "\u00e9\ud800\x00"
    for _ in range(3000):
        query = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        for dialect in ("metricsql", "promql"):
            result = check.__wrapped__(query, dialect)
            assert all(isinstance(p.message, str) and 0 <= p.offset <= len(query) for p in result.problems)
