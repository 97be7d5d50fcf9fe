"""Go text/template, as Prometheus alert labels and annotations use it: checked offline, action by action.

`check(text)` gives the first problem (0-based offset, message) or None: unbalanced actions, unterminated
strings, an `end` without its `if`/`range`/`with`, functions that are neither Go's nor Prometheus', variables
that are neither the alert's nor declared (Go refuses the template), and fields the alert's data does not have
(the template fails on every alert).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

GO_FUNCTIONS = frozenset({"and", "or", "not", "len", "index", "slice", "print", "printf", "println", "eq", "ne",
                          "lt", "le", "gt", "ge", "html", "js", "urlquery", "call"})
# Prometheus' template functions (template/template.go); the ones vmrules renders are RENDERED.
PROMETHEUS_FUNCTIONS = frozenset({
    "query", "first", "label", "value", "strvalue", "args", "tmpl", "safeHtml", "match", "title", "toUpper",
    "toLower", "graphLink", "tableLink", "sortByLabel", "humanize", "humanize1024", "humanizeDuration",
    "humanizePercentage", "humanizeTimestamp", "toTime", "toDuration", "pathPrefix", "externalURL", "parseDuration",
    "stripPort", "stripDomain", "reReplaceAll", "now",
})
# vmalert's own (app/vmalert/templates/funcs.go): escaping and time helpers beside Prometheus' set.
VMALERT_FUNCTIONS = frozenset({"queryEscape", "pathEscape", "jsonEscape", "quotesEscape", "crlfEscape", "htmlEscape",
                               "parseDurationTime", "humanizeTimestamp"})
RENDERED = frozenset({"humanize", "humanize1024", "humanizePercentage", "humanizeDuration", "printf", "toUpper",
                      "toLower", "title", "reReplaceAll", "eq", "ne", "lt", "le", "gt", "ge", "and", "or", "not",
                      "len", "print"})
# The alert's data: its fields, and what each holds (FIELD_KINDS: a map of strings takes one key after it, the
# others no field; time values, not listed, have methods). Prometheus' first, then vmalert's.
FIELD_KINDS = {"Labels": "map", "ExternalLabels": "map", "Value": "number", "ExternalURL": "string",
               "Expr": "string", "Type": "string", "AlertID": "number", "GroupID": "number", "IsPartial": "boolean",
               "ActiveAt": "", "For": ""}
# The variables both declare before a template (`{{ $labels := .Labels }}`...), and the field each holds.
VARIABLES = {"$labels": "Labels", "$externalLabels": "ExternalLabels", "$externalURL": "ExternalURL",
             "$value": "Value", "$expr": "Expr", "$type": "Type", "$alertID": "AlertID", "$groupID": "GroupID",
             "$activeAt": "ActiveAt", "$for": "For", "$isPartial": "IsPartial"}
_OPENERS = frozenset({"if", "range", "with", "define", "block"})
_TOKEN = re.compile(r'\s+|"(?:[^"\\\n]|\\.)*"|`[^`]*`|\'(?:[^\'\\\n]|\\.)+\'|:=|=|\||\(|\)|,'
                    r"|\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*|(?:\.[A-Za-z0-9_]+)+|\."
                    r"|[-+]?(?:0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+"
                    r"|[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?|\.[0-9]+)i?"
                    r"|[A-Za-z_][A-Za-z0-9_]*")


class _Scopes:
    """The variables in scope, per open control structure (`define` and `block` see only `$`), and whether dot
    is still the alert's data (not inside `range` or `with`)."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, set[str]]] = [("", {"$", *VARIABLES})]
        self.declared: set[str] = set()

    def open(self, word: str) -> None:
        self.frames.append((word, {"$"} if word in ("define", "block") else set()))

    def close(self) -> None:
        self.frames.pop()

    def declare(self, name: str) -> None:
        self.frames[-1][1].add(name)
        self.declared.add(name)

    def known(self, name: str) -> bool:
        for word, names in reversed(self.frames):
            if name in names:
                return True
            if word in ("define", "block"):
                return False
        return False

    def dot_is_data(self) -> bool:
        return all(word == "if" for word, _ in self.frames[1:])



def check(text: str, functions: frozenset[str] = GO_FUNCTIONS | PROMETHEUS_FUNCTIONS | VMALERT_FUNCTIONS) \
        -> tuple[int, str] | None:
    """The first problem of the template `text` (its 0-based offset and a message), or None."""
    stack: list[tuple[str, int]] = []
    scopes = _Scopes()
    pos = 0
    while (start := text.find("{{", pos)) >= 0:
        inner = start + 2
        if text.startswith("/*", inner) or text.startswith("- /*", inner):
            close = text.find("*/", inner)
            if close < 0 or not re.match(r"\s*-?}}", text[close + 2:]):
                return start, "unclosed comment: {{/* needs */}}"
            pos = text.find("}}", close) + 2
            continue
        end = _action_end(text, inner)
        if end < 0:
            return start, "unclosed action: {{ without }}"
        body_start = inner + (1 if text.startswith("-", inner) and text[inner + 1:inner + 2].isspace() else 0)
        body_end = end - (1 if text[end - 1:end] == "-" and text[end - 2:end - 1].isspace() else 0)
        problem = _action(text, body_start, body_end, stack, functions, scopes)
        if problem is not None:
            return problem
        pos = end + 2
    if stack:
        word, at = stack[-1]
        return at, f"{{{{ {word} }}}} has no {{{{ end }}}}"
    return None


