"""The expression language of `where` and `when`, compiled to pyarrow.compute expressions.

    expr    := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | compare
    compare := operand (("==" | "!=" | "<" | "<=" | ">" | ">=" | "=~" | "!~") operand)?
    operand := NUMBER | STRING | true | false | NAME | "(" expr ")"

A name is a row column or, failing that, a series label; a missing label is
the empty string, as in PromQL. Regex matches are fully anchored.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from vmrules.errors import VmrulesError

if TYPE_CHECKING:  # pyarrow is imported when an expression is compiled (validate rarely needs it)
    pass

# Column name -> type of the row table that expressions see.
COLUMN_TYPES = {
    "rule": "string", "metric": "string", "labels": "string", "timestamp": "number",
    "value": "number", "severity": "string", "alert": "bool",
}

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<number>[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?|(?:[Nn]a[Nn]|[Ii]nf)\b)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|=~|!~|<|>|\(|\)|-)
""", re.VERBOSE)
_COMPARE = ("==", "!=", "<", "<=", ">", ">=", "=~", "!~")
_OTHER_LANGUAGES = {     # what people write from SQL, C or shell -> what to write here
    "&&": "use `and`", "&": "use `and`", "||": "use `or`", "|": "use `or`", "!": "use `not`",
    "=>": "use `>=`", "=<": "use `<=`", "=": "use `==` to compare",
}
_KEYWORDS = ("and", "or", "not", "true", "false")


class ExprError(VmrulesError, ValueError):
    """A syntax or type error at a 0-based offset into the expression text."""

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.message = message
        self.offset = offset


@dataclass(frozen=True)
class Lit:
    value: float | str | bool
    offset: int


@dataclass(frozen=True)
class Name:
    name: str
    offset: int

    @property
    def is_column(self) -> bool:
        return self.name in COLUMN_TYPES


@dataclass(frozen=True)
class Compare:
    op: str
    left: Any
    right: Any
    offset: int


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" | "or"
    left: Any
    right: Any


@dataclass(frozen=True)
class Not:
    operand: Any


Node = Lit | Name | Compare | BoolOp | Not


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    offset: int


def tokenize(text: str) -> list[Token]:
    """Split an expression into tokens; ExprError at the first character that fits none."""
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            if text[pos] in "\"'":
                raise ExprError("unterminated string", pos)
            seen = text[pos:pos + 2] if text[pos:pos + 2] in _OTHER_LANGUAGES else text[pos]
            hint = f": {_OTHER_LANGUAGES[seen]}" if seen in _OTHER_LANGUAGES else ""
            raise ExprError(f"unexpected {'character ' if len(seen) == 1 else ''}{seen!r}{hint}", pos)
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, m.group(), pos))
        pos = m.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str):
        self.tokens = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        t = self.tokens[self.i]
        self.i += 1
        return t

    def is_word(self, word: str) -> bool:
        return self.tok.kind == "name" and self.tok.text == word

    def parse(self) -> Node:
        node = self.or_expr()
        if self.tok.kind != "end":
            raise ExprError(f"unexpected {self.tok.text!r}", self.tok.offset)
        return node

    def or_expr(self) -> Node:
        node = self.and_expr()
        while self.is_word("or"):
            self.take()
            node = BoolOp("or", node, self.and_expr())
        return node

    def and_expr(self) -> Node:
        node = self.not_expr()
        while self.is_word("and"):
            self.take()
            node = BoolOp("and", node, self.not_expr())
        return node

    def not_expr(self) -> Node:
        if self.is_word("not"):
            self.take()
            return Not(self.not_expr())
        return self.compare()

    def compare(self) -> Node:
        left = self.operand()
        if self.tok.kind == "op" and self.tok.text in _COMPARE:
            op = self.take()
            return Compare(op.text, left, self.operand(), op.offset)
        return left

    def operand(self) -> Node:
        t = self.take()
        if t.kind == "number":
            return Lit(float(t.text), t.offset)
        if t.kind == "op" and t.text == "-" and self.tok.kind == "number":
            return Lit(-float(self.take().text), t.offset)
        if t.kind == "string":
            return Lit(_unquote(t), t.offset)
        if t.kind == "name" and t.text in ("true", "false"):
            return Lit(t.text == "true", t.offset)
        if t.kind == "name" and t.text not in _KEYWORDS:
            return Name(t.text, t.offset)
        if t.kind == "op" and t.text == "(":
            node = self.or_expr()
            if self.tok.kind != "op" or self.tok.text != ")":
                raise ExprError("expected ')'", self.tok.offset)
            self.take()
            return node
        what = "end of expression" if t.kind == "end" else repr(t.text)
        raise ExprError(f"expected a value, got {what}", t.offset)


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}


