"""Printing problems and run summaries for people and machines."""

from __future__ import annotations

import json
from collections.abc import Iterable

from vmrules.errors import Problem

FORMATS = ("text", "json", "github")


def format_problems(problems: Iterable[Problem], fmt: str = "text") -> str:
    """Problems as `path:line:col: error: msg` lines, a JSON document, or GitHub annotations."""
    problems = list(problems)
    if fmt == "json":
        return json.dumps({"valid": not problems, "problems": [
            {"path": p.location.path, "line": p.location.line, "col": p.location.col, "message": p.message}
            for p in problems]}, indent=2)
    if fmt == "github":
        return "\n".join(f"::error file={_gh(p.location.path)},line={p.location.line},col={p.location.col}"
                         f"::{_gh(p.message)}" for p in problems)
    return "\n".join(str(p) for p in problems)


def _gh(text: str) -> str:
    """Escape a value for a GitHub workflow command."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A").replace(":", "%3A").replace(",", "%2C")
