"""Prometheus and vmalert rule files (top level `groups:`), checked as vmrules files are: every problem at its
line and column, the expressions parsed offline, the label and annotation templates checked.

A file is one of these when its top level has `groups:` and no `version:`.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

from vmrules import gotemplate, querylang
from vmrules.config import schema
from vmrules.config.load import LoadedFile
from vmrules.errors import Problem, excerpt

RULE_KINDS = ("alert", "record")
ONLY_ALERTS = ("for", "keep_firing_for", "annotations")


def is_prometheus_file(data: Any) -> bool:
    return isinstance(data, dict) and "groups" in data and "version" not in data


@cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    doc = json.loads(resources.files("vmrules").joinpath("data/prometheus-rules.schema.json").read_text())
    return Draft202012Validator(doc, format_checker=None)


def check_prometheus_file(f: LoadedFile) -> list[Problem]:
    """Every problem of one Prometheus or vmalert rule file."""
    problems, bad = _schema(f)
    problems += _semantics(f, bad)
    return problems


def _schema(f: LoadedFile) -> tuple[list[Problem], set[tuple[Any, ...]]]:
    from jsonschema.exceptions import best_match

    problems: list[Problem] = []
    bad: set[tuple[Any, ...]] = set()
    for error in _validator().iter_errors(f.data):
        leaf = best_match([error])
        path = tuple(leaf.absolute_path)
        bad.add(tuple(error.absolute_path))
        if leaf.validator == "additionalProperties" and isinstance(leaf.instance, dict):
            allowed = sorted(leaf.schema.get("properties", {}))
            for key in (k for k in leaf.instance if k not in allowed):
                close = difflib.get_close_matches(key, allowed, n=1)
                more = f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(allowed)}"
                problems.append(Problem(f.where_key(path + (key,)), f"{schema._describe(path)}unknown key "
                                        f"{excerpt(key)}{more}"))
        elif leaf.validator == "required" and path and path[-2:-1] == ("rules",):
            continue                     # said by the semantic check, with what a rule needs
        else:
            problems.append(schema._problem(f, leaf))
    return problems, bad


def _semantics(f: LoadedFile, bad: set[tuple[Any, ...]]) -> Iterator[Problem]:
    groups = f.data.get("groups") if isinstance(f.data, dict) else None
    if not isinstance(groups, list):
        return
    seen: dict[str, int] = {}
    for g, group in enumerate(groups):
        if not isinstance(group, dict):
            continue
        path = ("groups", g)
        name = group.get("name")
        if isinstance(name, str):
            if name in seen:
                yield Problem(f.where(path + ("name",)), f"group {name!r} is defined twice in this file (first at "
                              f"line {f.where(('groups', seen[name], 'name')).line})")
            seen.setdefault(name, g)
        if group.get("type") not in (None, "prometheus"):
            yield Problem(f.where(path + ("type",)), f"type {excerpt(group['type'])}: vmrules runs prometheus rules "
                          "(PromQL and MetricsQL); graphite rules are not supported")
        for key in ("labels",):
            yield from _templates(f, path + (key,), group.get(key))
        rules = group.get("rules")
        for r, rule in enumerate(rules if isinstance(rules, list) else []):
            if isinstance(rule, dict):
                yield from _rule(f, path + ("rules", r), rule, bad)


def _rule(f: LoadedFile, path: tuple[Any, ...], rule: dict[str, Any], bad: set[tuple[Any, ...]]) -> Iterator[Problem]:
    kinds = [k for k in RULE_KINDS if k in rule]
    if not kinds:
        yield Problem(f.where(path), "a rule needs alert: NAME (an alerting rule) or record: NAME (a recording rule)")
    elif len(kinds) == 2:
        yield Problem(f.where_key(path + ("record",)), "a rule is an alert or a record, not both")
    elif kinds == ["record"]:
        for key in ONLY_ALERTS:
            if key in rule:
                yield Problem(f.where_key(path + (key,)), f"{key} is for alerting rules; a recording rule "
                              f"({excerpt(rule['record'])}) has no {key}")
    expr = rule.get("expr")
    if isinstance(expr, (str, int, float)) and not isinstance(expr, bool) and \
            not any(b[:len(path) + 1] == path + ("expr",) for b in bad):
        result = querylang.check(str(expr), "metricsql")
        for p in result.problems:
            yield Problem(f.where_in(path + ("expr",), min(p.offset, len(str(expr).rstrip()))), f"expr: {p.message}")
    for key in ("labels", "annotations"):
        yield from _templates(f, path + (key,), rule.get(key))


def _templates(f: LoadedFile, path: tuple[Any, ...], values: Any) -> Iterator[Problem]:
    if not isinstance(values, dict):
        return
    for key, text in values.items():
        if isinstance(text, str) and "{{" in text:
            found = gotemplate.check(text)
            if found is not None:
                offset, message = found
                yield Problem(f.where_in(path + (key,), offset), f"{path[-1]}.{key}: template: {message}")