def _unquote(t: Token) -> str:
    """String literal value; escapes as in PromQL (write \\\\d for the regex \\d)."""
    out, body, i = [], t.text[1:-1], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            esc = body[i + 1]
            if esc not in _ESCAPES:
                raise ExprError(f"unknown escape \\{esc} in string (write \\\\{esc} for a regex)", t.offset + 1 + i)
            out.append(_ESCAPES[esc])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


@lru_cache(maxsize=8192)
def parse(text: str) -> Node:
    """Parse and type-check an expression; ExprError names the offset of the mistake.

    Nodes are immutable, so equal texts share one parse.
    """
    node = _Parser(text).parse()
    if _type(node) != "bool":
        raise ExprError("expression is not a condition: compare it, e.g. value > 80", _offset(node))
    return node


def _offset(node: Node) -> int:
    if isinstance(node, (Lit, Name, Compare)):
        return node.offset
    if isinstance(node, BoolOp):
        return _offset(node.left)
    return _offset(node.operand)


def _type(node: Node) -> str:
    """The type of a node: number, string or bool; ExprError on a mismatch."""
    match node:
        case Lit(value=bool()):
            return "bool"
        case Lit(value=float()):
            return "number"
        case Lit():
            return "string"
        case Name():
            return COLUMN_TYPES.get(node.name, "string")
        case Not(operand=operand):
            _need_bool(operand)
            return "bool"
        case BoolOp(left=left, right=right):
            _need_bool(left)
            _need_bool(right)
            return "bool"
        case Compare():
            return _type_compare(node)
    raise AssertionError(node)  # pragma: no cover


def _need_bool(node: Node) -> None:
    if _type(node) != "bool":
        raise ExprError("expected a condition here, e.g. value > 80", _offset(node))


def _type_compare(node: Compare) -> str:
    lt, rt = _type(node.left), _type(node.right)
    if node.op in ("=~", "!~"):
        if lt != "string" or not isinstance(node.right, Lit) or rt != "string":
            raise ExprError(f"{node.op} needs a string on the left and a regex string on the right", node.offset)
        _check_regex(str(node.right.value), node.right.offset)
        return "bool"
    if lt != rt:
        for side, other in ((node.left, rt), (node.right, lt)):
            if isinstance(side, Name) and not side.is_column and other == "number":
                raise ExprError(f"label {side.name} is a string: compare it with a string, "
                                f'e.g. {side.name} == "500"', node.offset)
        raise ExprError(f"cannot compare {lt} with {rt}", node.offset)
    if lt == "bool" and node.op not in ("==", "!="):
        raise ExprError(f"{node.op} does not apply to true/false", node.offset)
    return "bool"


def _check_regex(pattern: str, offset: int) -> None:
    """The regex must compile in Arrow's RE2 engine, the one that runs it (Python's `re` accepts
    lookarounds, backreferences and repeats over 1000 that RE2 refuses, and warns on `[[:alpha:]]`)."""
    problem = _regex_problem(pattern)
    if problem:
        raise ExprError(f"invalid regex: {problem}", offset)


# Patterns RE2 compiles without asking it: up to 1,000 characters, alternatives of literal word characters
# and dots, each with at most one *, + or ? (`prod|staging`, `tmpfs|overlay`, `node-.*`, `.+`). Most label
# matchers are such, and with them a rule set is checked without loading pyarrow (~140 ms): a cron run's
# request then leaves before it loads. A test holds RE2's verdict against this one on every short pattern of
# such characters.
_SURELY_RE2 = re.compile(r"(?:[A-Za-z0-9_:/. -][*+?]?|\|)*")


