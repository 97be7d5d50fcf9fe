"""A recursive-descent parser of PromQL and of MetricsQL, its superset, with PromQL's type rules.

PromQL is checked fully: syntax, matchers, function names, argument counts and types. MetricsQL converts
types where PromQL refuses them (`rate(x)`, `sum(x[5m])`), so there a type rule that fails is recorded as
`unchecked`, never reported: a query that VictoriaMetrics runs must never get an error.
"""

from __future__ import annotations

import difflib
import math
import re

from vmrules.querylang import functions as fn
from vmrules.querylang.lexer import QueryError, Token, tokenize, unquote
from vmrules.querylang.syntax import (
    ANY,
    MATRIX,
    SCALAR,
    STRING,
    VECTOR,
    Aggregate,
    Binary,
    Call,
    Matcher,
    Node,
    Number,
    Paren,
    Range,
    Selector,
    String,
    Unary,
    Union,
    With,
)

COMPARISONS = frozenset({"==", "!=", ">", "<", ">=", "<="})
SET_OPERATORS = frozenset({"and", "or", "unless"})
_PRIORITY = {"or": 1, "and": 2, "unless": 2, "==": 3, "!=": 3, "<": 3, ">": 3, "<=": 3, ">=": 3, "+": 4, "-": 4,
             "*": 5, "/": 5, "%": 5, "atan2": 5, "^": 6}
_METRICSQL_PRIORITY = {**_PRIORITY, "default": -1, "if": 0, "ifnot": 0}
_PROMQL_KEYWORDS = frozenset({"atan2", "on", "ignoring", "group_left", "group_right", "bool"})   # never names
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_MATCH_OPS = frozenset({"=", "!=", "=~", "!~"})
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000,
            "y": 31_536_000_000}


def parse(query: str, metricsql: bool) -> tuple[Node, QueryError | None, set[str]]:
    """The query's tree; for MetricsQL, the first PromQL type rule it does not keep (None when it keeps them
    all) and the MetricsQL extensions it uses ("with", "union", the names of functions PromQL lacks).
    QueryError for a query that does not parse (or, in PromQL, does not type-check)."""
    p = _Parser(query, metricsql)
    if p.tok.kind == "eof":
        raise QueryError("the query has no expression (only blanks or comments)", 0)
    node = p.expr(-2)
    if p.tok.kind != "eof":
        if p.is_op(")"):
            raise QueryError("unexpected ): no ( is open", p.tok.start + 1)
        p.fail_unexpected("after a complete expression")
    if p.unchecked is not None and not metricsql:
        raise p.unchecked                  # as Prometheus: syntax first, then types
    return node, p.unchecked, p.extensions


