"""Validate rule files (schema + semantic checks) and build the typed model.

Checks are generators of problems: `validate` collects them all, and a rule set
is returned only when nothing was found.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from vmrules.config.checks import FileOutcome, check_files
from vmrules.config.load import discover
from vmrules.errors import ConfigError, Location, Problem
from vmrules.model import Rule, RuleSet, RuleTest, Target, reserved_table
from vmrules.templates import TemplateError, check_relative_path, check_table_name, render, variables

SAMPLE_RUN = {"id": "20261101_000000_0000", "started_at": "2026-11-01T00:00:00Z",
              "from": "2026-10-31T23:00:00Z", "to": "2026-11-01T00:00:00Z", "stamp": "20261101_000000"}
SAMPLE_ROW = {"rule": "example", "metric": "up", "labels": "{}", "timestamp": "2026-11-01T00:00:00Z",
              "value": 1.0, "severity": "warning", "alert": True}
PARALLEL_MIN_FILES = 200      # below this, starting worker processes costs more than it saves
TEMPLATE_KEYS = ("path", "table", "metric", "body")


def _check_table(rendered: str) -> str:
    """A SQLite table name that SQLite and vmrules both leave to the rule files."""
    check_table_name(rendered)
    if why := reserved_table(rendered):
        raise TemplateError(why)
    return rendered


def _check_qualified_table(rendered: str) -> str:
    """A PostgreSQL table name: NAME or SCHEMA.NAME, not the watermarks' table."""
    check_table_name(rendered, qualified=True)
    if why := reserved_table(rendered):
        raise TemplateError(why)
    return rendered


CHECKS = {"path": check_relative_path, "table": _check_table}
CHECKS_BY_TYPE = {("postgres", "table"): _check_qualified_table}


@dataclass
class Result:
    """The outcome of validating a set of files."""

    files: list[str]
    problems: list[Problem]
    ruleset: RuleSet | None = None
    warnings: list[Problem] = field(default_factory=list)    # lints: `validate --strict` fails on them
    notes: list[Problem] = field(default_factory=list)       # what could not be checked (`validate -v`)

    @property
    def ok(self) -> bool:
        return not self.problems


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Building many small objects runs several times faster without the cyclic collector."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def validate_paths(paths: Iterable[str], jobs: int | None = None) -> Result:
    """Validate every rule file under `paths`; FileNotFoundError for a missing path.

    Files are checked in `jobs` processes (default: one per CPU) when there are many.
    """
    paths = list(paths)
    files, refused = discover(paths)
    with _no_gc():
        outcomes = _check_all(files, jobs or os.cpu_count() or 1)
        merger = _Merger()
        problems = refused + list(merger.run(outcomes))
    if not files and not refused:
        problems.append(Problem(Location(", ".join(paths) or "."),
                                "no rule files (*.yaml, *.yml, *.rules with groups:) found"))
    result = Result(files, sorted(set(problems)), warnings=sorted(set(merger.warnings)),
                    notes=sorted(set(merger.notes)))
    if result.ok:
        result.ruleset = RuleSet(tuple(merger.rules), dict(merger.targets), tuple(files), tuple(merger.tests),
                                 tuple(merger.unrouted))
    return result


