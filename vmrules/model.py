"""The typed model of a rule set: frozen dataclasses, each carrying its Location."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vmrules import expr
from vmrules.errors import Location

DEFAULT_RANGE_MS = 3_600_000
DEFAULT_STEP_MS = 60_000
DEFAULT_TIMEOUT_MS = 30_000
DEFAULT_MAX_POINTS = 11_000
CLEAR_LOOKBACK_MS = 3_600_000     # default lookback of a rule with a `clear` threshold
MAX_REQUESTS_PER_RULE = 1_000    # a window split into more requests than this is refused (e.g. 1 point per request)
WATERMARK_TABLE = "vmrules_watermarks"   # databases: incremental runs keep each rule's watermark in this table
ROW_COLUMNS = ("rule", "metric", "labels", "timestamp", "value", "severity", "alert")
EPISODE_COLUMNS = ("rule", "metric", "labels", "severity", "start", "end", "peak", "last_value", "samples")
PARTITION_TIMES = {"date": "%Y-%m-%d", "hour": "%-H"}    # partition keys taken from a row's time (UTC)
PARTITION_COLUMNS = ("rule", "metric", "severity", "alert")   # the row columns a dataset may be partitioned by
MAX_PARTITIONS = 1024             # partitions one run may write into a dataset


def reserved_table(name: str) -> str | None:
    """Why a table may not have this name (None: it may); SQLite compares names case-blind. In PostgreSQL
    the watermarks live beside the table, in its schema."""
    if name.rpartition(".")[2].lower() == WATERMARK_TABLE:
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
    dialect: str = "metricsql"           # promql | metricsql: how validate checks the queries
    dialect_given: bool = False

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
    def shape(self) -> str:
        """rows (one per sample) or episodes (one per alert episode; what an alertmanager target takes)."""
        return "episodes" if self.type == "alertmanager" else str(self.options.get("shape", "rows"))

    @property
    def columns(self) -> tuple[str, ...]:
        default = EPISODE_COLUMNS if self.shape == "episodes" else ROW_COLUMNS
        return tuple(self.options.get("columns") or default)

    @property
    def partition_by(self) -> tuple[str, ...]:
        """The keys of a partitioned dataset (`path` is its root folder); empty for a single file."""
        return tuple(self.options.get("partition_by") or ())

    @property
    def time_column(self) -> str:
        """The column that `date` and `hour` partitions are taken from."""
        return "start" if self.shape == "episodes" else "timestamp"


def partition_problems(keys: tuple[str, ...], columns: tuple[str, ...], time_column: str) -> list[tuple[int, str]]:
    """Why each key (by its index) cannot partition rows that have these columns: a key is `date` or `hour`
    of the time column, one of PARTITION_COLUMNS, or a label (from `labels` or its own column)."""
    out = []
    for i, key in enumerate(keys):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            out.append((i, f"{key!r} is not a valid name: use letters, digits and _, not starting with a digit"))
        elif key in keys[:i]:
            out.append((i, f"{key} is listed twice"))
        elif key in PARTITION_TIMES:
            if time_column not in columns:
                out.append((i, f"{key} is taken from the {time_column} column: add it to columns"))
            elif key in columns:
                out.append((i, f"{key} is the {key} of the {time_column} column, and its folder name would hide "
                               f"the label column {key}: leave one of them out"))
        elif key in ROW_COLUMNS + EPISODE_COLUMNS:
            if key not in PARTITION_COLUMNS:
                out.append((i, f"{key} cannot name a folder: partition by date, hour, "
                               f"{', '.join(PARTITION_COLUMNS)} or a label"))
            elif key not in columns:
                out.append((i, f"{key} is not a column of this target: add it to columns"))
        elif key not in columns and "labels" not in columns:
            out.append((i, f"label {key} is taken from the labels column or a column of its own: add one to columns"))
    return out


@dataclass(frozen=True)
class Condition:
    """`value OP X` (op from thresholds.COMPARISONS) or an expression (`op` "when")."""

    op: str
    value: float | None
    when: expr.Node | None


@dataclass(frozen=True)
class Threshold:
    """A severity and the condition that gives it (`op` is a comparison, or `when`).

    `for_ms`: the condition must have held that long; `keep_firing_ms`: once firing it
    stays so while the condition has been false for less than that; `clear`: once
    firing it stays so until this condition holds (hysteresis).
    """

    severity: str
    op: str                      # an operator of thresholds.COMPARISONS, or "when"
    value: float | None
    when: expr.Node | None
    for_ms: int
    location: Location
    keep_firing_ms: int = 0
    clear: Condition | None = None

    @property
    def condition(self) -> Condition:
        return Condition(self.op, self.value, self.when)

    @property
    def stateful(self) -> bool:
        """Whether rows depend on earlier samples of the series (not only on their own value)."""
        return self.for_ms > 0 or self.keep_firing_ms > 0 or self.clear is not None


SEVERITY_LABEL = "{{ severity }}"     # a threshold's severity taken from the series' (rendered) `severity` label


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
    unit: str | None = None               # bytes | percent | ratio | seconds: how values read (units.py)
    lookback_ms: int | None = None        # None: from the thresholds (see `warmup_ms`)
    episodes: bool = False                # routes to a target that takes episodes (set when the set is loaded)
    query_location: Location | None = None   # where the query text starts in its file
    origin: str = ""                      # "prometheus": a rule of a Prometheus/vmalert rule file
    label_templates: Mapping[str, str] = field(default_factory=dict)   # Go templates, rendered per sample
    annotations: Mapping[str, str] = field(default_factory=dict)       # Go templates, for alertmanager targets
    external_labels: Mapping[str, str] = field(default_factory=dict)   # $externalLabels; added where absent

    @property
    def warmup_ms(self) -> int:
        """How much data before a window the alert state at its start needs, on the step.

        The longest `for` + `keep_firing_for` of the thresholds; with a `clear`, at least
        CLEAR_LOOKBACK_MS; with episodes, one step more, so that an episode that ends
        at the window's first point is known to it.
        `lookback:` overrides it.
        """
        if self.lookback_ms is not None:
            need = self.lookback_ms
        else:
            need = max((t.for_ms + t.keep_firing_ms for t in self.thresholds), default=0)
            if any(t.clear is not None for t in self.thresholds):
                need = max(need, CLEAR_LOOKBACK_MS)
            if self.episodes and self.thresholds:    # the state one step before the window, to see an end at its start
                need = self.step_ms + max(t.for_ms + t.keep_firing_ms for t in self.thresholds)
        return -(-need // self.step_ms) * self.step_ms

    def state_fingerprint(self) -> str:
        """What the carried alert state of this rule depends on; state kept under another is not used."""
        import hashlib

        parts = (self.query, self.step_ms, self.instant, self.valid_min, self.valid_max, repr(self.where),
                 sorted(self.labels.items()), sorted(self.label_templates.items()),
                 sorted(self.external_labels.items()),
                 [(t.severity, t.op, t.value, repr(t.when), t.for_ms, t.keep_firing_ms, repr(t.clear))
                  for t in self.thresholds])
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


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
    prometheus_files: tuple[str, ...] = ()    # Prometheus/vmalert rule files (`groups:`) among `files`

    def rule(self, name: str) -> Rule:
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(name)


def series_text(metric: str, labels: Mapping[str, str]) -> str:
    """A series as people write it: `metric{a="x", b="y"}` (`__name__` among the labels is the metric)."""
    name = labels.get("__name__", metric)
    pairs = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in labels.items() if k != "__name__")
    return f"{name}{{{pairs}}}"


def key_text(key: str) -> str:
    """A series key (`metric + "\\x00" + labels JSON`, as evaluate.rows.series_keys makes it) as people write it."""
    metric, _, labels = key.partition("\x00")
    return series_text(metric, json.loads(labels) if labels else {})