def _action_end(text: str, i: int) -> int:
    """The offset of the `}}` closing the action whose body starts at `i` (strings skipped), or -1."""
    n = len(text)
    while i < n:
        c = text[i]
        if c in "\"'`":
            m = re.compile(r'"(?:[^"\\\n]|\\.)*"|`[^`]*`|\'(?:[^\'\\\n]|\\.)+\'').match(text, i)
            if m is None:
                return -1
            i = m.end()
            continue
        if text.startswith("}}", i):
            return i
        i += 1
    return -1


def _action(text: str, start: int, end: int, stack: list[tuple[str, int]],
            functions: frozenset[str], scopes: _Scopes) -> tuple[int, str] | None:
    tokens = []
    pos = start
    while pos < end:
        m = _TOKEN.match(text, pos, end)
        if m is None:
            return pos, f"unexpected {text[pos]!r} in a template action"
        if not m.group().isspace():
            tokens.append((m.group(), pos))
        pos = m.end()
    if not tokens:
        return start, "empty template action {{ }}"
    word, at = tokens[0]
    if word in ("end", "else", "break", "continue"):
        if word == "end":
            if not stack:
                return at, "{{ end }} without its {{ if }}, {{ range }} or {{ with }}"
            stack.pop()
            scopes.close()
        elif not stack:
            return at, f"{{{{ {word} }}}} outside {{{{ if }}}}, {{{{ range }}}} or {{{{ with }}}}"
        rest = tokens[2:] if word == "else" and len(tokens) > 1 and tokens[1][0] in ("if", "with") else tokens[1:]
        return _pipeline(_declared(rest, scopes), functions, scopes) if word == "else" else None
    if word in _OPENERS:
        stack.append((word, at))
        if word in ("define", "block"):
            scopes.open(word)
            return None
        if len(tokens) == 1:
            return at, f"{{{{ {word} }}}} needs a pipeline"
        outer = scopes.dot_is_data()
        scopes.open(word)
        return _pipeline(_declared(tokens[1:], scopes), functions, scopes, outer)
    if word == "template":
        return None
    return _pipeline(_declared(tokens, scopes), functions, scopes)


def _declared(tokens: list[tuple[str, int]], scopes: _Scopes) -> list[tuple[str, int]]:
    """The pipeline after its declarations (`$x :=`, `$i, $e :=`, `$x =`), which come into scope."""
    words = [w for w, _ in tokens[:4]]
    for n in (1, 2):
        names = words[:2 * n - 1:2]
        if len(words) > 2 * n - 1 and words[2 * n - 1] in (":=", "=") and all(w.startswith("$") for w in names) \
                and (n == 1 or words[1] == ","):
            for name in names:
                scopes.declare(name)
            return tokens[2 * n:]
    return tokens


def _reference(word: str, dot_is_data: bool, scopes: _Scopes) -> str | None:
    """What is wrong with a variable or field reference, or None."""
    parts = word.split(".")
    if word.startswith("$"):
        name, fields = parts[0], parts[1:]
        if not scopes.known(name):
            return f"undefined variable {name!r}{_close(name, [*VARIABLES, *scopes.declared])}: a template has " \
                   "$labels, $value, $externalLabels, $externalURL (vmalert's also $expr, $alertID, $groupID, " \
                   "$activeAt, $for, $type, $isPartial) and the variables it declares"
        if name == "$":
            return _fields(word, fields)
        if name in VARIABLES and name not in scopes.declared and fields:
            return _fields(word, [VARIABLES[name], *fields], name)
        return None
    if dot_is_data and parts[1:] and not parts[1][:1].isdigit():
        return _fields(word, parts[1:])
    return None


def _close(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _fields(word: str, fields: list[str], head: str = "") -> str | None:
    if not fields or not fields[0]:
        return None
    kind = FIELD_KINDS.get(fields[0])
    if kind is None:
        return f"{word!r}: the alert's data has no field {fields[0]!r}{_close(fields[0], FIELD_KINDS)} (it has " \
               ".Labels, .Value, .ExternalLabels, .ExternalURL; vmalert's also .Expr, .AlertID, .GroupID, .ActiveAt, " \
               ".For, .Type, .IsPartial)"
    held = (head or "." + fields[0]) + (f".{fields[1]}" if kind == "map" and fields[1:] else "")
    rest = fields[2:] if kind == "map" else fields[1:]
    if rest and kind:
        what = "a label value, a string" if kind == "map" else f"a {kind}"
        return f"{word!r}: {held} is {what}, with no field {rest[0]!r}"
    return None


def _pipeline(tokens: list[tuple[str, int]], functions: frozenset[str], scopes: _Scopes,
              dot_is_data: bool | None = None) -> tuple[int, str] | None:
    depth = 0
    dot = scopes.dot_is_data() if dot_is_data is None else dot_is_data
    after = -1                                  # where the last `)` ends: `(pipeline).Field` is no field of dot
    for word, at in tokens:
        if word[0] in "$." and at != after and (why := _reference(word, dot, scopes)) is not None:
            return at, why
        after = at + 1 if word == ")" else -1
        if word == "(":
            depth += 1
        elif word == ")":
            depth -= 1
            if depth < 0:
                return at, "unexpected ) in a template action"
        elif word[0].isalpha() or word[0] == "_":
            if word in ("true", "false", "nil"):
                continue
            if word not in functions:
                return at, f"function {word!r} not defined (template functions: Go's, Prometheus' and vmalert's)"
    if depth:
        return tokens[-1][1], "unclosed ( in a template action"
    return None