@lru_cache(maxsize=4096)
def _regex_problem(pattern: str) -> str:
    if len(pattern) <= 1000 and _SURELY_RE2.fullmatch(pattern):    # RE2 refuses long ones ("pattern too large")
        return ""
    import pyarrow as pa

    try:
        _re2_match([""], pattern)      # RE2 compiles the pattern only when there is a value to match
    except pa.ArrowInvalid as exc:
        return str(exc).removeprefix("Invalid regular expression: ").replace(f"^(?:{pattern})$", pattern)
    return ""


def _re2_match(values: list[str], pattern: str) -> list[bool]:
    """Full matches of `pattern` by RE2, as a run evaluates them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.match_substring_regex(pa.array(values, pa.string()), pattern=f"^(?:{pattern})$").to_pylist()


def names(node: Node) -> set[str]:
    """Every name the expression reads."""
    match node:
        case Name():
            return {node.name}
        case Compare(left=left, right=right) | BoolOp(left=left, right=right):
            return names(left) | names(right)
        case Not(operand=operand):
            return names(operand)
    return set()


def label_names(node: Node) -> set[str]:
    """The series labels the expression reads (names that are not row columns)."""
    return {n for n in names(node) if n not in COLUMN_TYPES}


_ARROW_OPS = {"==": "equal", "!=": "not_equal", "<": "less", "<=": "less_equal", ">": "greater",
              ">=": "greater_equal"}


def evaluate_columns(node: Node, column: Callable[[str], Any]) -> Any:
    """Evaluate an expression at once on arrays: `column(name)` gives the array of a row column or label.

    The same kernels as the compiled form, without a query plan: this is how rows are
    filtered during a run. The result is a boolean array (or a scalar for a constant).
    """
    import pyarrow as pa

    return _build(node, column, pa.scalar)


def _build(n: Node, field: Callable[[str], Any], lit: Callable[[Any], Any]) -> Any:
    """The expression from pyarrow.compute calls; `field` and `lit` make leaves (plain recursion, no
    nested closure, so that no reference cycle keeps a batch's arrays alive)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    match n:
        case Lit(value=value):
            return lit(value)
        case Name(name="severity"):
            return pc.coalesce(field("severity"), lit(""))
        case Name(name="timestamp"):
            return field("timestamp").cast(pa.int64()).cast(pa.float64())
        case Name(name=name):
            return field(name)
        case Not(operand=operand):
            return pc.invert(_build(operand, field, lit))
        case BoolOp(op="and", left=left, right=right):
            return pc.and_kleene(_build(left, field, lit), _build(right, field, lit))
        case BoolOp(left=left, right=right):
            return pc.or_kleene(_build(left, field, lit), _build(right, field, lit))
        case Compare(op="=~" | "!~", left=left, right=right):
            found = pc.match_substring_regex(_build(left, field, lit), pattern=f"^(?:{right.value})$")
            return found if n.op == "=~" else pc.invert(found)
        case Compare(op=op, left=left, right=right):
            return getattr(pc, _ARROW_OPS[op])(_build(left, field, lit), _build(right, field, lit))
    raise AssertionError(n)  # pragma: no cover


_PY_OPS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
           ">": operator.gt, ">=": operator.ge}


def evaluate_row(node: Node, row: dict[str, Any]) -> Any:
    """Plain-Python meaning of an expression for one row (the reference the Arrow form must match).

    `row` maps column names and label names to values; timestamps are unix milliseconds.
    """
    match node:
        case Lit(value=value):
            return value
        case Name(name="severity"):
            return row.get("severity") or ""
        case Name(name=name):
            return row.get(name, "")
        case Not(operand=operand):
            return not evaluate_row(operand, row)
        case BoolOp(op="and", left=left, right=right):
            return evaluate_row(left, row) and evaluate_row(right, row)
        case BoolOp(left=left, right=right):
            return evaluate_row(left, row) or evaluate_row(right, row)
        case Compare(op="=~" | "!~", left=left, right=right):
            found = _re2_match([evaluate_row(left, row)], str(right.value))[0]
            return found if node.op == "=~" else not found
        case Compare(op=op, left=left, right=right):
            return _PY_OPS[op](evaluate_row(left, row), evaluate_row(right, row))
    raise AssertionError(node)  # pragma: no cover
