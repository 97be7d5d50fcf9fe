"""Threshold conditions as data: the YAML key, its operator, the numpy comparison and its text.

A new comparison is one entry here (and its key in the schema, which a test
compares with this table); the checks, the evaluation and the HTML report read
it. No numpy at import: the comparison is named, so validating files never loads it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Comparison:
    """`value OP X` for a threshold key."""

    key: str          # YAML key: above, below, ...
    op: str           # operator as written in texts: >, <, ...
    ufunc: str        # numpy function comparing the values with X
    text: str         # for the schema: what it means


COMPARISONS = {c.key: c for c in (
    Comparison("above", ">", "greater", "value > this."),
    Comparison("below", "<", "less", "value < this."),
    Comparison("at_least", ">=", "greater_equal", "value >= this."),
    Comparison("at_most", "<=", "less_equal", "value <= this."),
    Comparison("equal", "==", "equal", "value == this (exactly)."),
    Comparison("not_equal", "!=", "not_equal", "value != this (NaN is not equal to anything)."),
)}
BY_OP = {c.op: c for c in COMPARISONS.values()}
CONDITION_KEYS = (*COMPARISONS, "when")


def describe(op: str, value: float | None) -> str:
    """A condition as people read it: `> 90`, or `when` for an expression."""
    return "when" if op == "when" else f"{op} {value:g}"