def _check_all(files: list[str], jobs: int) -> list[FileOutcome]:
    """Per-file checks, in worker processes for large rule sets (order kept)."""
    if jobs < 2 or len(files) < PARALLEL_MIN_FILES:
        return check_files(files)
    import multiprocessing  # here: 7 ms of imports that a usual rule set does without
    from concurrent.futures import ProcessPoolExecutor

    if "fork" not in multiprocessing.get_all_start_methods():
        return check_files(files)
    size = -(-len(files) // (jobs * 4))
    chunks = [files[i:i + size] for i in range(0, len(files), size)]
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        return [out for part in pool.map(check_files, chunks) for out in part]


def _free(name: str, taken: Container[str]) -> str:
    """`name`, or `name_2`, `name_3`... when taken (Prometheus allows an alert name in several files)."""
    if name not in taken:
        return name
    n = 2
    while f"{name}_{n}" in taken:
        n += 1
    return f"{name}_{n}"


def _prometheus_names(rules: list[list[tuple[str, Location, Rule | None]]]) -> dict[int, str]:
    """The name of each rule from a Prometheus rule file (by id), the same whatever the order of the files: the
    vmrules rules keep theirs, and an alert name met again (several alerts of one name, in one file or in
    several) gets `_2`, `_3`... in the order of the files' real paths and of the rules in each."""
    taken = {name for part in rules for name, _, rule in part if rule is None or rule.origin != "prometheus"}
    found = [rule for part in rules for _, _, rule in part if rule is not None and rule.origin == "prometheus"]
    names = {}
    for rule in sorted(found, key=lambda r: (os.path.realpath(r.location.path) if r.location else "",
                                             r.location.line if r.location else 0)):
        names[id(rule)] = _free(rule.name, taken)
        taken.add(names[id(rule)])
    return names


def load_ruleset(paths: Iterable[str], jobs: int | None = None) -> RuleSet:
    """Validated rule set of the files under `paths`; ConfigError with every problem otherwise."""
    result = validate_paths(paths, jobs)
    if not result.ok or result.ruleset is None:
        raise ConfigError(result.problems)
    return result.ruleset


def rule_template_context(rule: Rule, run: dict[str, Any], target: Target) -> dict[str, Any]:
    """What path, table and metric templates see."""
    return {"rule": {"name": rule.name, "query": rule.query, "labels": dict(rule.labels),
                     "description": rule.description, "unit": rule.unit,
                     "file": rule.location.path if rule.location else "",
                     "datasource": "",            # apply puts the datasource in use here (without credentials)
                     "go_annotations": dict(rule.annotations), "external_labels": dict(rule.external_labels),
                     "own_labels": sorted({*rule.labels, *rule.label_templates})},
            "run": run, "target": {"name": target.name, "type": target.type}}


class _Merger:
    """Names across files: duplicates, routes to targets, and templates rendered for each rule."""

    def __init__(self) -> None:
        self.targets: dict[str, Target] = {}
        self.rules: list[Rule] = []
        self.tests: list[RuleTest] = []
        self.warnings: list[Problem] = []
        self.notes: list[Problem] = []
        self.unrouted: list[str] = []          # Prometheus rule files no prometheus_rules: runs
        self.broken: dict[str, Location] = {}     # targets defined with a problem of their own: not "unknown"
        self.unread: set[str] = set()             # "targets", "rules": some file's names could not be read

    def run(self, outcomes: list[FileOutcome]) -> Iterator[Problem]:
        rule_names: dict[str, Location] = {}
        refs = []
        kept = []
        routed_by: dict[str, Location] = {}
        routed = {real for out in outcomes for real in out.routed}
        for out in outcomes:
            if out.prometheus and os.path.realpath(out.path) in routed:
                continue                         # read through the prometheus_rules that route it
            twice = {real for real in out.routed if real in routed_by}
            for real in twice:                   # two vmrules files: two datasources, two windows, which one?
                yield Problem(out.routed[real], f"files: {real} is routed by another vmrules file too (at "
                              f"{routed_by[real]}); route a Prometheus rule file from one vmrules file (the routes "
                              "of its entries that name the file all apply)")
            routed_by |= {real: loc for real, loc in out.routed.items() if real not in twice}
            kept.append((out, [(name, loc, rule) for name, loc, rule in out.rules if rule is None or
                               rule.origin != "prometheus" or os.path.realpath(rule.location.path) not in twice]))
        names = _prometheus_names([rules for _, rules in kept])
        for out, out_rules in kept:
            if out.prometheus:
                self.unrouted.append(out.path)
            yield from out.problems
            self.unread |= out.unread
            for name, loc, target in out.targets:
                if name in self.targets or name in self.broken:
                    first = self.targets[name].location if name in self.targets else self.broken[name]
                    yield Problem(loc, f"duplicate target name {name!r} (first defined at {first})")
                elif target is not None:
                    self.targets[name] = target
                else:
                    self.broken[name] = loc
            for name, loc, rule in out_rules:
                if rule is not None and rule.origin == "prometheus":
                    rule = replace(rule, name=names[id(rule)])
                    name = rule.name
                    refs += [(name, target, route.location) for route in rule.routes for target in route.to]
                if name in rule_names:
                    yield Problem(loc, f"duplicate rule name {name!r} (first defined at {rule_names[name]})")
                    continue
                rule_names[name] = loc
                if rule is not None:
                    self.rules.append(rule)
            refs += out.route_refs
            self.tests += out.tests
            self.warnings += out.warnings
            self.notes += out.notes
        yield from self.routes_and_templates(refs)
        yield from self.test_references(set(rule_names))
        self.rules = [replace(r, episodes=True) if any(self.targets[n].shape == "episodes" for route in r.routes
                                                      for n in route.to if n in self.targets) else r
                      for r in self.rules]

    def test_references(self, rule_names: set[str]) -> Iterator[Problem]:
        """Each test names a rule of the set and expects rows only of targets that rule routes to."""
        by_name = {r.name: r for r in self.rules}
        for test in self.tests:
            if test.rule not in rule_names:
                if "rules" in self.unread:        # it may be one of them: said where they could not be read
                    continue
                known = ", ".join(sorted(rule_names)) or "none defined"
                yield Problem(test.rule_location or test.location,
                              f"test {test.name!r}: no rule named {test.rule!r} (rules: {known})")
                continue
            rule = by_name.get(test.rule)
            if rule is None:
                continue
            routed = {n for route in rule.routes for n in route.to}
            misnamed = any(n not in self.targets and n not in self.broken for n in routed)
            for target, loc in test.expect_locations.items():
                if target not in routed and not misnamed:        # else maybe the route's unknown target
                    yield Problem(loc, f"test {test.name!r}: rule {test.rule!r} does not route to {target!r} "
                                  f"(it routes to: {', '.join(sorted(routed)) or 'nothing'})")

    # -- across files -----------------------------------------------------
    def routes_and_templates(self, route_refs: list[tuple[str, str, Location]]) -> Iterator[Problem]:
        by_name = {r.name: r for r in self.rules}
        used: dict[str, dict[str, Rule]] = {}
        said: set[tuple[str, Location]] = set()
        for rule_name, name, loc in route_refs:
            if name in self.broken or "targets" in self.unread and name not in self.targets:
                continue                      # its own problem is said where it is defined (or unread)
            if name not in self.targets:
                if (name, loc) in said:       # a prometheus_rules route, shared by all the rules it routes
                    continue
                said.add((name, loc))
                known = ", ".join(sorted({*self.targets, *self.broken})) or "none defined"
                who = f"rule {rule_name!r}" if by_name.get(rule_name) is None or \
                    by_name[rule_name].origin != "prometheus" else "prometheus_rules"
                yield Problem(loc, f"{who} routes to unknown target {name!r} (known: {known})")
            elif rule_name in by_name:
                used.setdefault(name, {})[rule_name] = by_name[rule_name]
        example = Rule(name="example_rule", query="up", location=Location("<sample>"))
        for name, target in self.targets.items():
            rules = list(used[name].values()) if name in used else [example]
            per_rule = [k for k in TEMPLATE_KEYS if k in target.options and "rule" in variables(target.options[k])]
            once = [k for k in TEMPLATE_KEYS if k in target.options and k not in per_rule]
            yield from self.render_target(target, example, once)
            for rule in rules:
                yield from self.render_target(target, rule, per_rule)

    def render_target(self, t: Target, rule: Rule, keys: list[str]) -> Iterator[Problem]:
        """Render the target's templates `keys` for one rule (the example rule when they do not read it)."""
        if not keys:
            return
        ctx = rule_template_context(rule, SAMPLE_RUN, t)
        for key in keys:
            check = CHECKS_BY_TYPE.get((t.type, key)) or CHECKS.get(key)
            if key == "body":
                continue
            try:
                rendered = render(t.options[key], ctx)
                if check:
                    check(rendered)
            except TemplateError as exc:
                for_rule = f" (rendered for rule {rule.name!r})" if rule.name != "example_rule" else ""
                yield Problem(t.locations.get(key, t.location), f"target {t.name!r}: {key}: {exc}{for_rule}")
                return
        if "body" in keys:
            try:
                render(t.options["body"], {**ctx, "rows": [dict(SAMPLE_ROW, rule=rule.name)], "count": 1,
                                           "batch": 0, "batches": 1}, limit=10_000_000)   # all a run gives it
            except TemplateError as exc:
                yield Problem(t.locations.get("body", t.location), f"target {t.name!r}: body: {exc}")
