"""Validate rule files (schema + semantic checks) and build the typed model.

Checks are generators of problems: `validate` collects them all, and a rule set
is returned only when nothing was found.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from vmrules import expr, schema
from vmrules.durations import parse_duration_ms
from vmrules.errors import ConfigError, Location, Problem
from vmrules.load import LoadedFile, discover, load_all
from vmrules.model import (
    DEFAULT_MAX_POINTS,
    DEFAULT_RANGE_MS,
    DEFAULT_STEP_MS,
    DEFAULT_TIMEOUT_MS,
    Datasource,
    Route,
    Rule,
    RuleSet,
    Target,
    Threshold,
)
from vmrules.templates import TemplateError, check_relative_path, check_table_name, compile_template, render

CONDITIONS = {"above": ">", "below": "<", "at_least": ">=", "at_most": "<="}
UPSERT_KEY = ("rule", "labels", "timestamp")
SAMPLE_RUN = {"id": "20261101_000000_0000", "started_at": "2026-11-01T00:00:00Z",
              "from": "2026-10-31T23:00:00Z", "to": "2026-11-01T00:00:00Z", "stamp": "20261101_000000"}
SAMPLE_ROW = {"rule": "example", "metric": "up", "labels": "{}", "timestamp": "2026-11-01T00:00:00Z",
              "value": 1.0, "severity": "warning", "alert": True}


T = TypeVar("T")
Checks = Generator[Problem, None, T]   # yields problems, returns what it built


@dataclass
class Result:
    """The outcome of validating a set of files."""

    files: list[str]
    problems: list[Problem]
    ruleset: RuleSet | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_paths(paths: Iterable[str]) -> Result:
    """Validate every rule file under `paths`; FileNotFoundError for a missing path."""
    files = discover(paths)
    loaded, problems = load_all(files)
    checker = _Checker()
    problems += list(checker.run(loaded))
    if not files:
        problems.append(Problem(Location(", ".join(paths) or "."), "no rule files (*.yaml, *.yml) found"))
    result = Result(files, sorted(set(problems)))
    if result.ok:
        result.ruleset = checker.ruleset
    return result


def load_ruleset(paths: Iterable[str]) -> RuleSet:
    """Validated rule set of the files under `paths`; ConfigError with every problem otherwise."""
    result = validate_paths(paths)
    if not result.ok or result.ruleset is None:
        raise ConfigError(result.problems)
    return result.ruleset


def _items(spec: dict[str, Any], key: str, s: _FileScope, path: tuple[Any, ...]) -> list[tuple[int, Any]]:
    """The well-formed items of a list-valued key."""
    value = spec.get(key)
    if not isinstance(value, list):
        return []
    return [(i, item) for i, item in enumerate(value) if isinstance(item, dict) and s.ok(path + (key, i))]


def rule_template_context(rule: Rule, run: dict[str, Any], target: Target) -> dict[str, Any]:
    """What path, table and metric templates see."""
    return {"rule": {"name": rule.name, "query": rule.query, "labels": dict(rule.labels),
                     "description": rule.description},
            "run": run, "target": {"name": target.name, "type": target.type}}


@dataclass
class _FileScope:
    f: LoadedFile
    bad: set[tuple[Any, ...]]
    datasource: Datasource | None = None
    defaults: dict[str, Any] = field(default_factory=dict)

    def ok(self, path: tuple[Any, ...]) -> bool:
        """No schema problem at or below `path`."""
        n = len(path)
        return not any(b[:n] == path for b in self.bad)


class _Checker:
    def __init__(self) -> None:
        self.ruleset: RuleSet | None = None
        self.targets: dict[str, Target] = {}
        self.rules: list[Rule] = []
        self.rule_names: dict[str, Location] = {}
        self.route_refs: list[tuple[str, str, Location]] = []

    def run(self, files: list[LoadedFile]) -> Iterator[Problem]:
        scopes = []
        for f in files:
            problems, bad = schema.check(f)
            yield from problems
            scopes.append(_FileScope(f, bad))
        for scope in scopes:
            yield from self.file_level(scope)
        for scope in scopes:
            yield from self.file_targets(scope)
        for scope in scopes:
            yield from self.file_rules(scope)
        yield from self.routes_and_templates()
        self.ruleset = RuleSet(tuple(self.rules), dict(self.targets), tuple(f.path for f in files))

    # -- file level -------------------------------------------------------
    def file_level(self, s: _FileScope) -> Iterator[Problem]:
        data = s.f.data if isinstance(s.f.data, dict) else {}
        if "datasource" in data and s.ok(("datasource",)):
            ds = yield from self.datasource(s.f, ("datasource",), data["datasource"])
            s.datasource = ds
        if "defaults" in data and s.ok(("defaults",)):
            s.defaults = dict(data["defaults"])

    def datasource(self, f: LoadedFile, path: tuple[Any, ...], d: dict[str, Any]) -> Checks[Datasource]:
        url = d["url"]
        if "${" in url:
            yield Problem(f.where(path + ("url",)), "${VAR} is expanded only in headers, bearer_token "
                          "and basic_auth, not in the url")
        elif not url.startswith(("http://", "https://", "file:")):
            yield Problem(f.where(path + ("url",)),
                          f"datasource url {url!r} must start with http://, https:// or file:")
        timeout = yield from self.duration(f, path + ("timeout",), d.get("timeout"), DEFAULT_TIMEOUT_MS)
        auth = d.get("basic_auth")
        return Datasource(
            url=url.rstrip("/") if not url.startswith("file:") else url,
            headers=dict(d.get("headers") or {}), bearer_token=d.get("bearer_token"),
            basic_auth=(auth["username"], auth.get("password", "")) if auth else None,
            params=dict(d.get("params") or {}), timeout_ms=timeout,
            max_points_per_series=d.get("max_points_per_series", DEFAULT_MAX_POINTS),
            location=f.where(path))

    def duration(self, f: LoadedFile, path: tuple[Any, ...], text: str | None, default: int) -> Checks[int]:
        if text is None:
            return default
        ms = parse_duration_ms(text)
        if ms <= 0:
            yield Problem(f.where(path), f"{path[-1]} must be longer than 0")
            return default
        return ms

    # -- targets ----------------------------------------------------------
    def file_targets(self, s: _FileScope) -> Iterator[Problem]:
        data = s.f.data if isinstance(s.f.data, dict) else {}
        targets: dict[str, Any] = data["targets"] if isinstance(data.get("targets"), dict) else {}
        for name, spec in targets.items():
            path = ("targets", name)
            if name in self.targets:
                first = self.targets[name].location
                yield Problem(s.f.where_key(path), f"duplicate target name {name!r} (first defined at {first})")
                continue
            if not s.ok(path):
                continue
            options = {k: v for k, v in spec.items() if k != "type"}
            target = Target(name, spec["type"], options, s.f.where_key(path),
                            {k: s.f.where(path + (k,)) for k in options})
            yield from self.target_options(s.f, path, target)
            self.targets[name] = target

    def target_options(self, f: LoadedFile, path: tuple[Any, ...], t: Target) -> Iterator[Problem]:
        opts = t.options
        for key in ("path", "table", "metric", "body"):
            if key in opts:
                try:
                    compile_template(opts[key])
                except TemplateError as exc:
                    yield Problem(f.where(path + (key,)), f"target {t.name!r}: {key}: {exc}")
        for key, text in (opts.get("annotations") or {}).items():
            try:
                render(text, {"value": 1.0, "labels": {}, "rule": {"name": "example"}})
            except TemplateError as exc:
                yield Problem(f.where(path + ("annotations", key)), f"target {t.name!r}: annotation {key}: {exc}")
        if "timeout" in opts:
            yield from self.duration(f, path + ("timeout",), opts["timeout"], DEFAULT_TIMEOUT_MS)
        if t.type == "sqlite" and opts.get("mode") == "upsert" and "columns" in opts:
            missing = [c for c in UPSERT_KEY if c not in opts["columns"]]
            if missing:
                yield Problem(f.where(path + ("columns",)), f"target {t.name!r}: upsert needs the key columns "
                              f"rule, labels, timestamp; missing {', '.join(missing)}")

    # -- rules ------------------------------------------------------------
    def file_rules(self, s: _FileScope) -> Iterator[Problem]:
        data = s.f.data if isinstance(s.f.data, dict) else {}
        rules: list[Any] = data["rules"] if isinstance(data.get("rules"), list) else []
        for i, spec in enumerate(rules):
            path = ("rules", i)
            name = spec.get("name") if isinstance(spec, dict) else None
            if isinstance(name, str):
                if name in self.rule_names:
                    yield Problem(s.f.where(path + ("name",)),
                                  f"duplicate rule name {name!r} (first defined at {self.rule_names[name]})")
                    continue
                self.rule_names[name] = s.f.where(path + ("name",))
            if isinstance(spec, dict) and s.ok(("defaults",)):
                rule = yield from self.rule(s, path, spec)
                if rule is not None:
                    self.rules.append(rule)

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
                self.route_refs.append((spec.get("name", "?"), name, f.where(to_path)))
        if not s.ok(path):
            return None
        return Rule(
            name=spec["name"], query=spec["query"], location=f.where(path), datasource=datasource,
            range_ms=range_ms, step_ms=step_ms, instant=bool(spec.get("instant", False)),
            labels={**d.get("labels", {}), **spec.get("labels", {})},
            valid_min=valid.get("min"), valid_max=valid.get("max"), where=where,
            thresholds=tuple(thresholds), routes=tuple(routes), description=spec.get("description", ""))

    def threshold(self, f: LoadedFile, path: tuple[Any, ...], t: dict[str, Any]) -> Checks[Threshold | None]:
        given = [k for k in (*CONDITIONS, "when") if k in t]
        if len(given) != 1:
            what = "none" if not given else ", ".join(given)
            yield Problem(f.where(path), "a threshold needs exactly one of above, below, at_least, at_most, "
                          f"when (found {what})")
            return None
        for_ms = yield from self.duration(f, path + ("for",), t.get("for"), 0)
        key = given[0]
        when = yield from self.expression(f, path + ("when",), t.get("when"), before_thresholds=True)
        if key == "when" and when is None:
            return None
        return Threshold(severity=t.get("severity", "alert"), op=CONDITIONS.get(key, "when"),
                         value=float(t[key]) if key != "when" else None, when=when, for_ms=for_ms,
                         location=f.where(path))

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

    # -- across files -----------------------------------------------------
    def routes_and_templates(self) -> Iterator[Problem]:
        by_name = {r.name: r for r in self.rules}
        used: dict[str, list[Rule]] = {}
        for rule_name, name, loc in self.route_refs:
            if name not in self.targets:
                known = ", ".join(sorted(self.targets)) or "none defined"
                yield Problem(loc, f"rule {rule_name!r} routes to unknown target {name!r} (known: {known})")
            elif rule_name in by_name and by_name[rule_name] not in used.setdefault(name, []):
                used[name].append(by_name[rule_name])
        example = Rule(name="example_rule", query="up", location=Location("<sample>"))
        for name, target in self.targets.items():
            for rule in used.get(name) or [example]:
                yield from self.render_target(target, rule)

    def render_target(self, t: Target, rule: Rule) -> Iterator[Problem]:
        ctx = rule_template_context(rule, SAMPLE_RUN, t)
        checks = (("path", check_relative_path), ("table", check_table_name), ("metric", None))
        for key, check in checks:
            if key not in t.options:
                continue
            try:
                rendered = render(t.options[key], ctx)
                if check:
                    check(rendered)
            except TemplateError as exc:
                for_rule = f" (rendered for rule {rule.name!r})" if rule.name != "example_rule" else ""
                yield Problem(t.locations.get(key, t.location), f"target {t.name!r}: {key}: {exc}{for_rule}")
                return
        if "body" in t.options:
            try:
                render(t.options["body"], {**ctx, "rows": [dict(SAMPLE_ROW, rule=rule.name)], "count": 1},
                       limit=10_000_000)
            except TemplateError as exc:
                yield Problem(t.locations.get("body", t.location), f"target {t.name!r}: body: {exc}")
