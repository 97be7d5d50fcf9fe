"""Tokens of a PromQL or MetricsQL query, each with its 0-based offset into the query text."""

from __future__ import annotations

import re
from typing import NamedTuple


class QueryError(ValueError):
    """A query that does not parse or check, at `offset` (0-based) in its text."""

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.message, self.offset = message, offset


class Token(NamedTuple):
    kind: str          # ident num dur str op eof
    text: str
    start: int

    @property
    def low(self) -> str:
        return self.text.lower()


_DURATION = r"(?:\d+(?:\.\d+)?(?:ms|[smhdwyi]))+"
_SUFFIXED = r"(?:\d+(?:\.\d+)?|\.\d+)(?:[KMGT]i?B?)"            # MetricsQL: 1Ki, 2MB, 1.5GiB
_NUMBER = r"0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|(?:\d+(?:_\d+)*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_TOKENS = re.compile(                 # the frequent kinds first; numbers only where a digit, . or $ starts
    r"(?P<space>(?:\s+|\#[^\n]*)+)"
    r"|(?P<ident>(?:[^\W\d]|:(?=[^\W\d:])|\\.)[\w:.]*(?:\\.[\w:.]*)*)"
    r"|(?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=(){}\[\],:@])"
    r'|(?P<str>"[^"\\\n]*(?:\\.[^"\\\n]*)*"' r"|'[^'\\\n]*(?:\\.[^'\\\n]*)*'|`[^`]*`)"
    rf"|(?=[\d.$])(?:(?P<dur>{_DURATION}|\$__\w+)(?![\w.])"
    rf"|(?P<suffixed>{_SUFFIXED})(?![\w.])"
    rf"|(?P<num>{_NUMBER})(?![\w.]))"
)
_PROMQL_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_STRING_START = re.compile(r"[\"'`]")


def tokenize(query: str, metricsql: bool) -> list[Token]:
    """The tokens of `query`, ending with an `eof` token; QueryError at the first character that starts none."""
    out: list[Token] = []
    append = out.append
    pos = 0
    new = tuple.__new__
    checked = _CHECKED if metricsql else _CHECKED_PROMQL
    for m in _TOKENS.finditer(query):
        start, end = m.span()
        if start != pos:
            break
        pos = end
        kind = m.lastgroup
        if kind == "space":
            continue
        if kind in checked:
            kind = _check(kind, m.group(), start, metricsql)
        append(new(Token, (kind, m.group(), start)))
    if pos < len(query):
        raise QueryError(_bad_character(query, pos), pos)
    append(Token("eof", "", len(query)))
    return out


_CHECKED = frozenset({"suffixed"})
_CHECKED_PROMQL = frozenset({"suffixed", "dur", "ident"})


def _check(kind: str, text: str, start: int, metricsql: bool) -> str:
    """The kinds PromQL refuses or MetricsQL spells differently."""
    if kind == "ident":
        if not _PROMQL_IDENT.fullmatch(text):
            bad = next(i for i, c in enumerate(text) if not (c.isascii() and (c.isalnum() or c in "_:")))
            raise QueryError(f"unexpected character {text[bad]!r} in the name {text!r} (PromQL names are "
                             "[a-zA-Z_:][a-zA-Z0-9_:]*; quote others: {\"name.with.dots\"})", start + bad)
        return kind
    if kind == "suffixed":
        if not metricsql:
            raise QueryError(f"bad number or duration {text!r}", start)
        return "num"
    if not metricsql:
        if text[0] == "$":
            raise QueryError(f"{text} is a Grafana variable, which Prometheus does not know: write a duration", start)
        if text[-1] == "i":
            raise QueryError(f"bad duration {text!r} (steps as `i` are MetricsQL)", start)
    return kind


def _bad_character(query: str, pos: int) -> str:
    c = query[pos]
    if _STRING_START.match(c):
        return f"unterminated string starting with {c}"
    if c.isdigit() or c == ".":
        word = re.match(r"[\w.]+", query[pos:])
        return f"bad number or duration {word.group() if word else c!r}"
    if c == "!":
        return "unexpected character '!' (use != or !~ in a matcher, `unless` or `not` elsewhere)"
    if c in "&|":
        return f"unexpected character {c!r} (PromQL writes `and` / `or`)"
    return f"unexpected character {c!r}"


def unquote(token: Token) -> str:
    """The value of a string token, with Go's escapes (the only ones both servers accept); backquotes are raw."""
    text = token.text
    if text[0] == "`":
        return text[1:-1]
    body = text[1:-1]
    if "\\" not in body:
        return body
    quote = text[0]

    def escape(m: re.Match[str]) -> str:
        code = m.group(1)
        if code[0] in "xuU" and len(code) > 1:
            return chr(int(code[1:], 16))
        if len(code) == 3 and code.isdigit():
            return chr(int(code, 8))
        if code in _SIMPLE:
            return _SIMPLE[code]
        if code == "\\" or code == quote:
            return code
        hint = f" (a regex backslash is written \\\\{code} here)" if code.isascii() and not code.isalnum() or \
            code in "dDsSwWbB" else ""
        raise QueryError(f"unknown escape sequence \\{code} in a string{hint}", token.start)

    return _ESCAPES.sub(escape, body)


_ESCAPES = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}|.)", re.S)
_SIMPLE = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
