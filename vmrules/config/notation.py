"""Input series of rule unit tests: `name{label="value"}` and the expanding value notation.

    1 2 3          three values
    50+10x6        50 60 70 80 90 100 110    (a+bxn: n+1 values)
    95x3           95 95 95 95               (axn: n+1 values)
    _  stale       no sample at this point
    _x3            three points without a sample
    NaN Inf -Inf   as written
"""

from __future__ import annotations

import json
import math
import re

from vmrules.errors import VmrulesError

MAX_POINTS = 100_000          # a test is small; this keeps a typo such as 1x1000000000 from eating memory

_NAME = re.compile(r"\s*([A-Za-z_:][A-Za-z0-9_:]*)?\s*")
_LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')\s*(,?)')
_NUMBER = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|Inf|inf|NaN|nan)"
_EXPAND = re.compile(rf"^({_NUMBER})(?:([-+])({_NUMBER}))?x(\d+)$")
_MISSING = re.compile(r"^(?:_|stale)(?:x(\d+))?$")


class NotationError(VmrulesError, ValueError):
    """A mistake in a series or values string, at `offset` (0-based) within it."""

    def __init__(self, message: str, offset: int = 0):
        super().__init__(message)
        self.message, self.offset = message, offset


def parse_series(text: str) -> dict[str, str]:
    """`name{a="x", b='y'}` as labels (`__name__` for the name); only `=` matchers."""
    m = _NAME.match(text)
    assert m is not None
    labels = {"__name__": m.group(1)} if m.group(1) else {}
    pos = m.end()
    if pos < len(text) and text[pos] == "{":
        pos += 1
        while True:
            close = re.compile(r"\s*\}\s*$").match(text, pos)
            if close:
                pos = len(text)
                break
            lm = _LABEL.match(text, pos)
            if not lm:
                raise NotationError('expected label="value" or }', pos)
            raw = lm.group(2)
            value = json.loads(raw) if raw[0] == '"' else raw[1:-1].replace("\\'", "'")
            if lm.group(1) in labels:
                raise NotationError(f"label {lm.group(1)} given twice", lm.start(1))
            labels[lm.group(1)] = value
            pos = lm.end()
            if not lm.group(3) and not re.compile(r"\s*\}").match(text, pos):
                raise NotationError("expected , or }", pos)
    if pos < len(text):
        raise NotationError("expected a metric name and {labels}", pos)
    if not labels:
        raise NotationError("a series needs a name or labels")
    return labels


def parse_values(text: str) -> list[float | None]:
    """The expanding notation as values, None where there is no sample."""
    out: list[float | None] = []
    for m in re.finditer(r"\S+", text):
        token = m.group()
        out += _expand(token, m.start())
        if len(out) > MAX_POINTS:
            raise NotationError(f"more than {MAX_POINTS} values", m.start())
    return out


def _expand(token: str, offset: int) -> list[float | None]:
    if (m := _MISSING.match(token)) is not None:
        return [None] * (int(m.group(1)) if m.group(1) else 1)
    if (m := _EXPAND.match(token)) is not None:
        start, n = _number(m.group(1)), int(m.group(4))
        if n > MAX_POINTS:
            raise NotationError(f"more than {MAX_POINTS} values", offset)
        delta = _number(m.group(3)) * (-1 if m.group(2) == "-" else 1) if m.group(2) else 0.0
        return [start + i * delta if delta else start for i in range(n + 1)]
    if re.fullmatch(_NUMBER, token):
        return [_number(token)]
    raise NotationError(f"{token!r} is not a value: use numbers, a+bxn, axn, _ or stale", offset)


def _number(text: str) -> float:
    low = text.lower().lstrip("+")
    if low in ("inf", "-inf"):
        return math.inf if low == "inf" else -math.inf
    return float(text)
