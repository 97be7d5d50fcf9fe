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


# Possessive quantifiers: no backtracking, so a long run of digits costs its length once, not its cube.
_DURATION = r"(?:\d++(?:\.\d++)?+(?:ms|[smhdwyi]))++"
_SUFFIXED = r"(?:\d++(?:\.\d++)?+|\.\d++)(?i:[kmgt]i?+b?+)"         # MetricsQL: 1Ki, 2MB, 1.5GiB, 1k
_NUMBER = r"0[xX][0-9a-fA-F]++|0[oO][0-7]++|0[bB][01]++|(?:\d++(?:_\d++)*+(?:\.\d*+)?+|\.\d++)(?:[eE][-+]?+\d++)?+"
_SPACE = r"(?P<space>(?:[ \t\n\r\f\v]++|\#[^\n]*+)++)"       # Go's blanks, not Unicode's (a pasted NBSP is an error)
_IDENT = r"|(?P<ident>(?:[^\W\d]|:|\\.)[\w:.]*+(?:\\.[\w:.]*+)*+)"
_OP = r"|(?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=(){}\[\],@])"
_STR = r'|(?P<str>"[^"\\\n]*+(?:\\.[^"\\\n]*+)*+"' r"|'[^'\\\n]*+(?:\\.[^'\\\n]*+)*+'|`[^`]*+`)"


def _tokens(end: str) -> re.Pattern[str]:
    """The token pattern; `end` follows a number: PromQL wants no letter right after one, MetricsQL ends the
    number there (`100unless x`)."""
    return re.compile(_SPACE + _IDENT + _OP + _STR +      # the frequent kinds first
                      rf"|(?=[\d.$])(?:(?P<dur>{_DURATION}|\$__\w++){end}"
                      rf"|(?P<suffixed>{_SUFFIXED}){end}"
                      rf"|(?P<num>{_NUMBER}){end})")


_TOKENS = _tokens(r"(?![\w.])")
_METRICSQL_TOKENS = _tokens(r"(?![\d.])")
_PROMQL_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_STRING_START = re.compile(r"[\"'`]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def tokenize(query: str, metricsql: bool) -> list[Token]:
    """The tokens of `query`, ending with an `eof` token. Where a character starts no token (or one the dialect
    refuses), a `bad` token carries the message, so that an earlier syntax error is still reported first."""
    out: list[Token] = []
    append = out.append
    pos = 0
    new = tuple.__new__
    checked = _CHECKED if metricsql else _CHECKED_PROMQL
    pattern = _METRICSQL_TOKENS if metricsql else _TOKENS
    for m in iter(pattern.scanner(query).match, None):  # type: ignore[attr-defined]  # anchored, stops at a gap
        start, pos = m.span()
        kind = m.lastgroup
        if kind == "space":
            continue
        if kind in checked:
            try:
                kind = _check(kind, m.group(), start, metricsql)
            except QueryError as exc:
                append(new(Token, ("bad", exc.message, exc.offset)))
                break
        append(new(Token, (kind, m.group(), start)))
    else:
        if pos < len(query):
            append(new(Token, ("bad", _bad_character(query, pos), pos)))
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
        word = re.match(r"[\w.]{1,40}", query[pos:])
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
        if code[0] in "xuU" and len(code) > 1 or len(code) == 3 and code.isdigit():
            point = int(code, 8) if code.isdigit() else int(code[1:], 16)
            if code.isdigit() and point > 255:
                raise QueryError(f"octal escape \\{code} is above 255", token.start)
            if point > 0x10FFFF or 0xD800 <= point <= 0xDFFF:
                raise QueryError(f"escape sequence \\{code} is not a valid Unicode code point", token.start)
            return chr(point)
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
