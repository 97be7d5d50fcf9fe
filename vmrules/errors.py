"""Locations and the errors a user can cause, each pointing at a file, line and column."""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_EXCERPT = 40


@dataclass(frozen=True, order=True)
class Location:
    """A 1-based position in a rule file, printed `path:line:col`."""

    path: str
    line: int = 1
    col: int = 1

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}"

    def shifted(self, cols: int) -> Location:
        """The same line, `cols` columns further right."""
        return Location(self.path, self.line, self.col + cols)


def excerpt(value: object, limit: int = MAX_EXCERPT) -> str:
    """A value as a message may quote it: its repr, credentials in URLs masked, cut to `limit` characters
    (a file that is not a rule file, say ~/.git-credentials, must not be printed back)."""
    return cut(repr(value), limit)


def cut(text: str, limit: int) -> str:
    """`text` with credentials in URLs masked, at most `limit` characters."""
    text = re.sub(r"(://)[^/@\s'\"]*@", r"\1***@", text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the rule files."""

    location: Location
    message: str
    level: str = "error"        # error | warning (a lint; fails only `validate --strict`) | note (`validate -v`)

    def __str__(self) -> str:
        return f"{self.location}: {self.level}: {self.message}"


class VmrulesError(Exception):
    """Base of every error vmrules raises on purpose."""


class HttpError(VmrulesError):
    """A request that failed for good (datasource or service); the message is safe to print."""


class AnswerTooLarge(HttpError):
    """An answer that inflates beyond the bounds (a gzip bomb); never retried."""


class ConfigError(VmrulesError):
    """The rule files are invalid; carries every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class RuleError(VmrulesError):
    """A rule failed at run time (fetch, evaluate or export)."""

    def __init__(self, rule: str, message: str):
        self.rule = rule
        self.message = message
        super().__init__(f"rule {rule}: {message}")


class UsageError(VmrulesError):
    """A wrong argument of the library API or the command line."""
