"""Go text/template, as Prometheus alert labels and annotations use it: checked offline, action by action.

`check(text)` gives the first problem (0-based offset, message) or None: unbalanced actions, unterminated
strings, an `end` without its `if`/`range`/`with`, and functions that are neither Go's nor Prometheus'.
"""

from __future__ import annotations

import re

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
_OPENERS = frozenset({"if", "range", "with", "define", "block"})
_TOKEN = re.compile(r'\s+|"(?:[^"\\\n]|\\.)*"|`[^`]*`|\'(?:[^\'\\\n]|\\.)+\'|:=|=|\||\(|\)|,'
                    r"|\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*|(?:\.[A-Za-z0-9_]+)+|\."
                    r"|[-+]?(?:0[xX][0-9a-fA-F_]+|[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?|\.[0-9]+)"
                    r"|[A-Za-z_][A-Za-z0-9_]*")


def check(text: str, functions: frozenset[str] = GO_FUNCTIONS | PROMETHEUS_FUNCTIONS | VMALERT_FUNCTIONS) \
        -> tuple[int, str] | None:
    """The first problem of the template `text` (its 0-based offset and a message), or None."""
    stack: list[tuple[str, int]] = []
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
        problem = _action(text, body_start, body_end, stack, functions)
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
            functions: frozenset[str]) -> tuple[int, str] | None:
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
        elif not stack:
            return at, f"{{{{ {word} }}}} outside {{{{ if }}}}, {{{{ range }}}} or {{{{ with }}}}"
        rest = tokens[2:] if word == "else" and len(tokens) > 1 and tokens[1][0] in ("if", "with") else tokens[1:]
        return _pipeline(rest, functions) if word == "else" else None
    if word in _OPENERS:
        stack.append((word, at))
        if word in ("define", "block"):
            return None
        return _pipeline(tokens[1:], functions) if len(tokens) > 1 else (at, f"{{{{ {word} }}}} needs a pipeline")
    if word == "template":
        return None
    return _pipeline(tokens, functions)


def _pipeline(tokens: list[tuple[str, int]], functions: frozenset[str]) -> tuple[int, str] | None:
    depth = 0
    for word, at in tokens:
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
