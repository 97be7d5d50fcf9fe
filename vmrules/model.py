"""The typed model of a rule set: frozen dataclasses, each carrying its Location."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vmrules import expr
from vmrules.errors import Location

DEFAULT_RANGE_MS = 3_600_000
DEFAULT_STEP_MS = 60_000
DEFAULT_TIMEOUT_MS = 30_000
DEFAULT_MAX_POINTS = 11_000
MAX_REQUESTS_PER_RULE = 1_000    # a window split into more requests than this is refused (e.g. 1 point per request)
WATERMARK_TABLE = "vmrules_watermarks"   # SQLite: incremental runs keep each rule's watermark in this table
ROW_COLUMNS = ("rule", "metric", "labels", "timestamp", "value", "severity", "alert")


def reserved_table(name: str) -> str | None:
    """Why a SQLite table may not have this name (None: it may); SQLite compares names case-blind."""
    if name.lower() == WATERMARK_TABLE:
        return f"table name {name!r} is reserved: vmrules keeps the watermarks of incremental runs in it"
    return None


def too_many_requests(points: int, max_points: int) -> str | None:
    """Why a window of `points` points may not be read in requests of `max_points` (None: it may)."""
    n = -(-points // max(1, max_points))
    if n <= MAX_REQUESTS_PER_RULE:
        return None
    return (f"{points:,} points need {n:,} requests of at most {max_points:,} point{'s' * (max_points != 1)} per "
            f"series (max_points_per_series), more than the {MAX_REQUESTS_PER_RULE:,} allowed per rule")


@dataclass(frozen=True)
class Datasource:
    """A Prometheus-compatible query API (or `file:PATH`). Secrets stay as `${VAR}` until apply."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    bearer_token: str | None = None
    basic_auth: tuple[str, str] | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    ca_file: str | None = None
    tls_insecure: bool = False
    max_points_per_series: int = DEFAULT_MAX_POINTS
    location: Location | None = None

    @property
    def is_file(self) -> bool:
        return self.url.startswith("file:")


@dataclass(frozen=True)
class Target:
    """An export target; `options` are the YAML keys other than `type`."""

    name: str
    type: str
    options: Mapping[str, Any]
    location: Location
    locations: Mapping[str, Location] = field(default_factory=dict)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.options.get("columns") or ROW_COLUMNS)


@dataclass(frozen=True)
class Threshold:
    """A severity and the condition that gives it (`op` is a comparison, or `when`)."""

    severity: str
    op: str                      # ">", "<", ">=", "<=" or "when"
    value: float | None
    when: expr.Node | None
    for_ms: int
    location: Location


@dataclass(frozen=True)
class Route:
    """Rows matching `when` (every row when None) go to the targets named in `to`."""

    to: tuple[str, ...]
    when: expr.Node | None
    location: Location


@dataclass(frozen=True)
class Rule:
    """A query with its window, filters, thresholds and routes."""

    name: str
    query: str
    location: Location
    datasource: Datasource | None = None
    range_ms: int = DEFAULT_RANGE_MS
    step_ms: int = DEFAULT_STEP_MS
    instant: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    valid_min: float | None = None
    valid_max: float | None = None
    where: expr.Node | None = None
    thresholds: tuple[Threshold, ...] = ()
    routes: tuple[Route, ...] = ()
    description: str = ""

    def label_names(self) -> set[str]:
        """Series labels read by `where`, threshold and route expressions."""
        nodes = [self.where] + [t.when for t in self.thresholds] + [r.when for r in self.routes]
        return set().union(*(expr.label_names(n) for n in nodes if n is not None))


@dataclass(frozen=True)
class InputSeries:
    """One series a rule test feeds in place of the query's answer; None: no sample at that point."""

    labels: Mapping[str, str]
    values: tuple[float | None, ...]


@dataclass(frozen=True)
class RuleTest:
    """A rule unit test: input series and, per target, the rows (time in ms from 0) or counts expected."""

    name: str
    rule: str
    interval_ms: int | None
    inputs: tuple[InputSeries, ...]
    expect: Mapping[str, list[dict[str, Any]] | dict[str, Any]]
    location: Location
    expect_locations: Mapping[str, Location] = field(default_factory=dict)
    rule_location: Location | None = None


@dataclass(frozen=True)
class RuleSet:
    """Rules and targets loaded together (names are global across files), and the rules' tests."""

    rules: tuple[Rule, ...]
    targets: Mapping[str, Target]
    files: tuple[str, ...] = ()
    tests: tuple[RuleTest, ...] = ()

    def rule(self, name: str) -> Rule:
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(name)
