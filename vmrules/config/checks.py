"""Checks of one rule file (schema + semantics), producing its part of the model.

They depend on nothing outside the file, so large rule sets are checked in
parallel processes; names across files are matched afterwards (validate.py).
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from vmrules import expr
from vmrules.config import schema
from vmrules.config.lints import lint_headers, lint_rule
from vmrules.config.load import LoadedFile, is_prometheus_data, load_file
from vmrules.config.promrules import build_rules, check_prometheus_file
from vmrules.durations import MAX_DURATION_MS, format_duration_ms, parse_duration_ms
from vmrules.errors import ConfigError, Location, Problem, excerpt
from vmrules.model import (
    DEFAULT_MAX_POINTS,
    DEFAULT_RANGE_MS,
    DEFAULT_STEP_MS,
    DEFAULT_TIMEOUT_MS,
    Condition,
    Datasource,
    InputSeries,
    Route,
    Rule,
    RuleTest,
    Target,
    Threshold,
    partition_problems,
    too_many_requests,
)
from vmrules.net.http import DSN_SCHEMES
from vmrules.sources import normalize_url, url_problem
from vmrules.templates import TemplateError, compile_template, render
from vmrules.thresholds import COMPARISONS, CONDITION_KEYS

UPSERT_KEY = ("rule", "labels", "timestamp")
MAX_PROMETHEUS_FILES = 10_000        # files one prometheus_rules pattern may name
EPISODE_KEY = ("rule", "metric", "labels", "severity", "start")
TABLE_TYPES = ("sqlite", "postgres")      # database targets: modes append, upsert, replace; episodes upserted
SERVICE_TYPES = ("webhook", "alertmanager", "victoriametrics")   # built-in targets sent over HTTP(S)
T = TypeVar("T")
_LONGEST = f"durations are at most {MAX_DURATION_MS // 604_800_000}w (about 292 years)"
Checks = Generator[Problem, None, T]   # yields problems, returns what it built


class _AnyLabels(dict[str, str]):
    """Series labels are unknown until apply: any label reads as a sample value."""

    def __missing__(self, key: str) -> str:
        return "example"


@dataclass
class FileOutcome:
    """What one file contributes: its problems, and its targets, rules and route references by name."""

    path: str
    problems: list[Problem] = field(default_factory=list)
    targets: list[tuple[str, Location, Target | None]] = field(default_factory=list)
    rules: list[tuple[str, Location, Rule | None]] = field(default_factory=list)
    route_refs: list[tuple[str, str, Location]] = field(default_factory=list)
    tests: list[RuleTest] = field(default_factory=list)
    prometheus: bool = False                                 # a Prometheus/vmalert rule file (`groups:`)
    warnings: list[Problem] = field(default_factory=list)    # lints: reported, fail only `validate --strict`
    notes: list[Problem] = field(default_factory=list)       # what was not checked, for `validate -v`
    unread: set[str] = field(default_factory=set)   # "targets", "rules": names it may hold that could not be read
    routed: dict[str, Location] = field(default_factory=dict)   # Prometheus rule files (real paths) its
    #                                                             prometheus_rules run, and the pattern naming each


def check_files(paths: list[str]) -> list[FileOutcome]:
    """Load and check each file on its own."""
    return [check_file(p) for p in paths]


def check_file(path: str) -> FileOutcome:
    """Load and check one file; a file that cannot be parsed has just that problem."""
    try:
        f = load_file(path)
    except ConfigError as exc:
        return FileOutcome(path, exc.problems, unread={"targets", "rules"})
    if is_prometheus_data(f.data):
        found = f.problems + check_prometheus_file(f)
        out = FileOutcome(path, [p for p in found if p.level == "error"], prometheus=True)
        if not out.problems:                   # unrouted: `plan` runs them (with --datasource), `apply` says no
            rules, out.warnings = build_rules(f, None, (), DEFAULT_RANGE_MS, None)
            out.rules = [(r.name, r.location, r) for r in rules]
        out.warnings += [p for p in found if p.level == "warning"]
        return out
    problems, bad = schema.check(f)
    checker = _FileChecker(FileOutcome(path, f.problems + problems))
    scope = _FileScope(f, bad)
    checker.out.problems += list(checker.file_level(scope))
    checker.out.problems += list(checker.file_targets(scope))
    checker.out.problems += list(checker.file_rules(scope))
    checker.out.problems += list(checker.file_tests(scope))
    checker.out.problems += list(checker.file_prometheus(scope))
    return checker.out


def _text(spec: dict[str, Any], key: str, ms: int) -> str:
    """A duration as the rule wrote it (or as vmrules would)."""
    return spec[key] if isinstance(spec.get(key), str) else format_duration_ms(ms)


def _dialect_note(ds: Datasource | None) -> str:
    return "" if ds is not None and ds.dialect_given else " (the default dialect; set dialect: promql for a Prometheus)"


def _items(spec: dict[str, Any], key: str, s: _FileScope, path: tuple[Any, ...]) -> list[tuple[int, Any]]:
    """The well-formed items of a list-valued key."""
    value = spec.get(key)
    if not isinstance(value, list):
        return []
    return [(i, item) for i, item in enumerate(value) if isinstance(item, dict) and s.ok(path + (key, i))]


@dataclass
class _Routed:
    """A Prometheus rule file the prometheus_rules of a vmrules file name: the first place, and what applies."""

    name: str
    where: tuple[Any, ...]
    external: dict[str, str]
    routes: list[Route] = field(default_factory=list)
    entries: set[int] = field(default_factory=set)


@dataclass
class _FileScope:
    f: LoadedFile
    bad: set[tuple[Any, ...]]
    datasource: Datasource | None = None
    defaults: dict[str, Any] = field(default_factory=dict)

    def ok(self, path: tuple[Any, ...]) -> bool:
        """No schema problem at or below `path`."""
        if not self.bad:
            return True
        n = len(path)
        return not any(b[:n] == path for b in self.bad)


def _tee(checks: Checks[T], found: list[Problem]) -> Checks[T]:
    """`checks`, passing its problems on and keeping a copy in `found`."""
    try:
        problem = next(checks)
        while True:
            found.append(problem)
            yield problem
            problem = next(checks)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


class _FileChecker:
    def __init__(self, out: FileOutcome):
        self.out = out
        self.tree: Any = None        # the parsed query of the rule checked last

    # -- file level -------------------------------------------------------
    def file_level(self, s: _FileScope) -> Iterator[Problem]:
        data = s.f.data if isinstance(s.f.data, dict) else {}
        if "datasource" in data and s.ok(("datasource",)):
            ds = yield from self.datasource(s.f, ("datasource",), data["datasource"])
            s.datasource = ds
        if isinstance(data.get("defaults"), dict):       # its well-formed keys: the rules are checked all the same
            s.defaults = {k: v for k, v in data["defaults"].items() if s.ok(("defaults", k))}

    def datasource(self, f: LoadedFile, path: tuple[Any, ...], d: dict[str, Any]) -> Checks[Datasource]:
        url = d["url"]
        if "${" in url:
            yield Problem(f.where(path + ("url",)), "${VAR} is expanded only in headers, bearer_token "
                          "and basic_auth, not in the url")
        elif why := url_problem(url):
            yield Problem(f.where(path + ("url",)), f"datasource url {why}")
        timeout = yield from self.duration(f, path + ("timeout",), d.get("timeout"), DEFAULT_TIMEOUT_MS)
        self.out.warnings += lint_headers(f, path, d)
        auth = d.get("basic_auth")
        return Datasource(
            url=normalize_url(url),
            headers=dict(d.get("headers") or {}), bearer_token=d.get("bearer_token"),
            basic_auth=(auth["username"], auth.get("password", "")) if auth else None,
            params=dict(d.get("params") or {}), timeout_ms=timeout,
            ca_file=d.get("ca_file"), tls_insecure=bool(d.get("tls_insecure", False)),
            max_points_per_series=d.get("max_points_per_series", DEFAULT_MAX_POINTS),
            location=f.where(path), dialect=d.get("dialect", "metricsql"), dialect_given="dialect" in d)

    def duration(self, f: LoadedFile, path: tuple[Any, ...], text: str | None, default: int) -> Checks[int]:
        if text is None:
            return default
        ms = parse_duration_ms(text)
        if ms <= 0:
            yield Problem(f.where(path), f"{path[-1]} must be longer than 0")
            return default
        if ms > MAX_DURATION_MS:
            yield Problem(f.where(path), f"{path[-1]}: {excerpt(text)} is out of range: {_LONGEST}")
            return default
        return ms

    # -- targets ----------------------------------------------------------
    def file_targets(self, s: _FileScope) -> Iterator[Problem]:
        data = s.f.data if isinstance(s.f.data, dict) else {}
        targets: dict[str, Any] = data["targets"] if isinstance(data.get("targets"), dict) else {}
        if "targets" in data and not isinstance(data["targets"], dict):
            self.out.unread.add("targets")
        for name, spec in targets.items():
            path = ("targets", name)
            if not s.ok(path):
                self.out.targets.append((name, s.f.where_key(path), None))
                continue
            options = {k: v for k, v in spec.items() if k != "type"}
            target = Target(name, spec["type"], options, s.f.where_key(path),
                            {k: s.f.where(path + (k,)) for k in options})
            yield from self.target_options(s.f, path, target)
            self.out.warnings += lint_headers(s.f, path, spec)
            self.out.targets.append((name, target.location, target))

    def target_options(self, f: LoadedFile, path: tuple[Any, ...], t: Target) -> Iterator[Problem]:
        opts = t.options
        for key in ("path", "table", "metric", "body"):
            if "{" in str(opts.get(key, "")):      # plain text cannot be wrong Jinja2
                try:
                    compile_template(opts[key])
                except TemplateError as exc:
                    yield Problem(f.where(path + (key,)), f"target {t.name!r}: {key}: {exc}")
        for key, text in (opts.get("annotations") or {}).items():
            try:
                render(text, {"value": 1.0, "peak": 1.0, "labels": _AnyLabels(),
                              "rule": {"name": "example", "unit": None}})
            except TemplateError as exc:
                yield Problem(f.where(path + ("annotations", key)), f"target {t.name!r}: annotation {key}: {exc}")
        if "timeout" in opts:
            yield from self.duration(f, path + ("timeout",), opts["timeout"], DEFAULT_TIMEOUT_MS)
        if t.type in SERVICE_TYPES and (why := url_problem(str(opts.get("url", "")), ("http://", "https://"))):
            yield Problem(f.where(path + ("url",)), f"target {t.name!r}: url {why}")
        if t.type == "postgres" and isinstance(opts.get("dsn"), str):
            yield from self.dsn(f, path + ("dsn",), t.name, opts["dsn"])
        for i, why in partition_problems(t.partition_by, t.columns, t.time_column):
            yield Problem(f.where(path + ("partition_by", i)), f"target {t.name!r}: partition_by: {why}")
        if t.shape == "episodes":
            yield from self.episode_options(f, path, t)
        elif t.type in TABLE_TYPES and opts.get("mode") == "upsert" and "columns" in opts:
            missing = [c for c in UPSERT_KEY if c not in opts["columns"]]
            if missing:
                yield Problem(f.where(path + ("columns",)), f"target {t.name!r}: upsert needs the key columns "
                              f"rule, labels, timestamp; missing {', '.join(missing)}")
        if t.type in TABLE_TYPES and opts.get("mode") == "replace" and "rule" not in opts.get("columns", ["rule"]):
            yield Problem(f.where(path + ("columns",)), f"target {t.name!r}: replace swaps a rule's rows for "
                          "new ones, which needs the rule column: add rule to columns")

    def dsn(self, f: LoadedFile, path: tuple[Any, ...], name: str, dsn: str) -> Iterator[Problem]:
        """A PostgreSQL URI, or variables that hold it; a password is never written in the file itself."""
        if re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", dsn):
            return
        p = urllib.parse.urlsplit(dsn)
        if p.scheme not in DSN_SCHEMES:
            yield Problem(f.where(path), f"target {name!r}: dsn must be a URI postgresql://USER@HOST:PORT/DATABASE "
                          "or ${VAR} holding one")
        elif p.password and not re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", urllib.parse.unquote(p.password)):
            yield Problem(f.where(path), f"target {name!r}: dsn: write the password as ${{VAR}} (from the "
                          "environment), not in the rule file")

    def episode_options(self, f: LoadedFile, path: tuple[Any, ...], t: Target) -> Iterator[Problem]:
        """Episodes have no per-sample columns; in a database they are upserted by their key."""
        cols = t.options.get("columns") or ()
        for i, c in enumerate(cols):
            if c in ("timestamp", "value", "alert"):
                yield Problem(f.where(path + ("columns", i)), f"target {t.name!r}: {c} is a column of rows; an "
                              "episode has start, end, peak, last_value and samples")
        if t.type in TABLE_TYPES:
            if t.options.get("mode", "upsert") != "upsert":
                yield Problem(f.where(path + ("mode",)), f"target {t.name!r}: episodes are upserted as they go on "
                              "and end; mode must be upsert (or left out)")
            missing = [c for c in EPISODE_KEY if cols and c not in cols]
            if missing:
                yield Problem(f.where(path + ("columns",)), f"target {t.name!r}: episodes are keyed by rule, "
                              f"metric, labels, severity, start; missing {', '.join(missing)}")

    # -- rules ------------------------------------------------------------
    def file_rules(self, s: _FileScope) -> Iterator[Problem]:
        data = s.f.data if isinstance(s.f.data, dict) else {}
        rules: list[Any] = data["rules"] if isinstance(data.get("rules"), list) else []
        for i, spec in enumerate(rules):
            path = ("rules", i)
            name = spec.get("name") if isinstance(spec, dict) else None
            rule = None
            if isinstance(spec, dict):
                found: list[Problem] = []
                rule = yield from _tee(self.rule(s, path, spec), found)
                if rule is not None and not found and s.ok(("defaults",)):   # lints only for rules without problems
                    self.out.warnings += lint_rule(s.f, path, spec, rule, self.tree)
            if isinstance(name, str):
                self.out.rules.append((name, s.f.where(path + ("name",)), rule))
            else:
                self.out.unread.add("rules")
        if "rules" in data and not isinstance(data["rules"], list):
            self.out.unread.add("rules")

    def rule(self, s: _FileScope, path: tuple[Any, ...], spec: dict[str, Any]) -> Checks[Rule | None]:
        """Check every well-formed part of a rule; build it only when the whole rule is well-formed."""
        f, d = s.f, s.defaults

        def ok(*key: Any) -> bool:
            return key[0] in spec and s.ok(path + key)

        datasource = s.datasource
        if ok("datasource"):
            datasource = yield from self.datasource(f, path + ("datasource",), spec["datasource"])
        range_ms = yield from self.duration(f, path + ("range",), spec.get("range", d.get("range")) if ok("range") or
                                            "range" not in spec else None, DEFAULT_RANGE_MS)
        step_ms = yield from self.duration(f, path + ("step",), spec.get("step", d.get("step")) if ok("step") or
                                           "step" not in spec else None, DEFAULT_STEP_MS)
        if all(s.ok(p) for p in (path + ("range",), path + ("step",), path + ("datasource",), ("defaults", "range"),
                                 ("defaults", "step"))):      # a window it would not have: said elsewhere
            yield from self.request_count(f, path, spec, datasource, range_ms, step_ms, {**d, **spec})
        dialect_of = datasource if "datasource" not in spec or ok("datasource") else None   # broken: lenient
        tree = (yield from self.query(f, path + ("query",), spec["query"], dialect_of)) if ok("query") else None
        self.tree = None
        valid: dict[str, Any] = spec["valid"] if ok("valid") else {}
        if valid.get("min") is not None and valid.get("max") is not None and valid["min"] > valid["max"]:
            yield Problem(f.where(path + ("valid",)), f"valid: min {valid['min']} is greater than max {valid['max']}")
        where = (yield from self.expression(f, path + ("where",), spec["where"], before_thresholds=True)) \
            if ok("where") else None
        thresholds: list[Threshold] = []
        for i, t in _items(spec, "thresholds", s, path):
            th = yield from self.threshold(f, path + ("thresholds", i), t)
            if th is not None:
                thresholds.append(th)
        routes = []
        for i, r in _items(spec, "route", s, path):
            rp = path + ("route", i)
            when = yield from self.expression(f, rp + ("when",), r.get("when"))
            to = (r["to"],) if isinstance(r["to"], str) else tuple(r["to"])
            routes.append(Route(to, when, f.where(rp)))
            for j, name in enumerate(to):
                to_path = rp + ("to",) + (() if isinstance(r["to"], str) else (j,))
                self.out.route_refs.append((spec.get("name", "?"), name, f.where(to_path)))
        lookback = parse_duration_ms(spec["lookback"]) if ok("lookback") else None   # 0s: no lookback
        if lookback is not None and lookback > MAX_DURATION_MS:
            yield Problem(f.where(path + ("lookback",)), f"lookback: {excerpt(spec['lookback'])} is out of range: "
                          f"{_LONGEST}")
            return None
        if not s.ok(path):
            return None
        rule = Rule(
            name=spec["name"], query=spec["query"], location=f.where(path), datasource=datasource,
            query_location=f.where(path + ("query",)),
            range_ms=range_ms, step_ms=step_ms, instant=bool(spec.get("instant", False)),
            labels={**d.get("labels", {}), **spec.get("labels", {})},
            valid_min=valid.get("min"), valid_max=valid.get("max"), where=where,
            thresholds=tuple(thresholds), routes=tuple(routes), description=spec.get("description", ""),
            unit=spec.get("unit"),
            lookback_ms=lookback)
        self.tree = tree
        return rule

    def query(self, f: LoadedFile, path: tuple[Any, ...], text: str, ds: Datasource | None) -> Checks[Any]:
        """The query parsed offline in the datasource's dialect; its tree, or None when it has a problem."""
        from vmrules import querylang

        dialect = ds.dialect if ds is not None else "metricsql"
        result = querylang.check(text, dialect)
        for p in result.problems:           # the end of a block scalar is its last line, not the line after it
            yield Problem(f.where_in(path, min(p.offset, len(text.rstrip()))), f"query: {p.message}")
        kind = result.tree.type if result.tree is not None else None
        if dialect == "promql" and kind in ("range vector", "string"):
            yield Problem(f.where_in(path, 0), f"query: a rule's query must give an instant vector or a scalar, not "
                          f"a {kind}" + (" (wrap it in a function such as rate() or max_over_time())"
                                         if kind == "range vector" else ""))
            return None
        if result.partial:
            self.out.notes.append(Problem(f.where(path), f"query checked as MetricsQL{_dialect_note(ds)}; not "
                                          f"checked: {result.partial}", "note"))
        return result.tree

    def request_count(self, f: LoadedFile, path: tuple[Any, ...], spec: dict[str, Any], ds: Datasource | None,
                      range_ms: int, step_ms: int, written: dict[str, Any]) -> Iterator[Problem]:
        """The rule's own window (its range) may not take more than MAX_REQUESTS_PER_RULE range requests
        (apply checks the window it is given, too)."""
        if ds is None or ds.is_file or spec.get("instant") or step_ms <= 0:
            return
        why = too_many_requests(range_ms // step_ms + 1, ds.max_points_per_series)
        if why:
            key = next((k for k in ("range", "step") if k in spec), None)
            yield Problem(f.where(path + (key,)) if key else f.where(path),
                          f"rule {spec.get('name', '?')!r}: its range of {_text(written, 'range', range_ms)} at step "
                          f"{_text(written, 'step', step_ms)}: {why}: raise max_points_per_series or the step, "
                          "or shorten the range")

    # -- Prometheus rule files run from here --------------------------------
    def file_prometheus(self, s: _FileScope) -> Iterator[Problem]:
        data = s.f.data if isinstance(s.f.data, dict) else {}
        if not _items(data, "prometheus_rules", s, ()):
            return
        range_ms = yield from self.duration(s.f, ("defaults", "range"), s.defaults.get("range"), DEFAULT_RANGE_MS)
        files: dict[str, _Routed] = {}
        for i, entry in _items(data, "prometheus_rules", s, ()):
            path = ("prometheus_rules", i)
            routes = []
            for j, r in enumerate(entry.get("route") or []):
                rp = path + ("route", j)
                when = yield from self.expression(s.f, rp + ("when",), r.get("when"))
                routes.append(Route((r["to"],) if isinstance(r["to"], str) else tuple(r["to"]), when, s.f.where(rp)))
            external = dict(entry.get("external_labels") or {})
            for j, pattern in enumerate(entry["files"]):
                found = yield from self.prometheus_paths(s.f, path + ("files", j), pattern)
                for name in found:           # a file several entries name takes the routes of each
                    first = files.setdefault(os.path.realpath(name), _Routed(name, path + ("files", j), external))
                    if i in first.entries:
                        continue
                    if first.external != external:
                        yield Problem(s.f.where(path + ("files", j)), f"files: {name} is named by an entry with "
                                      f"other external_labels too (at {s.f.where(first.where)}); a file's rules "
                                      "have one set")
                        continue
                    first.routes += routes
                    first.entries.add(i)
        for routed in files.values():
            yield from self.prometheus_file(s, routed.where, routed.name, tuple(routed.routes), range_ms,
                                            routed.external)

    def prometheus_paths(self, f: LoadedFile, path: tuple[Any, ...], pattern: str) -> Checks[list[str]]:
        """The files a `files:` pattern names, relative to this file: only in its folder and the folder above
        (`../alerts/*.yml`), never `**` (a link loop would make it endless) and never an absolute path; a rule
        file from a pull request reads nothing else, and learns nothing of what lies outside."""
        import glob

        base = os.path.dirname(os.path.abspath(f.path))
        parent = os.path.dirname(base)
        roots = [os.path.realpath(base)] + ([os.path.realpath(parent)] if os.path.dirname(parent) != parent else [])
        where = os.path.normpath(os.path.join(base, pattern))
        if os.path.isabs(pattern) or "**" in pattern or "\x00" in pattern or not any(
                os.path.commonpath([root, where]) == root for root in roots):
            yield Problem(f.where(path), f"files: {excerpt(pattern)}: a pattern relative to this file, inside its "
                          "folder or the one above it, without ** (refused)")
            return []
        names = sorted(n for n in glob.glob(where)[:MAX_PROMETHEUS_FILES + 1] if os.path.isfile(n))
        inside = [n for n in names if any(os.path.commonpath([root, os.path.realpath(n)]) == root for root in roots)]
        if len(inside) < len(names):
            yield Problem(f.where(path), f"files: {excerpt(pattern)} names a link to a file outside this file's "
                          "folder and the one above it; refused")
        elif len(inside) > MAX_PROMETHEUS_FILES:
            yield Problem(f.where(path), f"files: {excerpt(pattern)} matches more than {MAX_PROMETHEUS_FILES} files")
            return []
        elif not inside:
            yield Problem(f.where(path), f"files: {excerpt(pattern)} matches no file")
        return inside

    def prometheus_file(self, s: _FileScope, path: tuple[Any, ...], name: str, routes: tuple[Route, ...],
                        range_ms: int, external: dict[str, str]) -> Iterator[Problem]:
        real = os.path.realpath(name)
        try:
            g = load_file(name)
        except ConfigError as exc:
            yield from exc.problems
            return
        if g.data is None:                   # empty, or comments only: no groups, as promtool and vmalert read it
            self.out.routed[real] = s.f.where(path)
            return
        if not is_prometheus_data(g.data):
            yield Problem(s.f.where(path), f"files: {name} is not a Prometheus rule file (its top level has no "
                          "groups:)")
            return
        every = g.problems + check_prometheus_file(g)
        found = [p for p in every if p.level == "error"]
        yield from found
        self.out.warnings += [p for p in every if p.level == "warning"]
        self.out.routed[real] = s.f.where(path)
        if not found:
            rules, warnings = build_rules(g, s.datasource, routes, range_ms, None, external)
            self.out.rules += [(r.name, r.location, r) for r in rules]
            self.out.warnings += warnings

    # -- tests ------------------------------------------------------------
    def file_tests(self, s: _FileScope) -> Iterator[Problem]:
        data = s.f.data if isinstance(s.f.data, dict) else {}
        for i, spec in _items(data, "tests", s, ()):
            test = yield from self.rule_test(s.f, ("tests", i), spec)
            if test is not None:
                self.out.tests.append(test)

    def rule_test(self, f: LoadedFile, path: tuple[Any, ...], spec: dict[str, Any]) -> Checks[RuleTest | None]:
        from vmrules.config.notation import NotationError, parse_series, parse_values

        inputs, ok = [], True
        for j, item in enumerate(spec["input"]):
            try:
                where = path + ("input", j, "series")
                labels = parse_series(item["series"])
                where = path + ("input", j, "values")
                values = tuple(parse_values(item["values"]))
            except NotationError as exc:
                yield Problem(f.where_in(where, exc.offset), f"{where[-1]}: {exc.message}")
                ok = False
                continue
            inputs.append(InputSeries(labels, values))
        interval = (yield from self.duration(f, path + ("interval",), spec["interval"], 0)) if "interval" in spec \
            else None
        expect: dict[str, Any] = {}
        for target, want in spec["expect"].items():
            if isinstance(want, dict):
                expect[target] = want
                continue
            rows = []
            for given in want:
                row = dict(given)
                for key in ("time", "start", "end"):            # offsets; start and end of episodes
                    if row.get(key) is not None:
                        row[key] = 0 if row[key] in (0, "0") else parse_duration_ms(row[key])
                rows.append(row)
            expect[target] = rows
        if not ok:
            return None
        return RuleTest(spec.get("name") or f"{spec['rule']} #{path[-1] + 1}", spec["rule"], interval, tuple(inputs),
                        expect, f.where(path), {t: f.where_key(path + ("expect", t)) for t in expect},
                        f.where(path + ("rule",)))

    def threshold(self, f: LoadedFile, path: tuple[Any, ...], t: dict[str, Any]) -> Checks[Threshold | None]:
        cond = yield from self.condition(f, path, t, "a threshold")
        for_ms = yield from self.duration(f, path + ("for",), t.get("for"), 0)
        keep_ms = yield from self.duration(f, path + ("keep_firing_for",), t.get("keep_firing_for"), 0)
        clear = None
        if isinstance(t.get("clear"), dict):
            clear = yield from self.condition(f, path + ("clear",), t["clear"], "clear")
            if clear is None:
                return None
        if cond is None:
            return None
        return Threshold(severity=t.get("severity", "alert"), op=cond.op, value=cond.value, when=cond.when,
                         for_ms=for_ms, location=f.where(path), keep_firing_ms=keep_ms, clear=clear)

    def condition(self, f: LoadedFile, path: tuple[Any, ...], t: dict[str, Any], what: str) -> Checks[Condition | None]:
        """Exactly one of the comparison keys or `when`."""
        given = [k for k in CONDITION_KEYS if k in t]
        if len(given) != 1:
            found = "none" if not given else ", ".join(given)
            yield Problem(f.where(path), f"{what} needs exactly one of {', '.join(CONDITION_KEYS)} (found {found})")
            return None
        key = given[0]
        if key == "when":
            when = yield from self.expression(f, path + ("when",), t["when"], before_thresholds=True)
            return None if when is None else Condition("when", None, when)
        return Condition(COMPARISONS[key].op, float(t[key]), None)

    def expression(self, f: LoadedFile, path: tuple[Any, ...], text: str | None,
                   before_thresholds: bool = False) -> Checks[expr.Node | None]:
        if text is None:
            return None
        try:
            node = expr.parse(text)
        except expr.ExprError as exc:
            yield Problem(f.where_in(path, exc.offset), f"{path[-1]}: {exc.message}")
            return None
        late = expr.names(node) & {"severity", "alert"}
        if before_thresholds and late:
            yield Problem(f.where(path), f"{path[-1]}: {sorted(late)[0]} is not known yet here (thresholds run "
                          "after where and their own conditions); use it in a route's when")
            return None
        return node
