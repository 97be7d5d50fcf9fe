"""The expression language: parsing, type errors with offsets, and Arrow == plain Python."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmrules import expr

ENVS = ["prod", "staging", "", "db-1", "Prod"]
ROWS = [
    {"rule": "r", "metric": m, "labels": "{}", "timestamp": 1_700_000_000_000 + i * 60_000, "value": v,
     "severity": sev, "alert": sev is not None, "env": ENVS[i % 5], "instance": f"db-{i % 7}"}
    for i, (m, v, sev) in enumerate([
        ("cpu", 1.5, None), ("cpu", math.nan, "warning"), ("mem", -3.0, "critical"), ("mem", 80.0, None),
        ("up", 0.0, "warning"), ("cpu", math.inf, None), ("cpu", 95.25, "critical"), ("", 50.0, None),
        ("mem", -math.inf, "warning"), ("up", 1.0, None), ("cpu", 80.0, "critical"), ("mem", 79.999, None),
    ])
]


LABEL = "label:"           # the test table's column of a label


def table() -> pa.Table:
    cols = {k: [r[k] for r in ROWS] for k in ("rule", "metric", "labels", "value", "severity", "alert")}
    t = pa.table(cols)
    t = t.append_column("timestamp", pa.array([r["timestamp"] for r in ROWS], pa.timestamp("ms", tz="UTC")))
    for label in ("env", "instance", "zone"):
        t = t.append_column(LABEL + label, pa.array([r.get(label, "") for r in ROWS]))
    return t.append_column("__row", pa.array(np.arange(len(ROWS))))


def arrow_rows(text: str) -> list[int]:
    """The rows the expression keeps, evaluated at once on Arrow columns as evaluation does."""
    t = table()
    result = expr.evaluate_columns(expr.parse(text), lambda name: t.column(name if name in expr.COLUMN_TYPES
                                                                        else LABEL + name))
    if isinstance(result, pa.Scalar):
        return list(range(len(ROWS))) if result.as_py() else []
    return [i for i, v in enumerate(result.to_pylist()) if v]


def python_rows(text: str) -> list[int]:
    node = expr.parse(text)
    return [i for i, r in enumerate(ROWS) if expr.evaluate_row(node, r)]


numbers = st.sampled_from(["0", "1", "1.5", "80", "-3", "95.25", "1e3", "1700000060000", "NaN", "Inf"])
strings = st.sampled_from(['"prod"', '"cpu"', '""', '"critical"', "'db-1'", '"warning"', '"Prod"'])
str_names = st.sampled_from(["env", "instance", "metric", "rule", "severity", "zone"])
num_names = st.sampled_from(["value", "timestamp"])
regexes = st.sampled_from(['"db-.*"', '"prod|staging"', '"c.u"', '""', '".*"', '"[a-z]+"', '"P.*"'])
cmp_ops = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])


@st.composite
def comparisons(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return f"{draw(num_names)} {draw(cmp_ops)} {draw(numbers)}"
    if kind == 1:
        return f"{draw(str_names)} {draw(cmp_ops)} {draw(strings)}"
    if kind == 2:
        return f"{draw(str_names)} {draw(st.sampled_from(['=~', '!~']))} {draw(regexes)}"
    return draw(st.sampled_from(["alert", "true", "false", "alert == false", "alert != true"]))


conditions = st.recursive(
    comparisons(),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        inner.map(lambda e: f"not {e}"),
        inner.map(lambda e: f"({e})"),
    ),
    max_leaves=6,
)


@settings(max_examples=400, deadline=None)
@given(conditions)
def test_arrow_filters_like_python(text: str) -> None:
    assert arrow_rows(text) == python_rows(text)


@pytest.mark.parametrize("text, rows", [
    ('env == "prod"', [0, 5, 10]),
    ('instance =~ "db-[0-2]"', [0, 1, 2, 7, 8, 9]),
    ("value > 80", [5, 6]),
    ('severity == ""', [0, 3, 5, 7, 9, 11]),
    ('not (severity == "critical" or value < 0)', [0, 1, 3, 4, 5, 7, 9, 11]),
    ('zone == ""', list(range(12))),
    ("value != value", [1]),
])
def test_known_answers(text: str, rows: list[int]) -> None:
    assert arrow_rows(text) == rows == python_rows(text)


def test_precedence_and_binds_tighter_than_or() -> None:
    node = expr.parse("alert or value > 1 and value < 0")
    assert isinstance(node, expr.BoolOp) and node.op == "or"


def test_strings_and_escapes() -> None:
    node = expr.parse(r'env == "a\"b\\c" or env == ' + "'it\\'s'")
    assert isinstance(node, expr.BoolOp)
    assert node.left.right.value == 'a"b\\c' and node.right.right.value == "it's"


@pytest.mark.parametrize("text, offset, message", [
    ("value >", 7, "expected a value"),
    ("value > > 1", 8, "expected a value"),
    ("(value > 1", 10, "expected ')'"),
    ("value > 1)", 9, "unexpected ')'"),
    ('env == "x', 7, "unterminated string"),
    ("value ! 1", 6, "unexpected character"),
    ("value", 0, "not a condition"),
    ('value == "x"', 6, "cannot compare number with string"),
    ("env > 5", 4, "label env is a string"),
    ("alert < true", 6, "does not apply to true/false"),
    ('value =~ "1"', 6, "=~ needs a string"),
    ('env =~ "("', 7, "invalid regex"),
    ("not value", 4, "expected a condition"),
    ("alert and 1", 10, "expected a condition"),
    ('env == "\\d"', 8, "unknown escape"),
])
def test_errors_point_at_the_offset(text: str, offset: int, message: str) -> None:
    with pytest.raises(expr.ExprError) as info:
        expr.parse(text)
    assert info.value.offset == offset
    assert message in info.value.message


def test_label_names() -> None:
    node = expr.parse('env == "a" and value > 1 and (instance =~ "x" or severity == "w")')
    assert expr.label_names(node) == {"env", "instance"}


def test_patterns_passed_without_re2_are_patterns_re2_compiles() -> None:
    """Regexes of the plain kind (`prod|staging`, `node-.*`) are accepted without asking RE2, so that checking
    them does not load pyarrow: every such pattern of up to 4 characters over an alphabet with every quantifier,
    the alternation and a paren is one RE2 compiles, and what RE2 refuses the shortcut passes on to RE2."""
    import itertools

    import pyarrow.compute as pc

    def re2_compiles(pattern: str) -> bool:
        try:
            pc.match_substring_regex(pa.array([""]), pattern=f"^(?:{pattern})$")
        except pa.ArrowInvalid:
            return False
        return True

    shortcut = refused = 0
    for n in range(5):
        for chars in itertools.product("a.-*+?|(", repeat=n):
            pattern = "".join(chars)
            if expr._SURELY_RE2.fullmatch(pattern):
                shortcut += 1
                assert re2_compiles(pattern), pattern
            elif not re2_compiles(pattern):
                refused += 1
                assert expr._regex_problem(pattern), pattern
    assert shortcut > 500 and refused > 1000, (shortcut, refused)
    assert not expr._regex_problem("tmpfs|overlay|squashfs") and expr._regex_problem("a**")
    assert "too large" in expr._regex_problem("." * 60_000)        # plain, but more than RE2 takes