class _Parser:
    def __init__(self, query: str, metricsql: bool):
        self.metricsql = metricsql
        self.toks = tokenize(query, metricsql)
        self.toks += self.toks[-1:] * 2            # eof sentinels: advance() needs no bounds check
        self.i = 0
        self.tok: Token = self.toks[0]
        self.priority = _METRICSQL_PRIORITY if metricsql else _PRIORITY
        self.templates: list[dict[str, int | None]] = []   # MetricsQL WITH names in scope: name -> parameters
        self.unchecked: QueryError | None = None
        self.extensions: set[str] = set()

    # -- tokens -----------------------------------------------------------
    def advance(self) -> Token:
        tok = self.tok
        if tok.kind != "eof":
            self.i += 1
            self.tok = self.toks[self.i]
        return tok

    def peek(self) -> Token:
        return self.toks[self.i + 1] if self.tok.kind != "eof" else self.tok

    def is_op(self, text: str) -> bool:
        return self.tok.text == text and self.tok.kind == "op"

    def is_word(self, *words: str) -> bool:
        return self.tok.kind == "ident" and self.tok.text.lower() in words

    def expect(self, text: str, where: str) -> Token:
        if not self.is_op(text):
            self.fail_unexpected(f"{where}: expected {text!r}")
        return self.advance()

    def separator(self, close: str, open_: Token, context: str) -> None:
        """After an item of a list: `,` (taken), the closing bracket (left), else an error; the end of the
        query is reported at the bracket still open."""
        if self.is_op(","):
            self.advance()
        elif not self.is_op(close):
            if self.tok.kind == "eof":
                self.unclosed(open_, close)
            self.fail_unexpected(f"{context}: expected , or {close}")

    def unclosed(self, open_: Token, close: str) -> None:
        """The end of the query with `open_` still open, reported at the end (as Prometheus does)."""
        at = self.toks.index(open_)
        before = self.toks[at - 1] if at > 0 else None
        which = f" of {before.text}{open_.text}" if before is not None and before.kind == "ident" else ""
        raise QueryError(f"unclosed {open_.text}{which}: no {close} before the end of the query", self.tok.start)

    def fail_unexpected(self, context: str) -> None:
        tok = self.tok
        if tok.kind == "bad":                  # the lexer stopped here: its message says why
            raise QueryError(tok.text, tok.start)
        if tok.kind == "eof":
            raise QueryError(f"unexpected end of the query {context}", tok.start)
        hint = ""
        if tok.kind == "op" and tok.text == "=":
            hint = " (compare with ==; = is only for label matchers)"
        raise QueryError(f"unexpected {_describe(tok)} {context}{hint}", tok.start)

    def type_fail(self, message: str, offset: int) -> None:
        """A PromQL type rule broken: an error in PromQL (once the whole query parsed), noted (not reported) in
        MetricsQL."""
        if self.unchecked is None:
            self.unchecked = QueryError(message, offset)

    # -- expressions ------------------------------------------------------
    def expr(self, min_priority: int) -> Node:
        left = self.unary()
        while True:
            tok = self.tok
            op = tok.low if tok.kind in ("op", "ident") else ""
            priority = self.priority.get(op)
            if priority is None or priority < min_priority:
                return left
            self.advance()
            node = Binary(left.start, op, left, left, op_start=tok.start)
            is_bool = node.bool = self.binary_modifiers(node)
            node.right = self.expr(priority if op == "^" else priority + 1)
            self.check_binary(node, is_bool)
            left = node

    def binary_modifiers(self, node: Binary) -> bool:
        """bool, on/ignoring and group_left/group_right after a binary operator; whether `bool` was given."""
        is_bool = False
        if self.is_word("bool"):
            if node.op not in COMPARISONS:
                raise QueryError("bool modifier can only be used on comparison operators", node.op_start)
            self.advance()
            is_bool = True
        if self.is_word("on", "ignoring"):
            node.ignoring = self.advance().low == "ignoring"
            node.matching = self.labels("on/ignoring")
        if self.is_word("group_left", "group_right"):
            if node.matching is None:
                self.fail_unexpected("(group_left/group_right need on(...) or ignoring(...) before them)")
            word = self.advance()
            if node.op in SET_OPERATORS:
                raise QueryError(f"no grouping allowed for {node.op!r} operation", node.start)
            node.group = word.low.removeprefix("group_")
            if self.is_op("("):
                node.include = self.labels(word.text)
            if self.is_word("group_left", "group_right"):
                raise QueryError("group_left and group_right cannot go together", self.tok.start)
            if self.metricsql and self.is_word("prefix"):
                self.advance()
                self.string("prefix")
        return is_bool

    def check_binary(self, node: Binary, is_bool: bool) -> None:
        lt, rt = node.left.type, node.right.type
        if ANY in (lt, rt):
            return
        for side in (node.left, node.right):
            if side.type not in (SCALAR, VECTOR):
                self.type_fail(f"binary expression must contain only scalar and instant vector types, got {side.type}",
                               node.start)
                return
        if node.op in SET_OPERATORS and (lt == SCALAR or rt == SCALAR):
            self.type_fail(f"set operator {node.op!r} not allowed in binary scalar expression", node.start)
        elif node.matching is not None and (lt == SCALAR or rt == SCALAR):
            self.type_fail("vector matching only allowed between instant vectors", node.start)
        elif node.op in COMPARISONS and lt == rt == SCALAR and not is_bool:
            self.type_fail("comparisons between scalars must use BOOL modifier", node.start)
        node.type = SCALAR if lt == rt == SCALAR else VECTOR

    def unary(self) -> Node:
        if self.tok.kind == "op" and self.tok.text in "+-":
            tok = self.advance()
            inner = self.expr(_PRIORITY["^"])            # -a^b is -(a^b)
            if tok.text == "-" and isinstance(inner, Number):
                return Number(tok.start, -inner.value, type=SCALAR)
            if inner.type not in (SCALAR, VECTOR, ANY):
                self.type_fail(f"unary expression only allowed on expressions of type scalar or instant vector, got "
                               f"{inner.type}", inner.start)
            return Unary(tok.start, tok.text, inner, type=inner.type)
        return self.postfix(self.primary())

    def postfix(self, node: Node) -> Node:
        while True:
            tok = self.tok
            if tok.kind == "op" and tok.text not in "[@" or tok.kind in ("eof", "str", "num", "dur"):
                return node
            if self.is_op("["):
                node = self.range(node)
            elif self.is_word("offset"):
                word = self.advance()
                self.modifier(node, "offset", word)
                if self.tok.kind == "op" and self.tok.text in "+-":
                    self.advance()
                self.duration("offset")
            elif self.is_op("@"):
                at = self.advance()
                self.modifier(node, "at", at)
                self.at_value()
            elif self.metricsql and self.is_word("keep_metric_names"):
                if isinstance(node, (Selector, Aggregate, Range)):
                    raise QueryError("keep_metric_names goes after a function call or a parenthesised operation",
                                     self.tok.start)
                self.advance()
                if self.is_word("keep_metric_names"):
                    raise QueryError("keep_metric_names is given twice", self.tok.start)
            else:
                return node

    def modifier(self, node: Node, which: str, tok: Token) -> None:
        label = "offset" if which == "offset" else "@"
        if isinstance(node, (Selector, Range)):
            inner = node.inner if isinstance(node, Range) and isinstance(node.inner, Selector) else None
            if getattr(node, which) or inner is not None and getattr(inner, which):
                raise QueryError(f"{label} may not be set multiple times", node.start)
            setattr(node, which, True)
            return
        self.type_fail(f"{label} modifier must be preceded by an instant vector selector or range vector selector "
                       "or a subquery", node.start)

    def at_value(self) -> None:
        if not self.metricsql and self.tok.kind == "ident" and self.tok.low in ("start", "end"):
            word = self.advance()
            if not self.is_op("("):
                raise QueryError(f"expected ( after {word.text}: write @ {word.text}()", self.tok.start)
            self.advance()
            self.expect(")", "in @ start()/end()")
            return
        if self.metricsql:
            if self.tok.kind == "op" and self.tok.text in "+-":
                self.advance()
            self.primary()                 # `@ end()`, `@ (end() - 1h)`, a number
            return
        if self.tok.kind == "op" and self.tok.text in "+-":
            self.advance()
        if self.tok.kind != "num" and not self.is_word("inf", "nan"):
            self.fail_unexpected("after @: expected a unix timestamp, start() or end()")
        self.advance()

    def range(self, node: Node) -> Node:
        bracket = self.advance()
        if self.metricsql and (isinstance(node, Range) or isinstance(node, Selector) and (node.offset or node.at)):
            raise QueryError("a range must come right after the selector, before offset and @", bracket.start)
        if not (self.metricsql and self.is_colon()):      # MetricsQL: [:step] takes the step as the window
            self.duration("range")
        if self.is_colon():
            colon = self.advance()
            step = colon.text[1:]                         # `:1m` lexes as one name: the step follows the colon
            if step:
                self.check_duration(step, colon.start + 1, "subquery step")
            elif not self.is_op("]"):
                self.duration("subquery step")
            self.closing_bracket(bracket, "subquery")
            if node.type not in (VECTOR, ANY):
                self.type_fail(f"subquery is only allowed on instant vector, got {node.type}", node.start)
            return Range(node.start, node, True, type=MATRIX)
        self.closing_bracket(bracket, "range")
        if not isinstance(node, Selector):
            self.type_fail("ranges only allowed for vector selectors", bracket.start)
        elif (node.offset or node.at) and not self.metricsql:
            raise QueryError("a range must come right after the selector, before offset and @", bracket.start)
        return Range(node.start, node, False, type=MATRIX)

    def is_colon(self) -> bool:
        return self.tok.kind == "ident" and self.tok.text[0] == ":"

    def check_duration(self, text: str, offset: int, what: str) -> None:
        """A step written right after a colon (the lexer read `:1m` as a name)."""
        if ":" in text:
            raise QueryError(f"unexpected ':' in the {what}", offset + text.index(":"))
        tokens = tokenize(text, self.metricsql)
        if len(tokens) != 2 or tokens[0].kind not in ("dur", "num"):
            raise QueryError(f"bad {what} {text!r}: expected a duration such as 1m", offset)
        if tokens[0].kind == "num" and not self.metricsql:
            raise QueryError(f"bad {what} {text!r}: a duration needs a unit (s, m, h, d, w, y)", offset)

    def duration_sum(self) -> None:
        """MetricsQL: `[1h-5m]`, a window summed from durations."""
        while self.metricsql and self.tok.kind == "op" and self.tok.text in ("+", "-") and \
                self.peek().kind in ("dur", "num"):
            self.advance()
            self.advance()

    def closing_bracket(self, bracket: Token, what: str) -> None:
        if self.tok.kind == "eof":
            self.unclosed(bracket, "]")
        self.expect("]", f"in the {what}")

    def duration(self, what: str) -> None:
        tok = self.tok
        if tok.kind == "dur":
            if not self.metricsql and "." in tok.text:
                raise QueryError(f"bad duration {tok.text!r} (PromQL durations are whole numbers: 1h30m)",
                                 tok.start)
            self.advance()
            self.duration_sum()
            return
        if self.metricsql and tok.kind == "num":          # MetricsQL reads a bare number as seconds
            glued = self.peek()
            if glued.kind == "ident" and glued.start == tok.start + len(tok.text):
                raise QueryError(f"bad duration {tok.text + glued.text!r}", tok.start)
            self.advance()
            self.duration_sum()
            return
        if tok.kind == "num" and not self.metricsql:
            raise QueryError(f"bad {what} {tok.text!r}: a duration needs a unit (s, m, h, d, w, y)", tok.start)
        self.fail_unexpected(f"in {what}: expected a duration such as 5m")

    # -- primaries --------------------------------------------------------
    def primary(self) -> Node:
        tok = self.tok
        match tok.kind:
            case "num":
                self.advance()
                return Number(tok.start, _number(tok.text), type=SCALAR)
            case "dur":
                if not self.metricsql:
                    self.fail_unexpected("(a duration is not a number in PromQL)")
                self.advance()
                return Number(tok.start, 0.0, type=SCALAR)
            case "str":
                self.advance()
                return String(tok.start, unquote(tok), type=STRING)
            case "ident":
                return self.ident()
            case "op" if tok.text == "(":
                return self.paren()
            case "op" if tok.text == "{":
                return self.selector(None, tok.start)
        if tok.kind == "op" and tok.text == ")":
            raise QueryError("unexpected ) where an expression should start", tok.start + 1)
        self.fail_unexpected("where an expression should start")
        raise AssertionError

    def paren(self) -> Node:
        open_ = self.advance()
        if self.is_op(")"):
            if self.metricsql:                 # an empty union
                self.advance()
                self.extensions.add("union")
                return Union(open_.start, [], type=ANY)
            self.fail_unexpected("inside ( ): expected an expression")
        items = [self.expr(-2)]
        while self.metricsql and self.is_op(","):
            self.advance()
            if self.is_op(")"):
                break
            items.append(self.expr(-2))
        if self.tok.kind == "eof":
            self.unclosed(open_, ")")
        self.close(")", open_)
        if len(items) > 1:
            self.extensions.add("union")
            return Union(open_.start, items, type=ANY)
        return Paren(open_.start, items[0], type=items[0].type)

    def close(self, text: str, open_: Token) -> None:
        if self.is_op(text):
            self.advance()
            return
        if self.tok.kind == "eof":
            self.unclosed(open_, text)
        self.fail_unexpected(f"(the {open_.text} at offset {open_.start} is still open)")

    def ident(self) -> Node:
        tok = self.tok
        low = tok.low
        nxt = self.peek()
        if self.metricsql and low == "with" and nxt.text == "(":
            return self.with_()
        if nxt.kind == "op" and nxt.text == "(":
            return self.call()
        if nxt.kind == "ident" and nxt.low in ("by", "without") and self.is_aggregation(low):
            return self.call()
        if not self.metricsql and low in _PROMQL_KEYWORDS:
            self.fail_unexpected("where an expression should start (it is a PromQL keyword)")
        if low in ("inf", "nan") and not (nxt.kind == "op" and nxt.text == "{"):
            self.advance()
            return Number(tok.start, float(low), type=SCALAR)
        self.advance()
        if self.is_op("{"):
            node = self.selector(tok.text, tok.start)
            if self.is_template(tok.text):
                node.type = ANY                # a WITH parameter or name with filters: not a series selector
            return node
        end = tok.start + len(tok.text)
        if self.is_template(tok.text):
            return Selector(tok.start, tok.text, [], type=ANY, end=end)
        return Selector(tok.start, tok.text, [[]], type=VECTOR, end=end)

    def is_aggregation(self, low: str) -> bool:
        return low in (fn.METRICSQL_AGGREGATIONS if self.metricsql else fn.PROMQL_AGGREGATIONS)

    def is_template(self, name: str) -> bool:
        return any(name in scope for scope in self.templates)

    def template_params(self, name: str) -> int | None:
        for scope in reversed(self.templates):
            if name in scope:
                return scope[name]
        return None

    def selector(self, name: str | None, start: int) -> Selector:
        open_ = self.advance()
        groups: list[list[Matcher]] = [[]]
        while not self.is_op("}"):
            if self.tok.kind == "eof":
                self.unclosed(open_, "}")
            if self.metricsql and self.is_or():
                if not groups[-1] or self.toks[self.i - 1].text == ",":
                    self.fail_unexpected("in label matchers: expected a matcher before or")
                self.advance()
                groups.append([])
                if self.is_op("}"):
                    self.fail_unexpected("in label matchers: expected a matcher after or")
                continue
            groups[-1].append(self.matcher())
            if not (self.metricsql and self.is_or()):
                self.separator("}", open_, "in label matchers")
        close = self.advance()
        node = Selector(start, name, groups, type=VECTOR, end=close.start + 1)
        for m in groups[0]:
            if m.label == "__name__" and m.op == "=" and name is None and len(groups) == 1:
                node.name = m.value
        if name is not None and not self.metricsql and any(m.label == "__name__" for g in groups for m in g):
            raise QueryError(f"metric name given twice: {name} and __name__", start)
        if not self.metricsql:
            self.check_not_empty(node, start)
        return node

    def is_or(self) -> bool:
        """MetricsQL's `or` between matcher groups (not a label named `or`: `{or="x"}`)."""
        nxt = self.peek()
        return self.is_word("or") and not (nxt.kind == "op" and nxt.text in _MATCH_OPS or nxt.text == "==")

    def matcher(self) -> Matcher:
        tok = self.tok
        if tok.kind == "str":                      # {"utf8.name"} or {"utf8.label"="v"}
            self.advance()
            if not (self.tok.kind == "op" and self.tok.text in _MATCH_OPS):
                return Matcher("__name__", "=", unquote(tok), tok.start)
            label = unquote(tok)
        elif tok.kind == "ident":
            self.advance()
            label = tok.text
            if not self.metricsql and not _LABEL.fullmatch(label):
                raise QueryError(f"{label!r} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)", tok.start)
            if self.metricsql and (self.is_op(",") or self.is_op("}") or self.is_word("or")):
                if not self.is_template(label):
                    raise QueryError(f"{label!r} is not a label matcher (label=\"value\") nor a WITH name",
                                     tok.start)
                return Matcher(label, "", "", tok.start)
        else:
            self.fail_unexpected("in label matchers: expected a label name")
            raise AssertionError
        op = self.tok
        if op.kind == "op" and op.text == "==":
            raise QueryError("unexpected = (a label matcher compares with one =: job=\"x\")", op.start + 1)
        if not (op.kind == "op" and op.text in _MATCH_OPS):
            self.fail_unexpected(f"after label {label!r}: expected =, !=, =~ or !~")
        self.advance()
        value_tok = self.tok
        if self.metricsql and (value_tok.kind == "ident" or self.peek().text == "+"):
            self.template_string()         # MetricsQL: "prefix" + name, names from WITH
            return Matcher(label, "", "", tok.start)     # known only once the templates are expanded
        if value_tok.kind != "str":
            self.fail_unexpected(f"after {label}{op.text}: expected a quoted string")
        self.advance()
        value = unquote(value_tok)
        if op.text in ("=~", "!~"):
            problem = _regex_problem(value)
            if problem:
                raise QueryError(f"invalid regex in {label}{op.text}: {problem}", tok.start)
        return Matcher(label, op.text, value, tok.start)

    def template_string(self) -> None:
        """A MetricsQL matcher value built from strings and WITH names joined by +."""
        while True:
            if self.tok.kind == "str" or self.tok.kind == "ident" and self.is_template(self.tok.text):
                self.advance()
            elif self.tok.kind == "ident":
                raise QueryError(f"{self.tok.text!r} is neither a quoted string nor a WITH name", self.tok.start)
            else:
                self.fail_unexpected("in a label matcher: expected a quoted string")
            if not self.is_op("+"):
                return
            self.advance()

    def check_not_empty(self, node: Selector, start: int) -> None:
        if node.name is not None:
            return
        if not any(not _matches_empty(m) for m in node.groups[0]):
            raise QueryError("vector selector must contain at least one non-empty matcher", start)

    def string(self, what: str) -> str:
        if self.tok.kind != "str":
            self.fail_unexpected(f"after {what}: expected a quoted string")
        return unquote(self.advance())

    def labels(self, what: str) -> tuple[str, ...]:
        open_ = self.tok
        self.expect("(", f"after {what}")
        out: list[str] = []
        while not self.is_op(")"):
            if self.tok.kind in ("ident", "str") or self.metricsql and self.is_op("*"):
                out.append(self.tok.text if self.tok.kind != "str" else unquote(self.tok))
                self.advance()
            elif self.tok.kind == "eof":
                self.unclosed(open_, ")")
            else:
                self.fail_unexpected(f"in the label list of {what}: expected a label name")
            self.separator(")", open_, f"in the label list of {what}")
        self.advance()
        return tuple(out)

    # -- calls ------------------------------------------------------------
    def call(self) -> Node:
        name = self.advance()
        low = name.low
        template = self.is_template(name.text)
        aggregation = not template and self.is_aggregation(low)
        grouping, without = None, False
        if aggregation and self.is_word("by", "without"):
            without = self.advance().low == "without"
            grouping = self.labels("by" if not without else "without")
            if self.is_word("by", "without"):
                raise QueryError("by/without is given twice", self.tok.start)
            if not self.is_op("("):
                self.fail_unexpected(f"after {name.text} {'without' if without else 'by'} (...): expected (")
        try:
            args = self.arguments(name)
        except QueryError as exc:
            if not self.metricsql and low == "with":
                raise QueryError("WITH templates are MetricsQL (set the datasource's dialect: metricsql)",
                                 exc.offset) from None
            raise
        if not template and not aggregation:
            self.check_function(name)
        if template:
            wanted = self.template_params(name.text)
            if wanted is not None and wanted != len(args):
                raise QueryError(f"WITH template {name.text}() takes {wanted} argument(s), got {len(args)}", name.start)
            return Call(name.start, name.text, args, type=ANY)
        if aggregation:
            if self.is_word("by", "without"):
                if grouping is not None:
                    raise QueryError("by/without is given twice", self.tok.start)
                without = self.advance().low == "without"
                grouping = self.labels("by" if not without else "without")
            if self.metricsql and self.is_word("limit"):
                self.advance()
                if self.tok.kind != "num" or not self.tok.text.isdigit():
                    self.fail_unexpected("after limit: expected a whole number")
                self.advance()
            node = Aggregate(name.start, low, args, grouping, without, type=VECTOR)
            self.check_aggregation(node, name)
            return node
        node_call = Call(name.start, name.text if not self.metricsql else low, args)
        self.check_call(node_call, name)
        return node_call

    def arguments(self, name: Token) -> list[Node]:
        open_ = self.advance()
        args: list[Node] = []
        while not self.is_op(")"):
            if self.tok.kind == "eof":
                self.unclosed(open_, ")")
            args.append(self.expr(-2))
            comma = self.tok
            self.separator(")", open_, f"in the arguments of {name.text}")
            if not self.metricsql and comma.text == "," and self.is_op(")"):
                raise QueryError("trailing commas not allowed in function call args", comma.start)
        self.advance()
        return args

    def check_function(self, name: Token) -> None:
        known = fn.METRICSQL_FUNCTIONS if self.metricsql else fn.PROMQL_FUNCTIONS
        key = name.low if self.metricsql else name.text
        if key in known:
            return
        names = sorted(known) + sorted(n for scope in self.templates for n in scope)
        close = difflib.get_close_matches(key, names, n=1)
        dialect = "MetricsQL" if self.metricsql else "PromQL"
        hint = f"; did you mean {close[0]!r}?" if close else ""
        if not self.metricsql and name.low == "with":
            raise QueryError("WITH templates are MetricsQL (set the datasource's dialect: metricsql)", name.start)
        if not self.metricsql and name.low in fn.METRICSQL_FUNCTIONS:
            hint = " (it is a MetricsQL function: set the datasource's dialect: metricsql)"
        raise QueryError(f"unknown {dialect} function {name.text!r}{hint}", name.start)

    def check_call(self, node: Call, name: Token) -> None:
        spec = fn.PROMQL_FUNCTIONS.get(node.name) if not self.metricsql else \
            fn.PROMQL_FUNCTIONS.get(name.text)
        got = len(node.args)
        if self.metricsql:
            self.check_metricsql_arity(node, name, spec)
        if spec is None:                     # a MetricsQL function PromQL does not have
            node.type = ANY
            self.extensions.add(node.name)
            return
        types, optional, returns = spec
        node.type = returns
        least = len(types) - (optional if optional > 0 else 0) - (1 if optional < 0 else 0)
        most = len(types) if optional >= 0 else None
        if got < least or most is not None and got > most:
            want = str(least) if least == most else f"at least {least}" if most is None else f"{least} to {most}"
            self.type_fail(f"wrong number of arguments for {node.name}(): expected {want}, got {got}", name.start)
            return
        for i, arg in enumerate(node.args):
            expected = types[min(i, len(types) - 1)]
            if arg.type != expected and arg.type != ANY:
                self.type_fail(f"expected type {expected} in call to function {node.name!r}, got {arg.type}",
                               arg.start)
                return

    def check_metricsql_arity(self, node: Call, name: Token,
                              spec: tuple[tuple[str, ...], int, str] | None) -> None:
        """MetricsQL keeps the arguments PromQL requires and adds optional ones; its rollup functions
        check their counts exactly (the table from its source)."""
        got = len(node.args)
        arity = fn.METRICSQL_ROLLUP_ARITY.get(node.name)
        if arity is not None and not arity[0] <= got <= arity[1]:
            want = str(arity[0]) if arity[0] == arity[1] else f"{arity[0]} or {arity[1]}"
            raise QueryError(f"wrong number of arguments for {node.name}(): expected {want}, got {got}", name.start)
        if spec is not None:
            types, optional, _ = spec
            least = len(types) - (optional if optional > 0 else 0) - (1 if optional < 0 else 0)
            if got < least:
                raise QueryError(f"wrong number of arguments for {node.name}(): expected at least {least}, got "
                                 f"{got}", name.start)

    def check_aggregation(self, node: Aggregate, name: Token) -> None:
        param = fn.PROMQL_AGGREGATIONS.get(node.name)
        want = 2 if param else 1
        if self.metricsql and node.name in fn.PROMQL_AGGREGATIONS and len(node.args) < want:
            raise QueryError(f"wrong number of arguments for aggregate expression provided, expected {want}, got "
                             f"{len(node.args)}", name.start)
        if self.metricsql and node.name not in fn.PROMQL_AGGREGATIONS:
            node.type = ANY
            self.extensions.add(node.name)
            return
        if len(node.args) != want:
            self.type_fail(f"wrong number of arguments for aggregate expression provided, expected {want}, got "
                           f"{len(node.args)}", name.start)
            return
        if node.args[-1].type not in (VECTOR, ANY):
            self.type_fail(f"expected type instant vector in aggregation expression, got {node.args[-1].type}",
                           node.args[-1].start)
        elif param and node.args[0].type not in (param, ANY):
            self.type_fail(f"expected type {param} in aggregation parameter, got {node.args[0].type}",
                           node.args[0].start)

    # -- MetricsQL templates ----------------------------------------------
    def with_(self) -> Node:
        word = self.advance()
        open_ = self.advance()
        names: dict[str, Node] = {}
        scope: dict[str, int | None] = {}
        self.templates.append(scope)
        while not self.is_op(")"):
            if self.tok.kind != "ident":
                if self.tok.kind == "eof":
                    self.unclosed(open_, ")")
                self.fail_unexpected("in WITH: expected a name")
            name = self.advance()
            params: tuple[str, ...] | None = None
            if self.is_op("("):
                params = self.labels(name.text)
            self.expect("=", f"in WITH after {name.text}")
            scope[name.text] = None if params is None else len(params)
            self.templates.append(dict.fromkeys(params or (), None))
            names[name.text] = self.expr(-2)
            self.templates.pop()
            self.separator(")", open_, "in WITH")
        self.advance()
        body = self.expr(-2)
        self.templates.pop()
        self.extensions.add("with")
        return With(word.start, names, body, type=ANY)


def _describe(tok: Token) -> str:
    if tok.kind == "ident":
        return f"identifier {tok.text!r}"
    if tok.kind == "str":
        return f"string {tok.text}"
    if tok.kind in ("num", "dur"):
        return f"{'duration' if tok.kind == 'dur' else 'number'} {tok.text}"
    return repr(tok.text)


def _number(text: str) -> float:
    t = text.replace("_", "")
    if t[:2].lower() in ("0x", "0o", "0b"):
        try:
            return float(int(t, 0))
        except OverflowError:                # more digits than a float holds: +Inf, as the servers read it
            return math.inf
    try:
        return float(t)
    except ValueError:
        return 0.0                       # MetricsQL's 1Ki, 2MB: their value does not matter here


def _regex_problem(pattern: str) -> str:
    from vmrules.expr import _regex_problem as problem
    return problem(pattern)


def _matches_empty(m: Matcher) -> bool:
    if m.op == "=":
        return m.value == ""
    if m.op == "!=":
        return m.value != ""
    if m.op == "":
        return False
    from vmrules.expr import _re2_match
    full = _re2_match([""], m.value)[0]
    return full if m.op == "=~" else not full
