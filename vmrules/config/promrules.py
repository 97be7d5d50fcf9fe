"""Prometheus and vmalert rule files (top level `groups:`), checked as vmrules files are: every problem at its
line and column, the expressions parsed offline, the label and annotation templates checked.

A file is one of these when its top level has `groups:` and no `version:`.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

from vmrules import gorender, gotemplate, querylang
from vmrules.config import schema
from vmrules.config.load import LoadedFile
from vmrules.durations import MAX_DURATION_MS, format_duration_ms
from vmrules.errors import Problem, excerpt
from vmrules.model import SEVERITY_LABEL, Datasource, Route, Rule, Threshold
from vmrules.thresholds import COMPARISONS

RULE_KINDS = ("alert", "record")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")             # a vmrules name (rules, severities, labels)
ONLY_ALERTS = ("for", "keep_firing_for", "annotations")


@cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    doc = json.loads(resources.files("vmrules").joinpath("data/prometheus-rules.schema.json").read_text())
    return Draft202012Validator(doc, format_checker=None)


def check_prometheus_file(f: LoadedFile) -> list[Problem]:
    """Every problem of one Prometheus or vmalert rule file (whose values it first reads as Prometheus does)."""
    read_as_prometheus(f)
    problems, bad = _schema(f)
    problems += _semantics(f, bad)
    return problems


_GROUP_TEXT = ("name", "interval", "query_offset", "eval_offset", "eval_delay", "type", "tenant")
_RULE_TEXT = ("alert", "record", "expr", "for", "keep_firing_for")
DURATION_KEYS = ("interval", "query_offset", "eval_offset", "eval_delay", "for", "keep_firing_for")


def read_as_prometheus(f: LoadedFile) -> None:
    """Read the values of a Prometheus rule file as Prometheus and vmalert do (Go's YAML into string fields):
    a plain value that YAML 1.1 takes for a boolean or a number (`no`, `01`, `1.10`, `0x1F`, `404`) is its text
    as written; an empty label or annotation value is the empty string; an empty duration, alert, record or
    expr is not given (a default, or the problem that it is missing). Done once, in place."""
    groups = f.data.get("groups") if isinstance(f.data, dict) else None
    for g, group in enumerate(groups if isinstance(groups, list) else []):
        if not isinstance(group, dict):
            continue
        _texts(f, ("groups", g), group, _GROUP_TEXT)
        _text_map(f, ("groups", g, "labels"), group.get("labels"))
        _text_map(f, ("groups", g, "params"), group.get("params"))
        for key in ("headers", "notifier_headers"):
            if isinstance(group.get(key), list):
                group[key] = [_written(f, ("groups", g, key, i), v) for i, v in enumerate(group[key])]
        rules = group.get("rules")
        for r, rule in enumerate(rules if isinstance(rules, list) else []):
            if isinstance(rule, dict):
                path = ("groups", g, "rules", r)
                _texts(f, path, rule, _RULE_TEXT)
                for key in ("labels", "annotations"):
                    _text_map(f, path + (key,), rule.get(key))


def _texts(f: LoadedFile, path: tuple[Any, ...], spec: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        if key in spec:
            if spec[key] is None and key != "name":
                del spec[key]
            else:
                spec[key] = _written(f, path + (key,), spec[key])


def _text_map(f: LoadedFile, path: tuple[Any, ...], values: Any) -> None:
    if isinstance(values, dict):
        for key, value in values.items():
            values[key] = "" if value is None else _written(f, path + (key,), value)


def _written(f: LoadedFile, path: tuple[Any, ...], value: Any) -> Any:
    """A scalar as written (Go's YAML gives a string field the text); null as Go gives it: the empty string."""
    if value is None:
        return ""
    return f.written.get(path, value) if not isinstance(value, (dict, list)) else value


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
        yield from _durations(f, path, group, bad)
        for key in ("labels",):
            yield from _templates(f, path + (key,), group.get(key))
        rules = group.get("rules")
        for r, rule in enumerate(rules if isinstance(rules, list) else []):
            if isinstance(rule, dict):
                yield from _rule(f, path + ("rules", r), rule, bad)


def _rule(f: LoadedFile, path: tuple[Any, ...], rule: dict[str, Any], bad: set[tuple[Any, ...]]) -> Iterator[Problem]:
    kinds = [k for k in RULE_KINDS if k in rule]
    if "expr" not in rule:
        yield Problem(f.where(path), "a rule needs expr: the query it evaluates")
    if not kinds:
        yield Problem(f.where(path), "a rule needs alert: NAME (an alerting rule) or record: NAME (a recording rule)")
    elif len(kinds) == 2:
        yield Problem(f.where_key(path + ("record",)), "a rule is an alert or a record, not both")
    elif kinds == ["record"]:                 # Prometheus refuses these, vmalert ignores them: a warning
        for key in ONLY_ALERTS:
            if key in rule:
                yield Problem(f.where_key(path + (key,)), f"{key} is for alerting rules; a recording rule "
                              f"({excerpt(rule['record'])}) has no {key} (Prometheus refuses it, vmalert ignores "
                              "it)", "warning")
        if isinstance(rule["record"], str) and not _METRIC_NAME.fullmatch(rule["record"]):
            yield Problem(f.where(path + ("record",)), f"record {excerpt(rule['record'])} is not a metric name "
                          "([a-zA-Z_:][a-zA-Z0-9_:]*): Prometheus refuses it", "warning")
    yield from _durations(f, path, rule, bad)
    expr = rule.get("expr")
    if isinstance(expr, str) and not any(b[:len(path) + 1] == path + ("expr",) for b in bad):
        result = querylang.check(str(expr), "metricsql")
        for p in result.problems:
            yield Problem(f.where_in(path + ("expr",), min(p.offset, len(str(expr).rstrip()))), f"expr: {p.message}")
    for key in ("labels", "annotations"):
        yield from _templates(f, path + (key,), rule.get(key))


def _durations(f: LoadedFile, path: tuple[Any, ...], spec: dict[str, Any], bad: set[tuple[Any, ...]]) \
        -> Iterator[Problem]:
    """Durations Prometheus refuses: longer than Go's durations (an error: vmalert overflows on them too), or a
    number without a unit, which vmalert reads as seconds (a warning)."""
    for key in DURATION_KEYS:
        text = spec.get(key)
        if not isinstance(text, str) or path + (key,) in bad:
            continue
        if _ms(text) > MAX_DURATION_MS:
            yield Problem(f.where(path + (key,)), f"{key}: {excerpt(text)} is out of range: durations are at most "
                          f"{MAX_DURATION_MS // _PROM_UNITS['y']}y (Prometheus refuses longer ones)")
        elif _SECONDS.fullmatch(text) and text != "0":
            yield Problem(f.where(path + (key,)), f"{key}: {excerpt(text)} has no unit: vmalert reads it as "
                          f"seconds, Prometheus refuses it; write {text}s", "warning")


def _templates(f: LoadedFile, path: tuple[Any, ...], values: Any) -> Iterator[Problem]:
    if not isinstance(values, dict):
        return
    for key, text in values.items():
        if isinstance(text, str) and "{{" in text:
            found = gotemplate.check(text)
            if found is None:
                try:
                    gorender.parse(text)
                except gorender.GoTemplateError as exc:
                    found = exc.offset, exc.message
            if found is not None:
                offset, message = found
                yield Problem(f.where_in(path + (key,), offset), f"{path[-1]}.{key}: template: {message}")


# -- the same rules as vmrules rules ----------------------------------------------------------------------------
_THRESHOLD_KEYS = {">": "above", "<": "below", ">=": "at_least", "<=": "at_most", "==": "equal", "!=": "not_equal"}
_FLIPPED = {">": "<", "<": ">", ">=": "<=", "<=": ">=", "==": "==", "!=": "!="}
DEFAULT_INTERVAL = "1m"


def as_vmrules(data: dict[str, Any], taken: dict[str, int] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """The alerting rules of a valid Prometheus rule file as vmrules rule specs, where the mapping is exact,
    and a note for each rule (or setting) left out and why.

    `alert: A, expr: X > N, for: F` becomes a rule with query X and the threshold `above: N, for: F`: a sample
    of X at or under N breaks the run of `for` exactly as its absence from the answer of `X > N` does. Any
    other expr becomes its own query with the threshold `when: 'true'`: every sample it returns counts.
    `taken`: the rule names given so far (several files converted together get distinct names).
    """
    specs: list[dict[str, Any]] = []
    notes: list[str] = []
    taken = {} if taken is None else taken
    annotated = 0
    for group in data.get("groups") or []:
        gname = group.get("name", "?")
        interval = group.get("interval") if _ms(group.get("interval") or "") > 0 else DEFAULT_INTERVAL
        skipped = [k for k in ("query_offset", "eval_offset", "eval_delay", "limit", "params", "headers")
                   if group.get(k)]
        if skipped:
            notes.append(f"group {gname}: {', '.join(skipped)} not converted (vmrules evaluates every step of its "
                         "window, with no offset, limit or extra parameters)")
        for rule in group.get("rules") or []:
            if "record" in rule:
                notes.append(f"group {gname}: recording rule {rule['record']} not converted (route the file with "
                             "prometheus_rules: to run it as it is)")
                continue
            spec, why = _alert_spec(group, rule, interval, taken)
            odd = sorted(k for k in (spec or {}).get("labels", {}) if not _NAME.fullmatch(k))
            if spec is None or odd:
                why = why or f"label names that are no vmrules label names ({', '.join(odd)})"
                notes.append(f"group {gname}: alert {rule.get('alert')} not converted: {why}")
                continue
            threshold = spec["thresholds"][0]
            if not _NAME.fullmatch(threshold["severity"]):
                notes.append(f"group {gname}: alert {rule['alert']}: severity {threshold['severity']!r} written as "
                             f"{_identifier(threshold['severity'])} (a vmrules severity is a name: letters, digits "
                             "and _)")
                threshold["severity"] = _identifier(threshold["severity"])
            specs.append(spec)
            annotated += bool(rule.get("annotations"))
    if annotated:
        notes.append(f"the annotations of {annotated} alert(s) not converted (Go templates; an alertmanager target "
                     "takes Jinja2 annotations)")
    return specs, notes


def _alert_spec(group: dict[str, Any], rule: dict[str, Any], interval: str,
                taken: dict[str, int] | None, templates: bool = False) -> tuple[dict[str, Any] | None, str]:
    """The vmrules spec of an alert; with `templates`, its templated labels under `label_templates`
    (a templated severity among them, the threshold's severity then SEVERITY_LABEL)."""
    labels = {k: _text(v) for k, v in {**(group.get("labels") or {}), **(rule.get("labels") or {})}.items()}
    templated = {k: v for k, v in labels.items() if "{{" in v}
    if templated and not templates:
        return None, f"templated labels ({', '.join(sorted(templated))}) change the alert's identity per sample"
    labels = {k: v for k, v in labels.items() if k not in templated}
    text = str(rule["expr"])
    result = querylang.check(text, "metricsql")
    if result.tree is None:
        return None, "its expr does not parse"
    from vmrules.querylang.syntax import Range, Selector, walk

    if any(isinstance(n, (Selector, Range)) and n.at for n in walk(result.tree)):
        return None, "it uses @ (Prometheus evaluates it per evaluation, a range query once per window)"
    query, threshold = _split(text, result.tree)
    severity = SEVERITY_LABEL if "severity" in templated else str(labels.pop("severity", "firing"))
    threshold = {"severity": severity, **threshold}
    for key in ("for", "keep_firing_for"):
        if rule.get(key) and _ms(str(rule[key])) > 0:
            threshold[key] = format_duration_ms(_ms(str(rule[key])))
    spec: dict[str, Any] = {"name": _name(str(rule["alert"]), taken),
                            "description": f"alert {rule['alert']} of group {group.get('name', '?')}",
                            "query": query, "step": format_duration_ms(_ms(interval))}
    if labels:
        spec["labels"] = {k: str(v) for k, v in labels.items()}
    if templated:
        spec["label_templates"] = templated
    spec["thresholds"] = [threshold]
    return spec, ""


def _text(value: Any) -> str:
    """A label value (read_as_prometheus has made it the text as written)."""
    return str(value)


def _split(text: str, tree: Any) -> tuple[str, dict[str, Any]]:
    """`X OP N` (no bool, no on/ignoring) as (X, {KEY: N}); anything else as (text, {when: 'true'})."""
    from vmrules.querylang.syntax import Binary, Number, Paren

    whole = text.strip()
    text, bare = _masked(text)                # offsets kept: comments blanked, and in `bare` strings too
    stop = len(text.rstrip())
    while isinstance(tree, Paren) and tree.start == len(text) - len(text.lstrip()) and text.rstrip().endswith(")"):
        tree, stop = tree.inner, stop - 1                 # (X > N): the parentheses around the whole expr
        if not _closes_at(bare, stop):
            return whole, {"when": "true"}
    if isinstance(tree, Binary) and tree.op in _THRESHOLD_KEYS and not tree.bool and tree.matching is None:
        end = tree.op_start + len(tree.op)
        if isinstance(tree.right, Number) and tree.left.type != "scalar" and _plain(text[end:stop]):
            return text[tree.start:tree.op_start].strip(), {_THRESHOLD_KEYS[tree.op]: tree.right.value}
        if isinstance(tree.left, Number) and tree.right.type != "scalar" and _plain(text[tree.start:tree.op_start]):
            return text[end:stop].strip(), {_THRESHOLD_KEYS[_FLIPPED[tree.op]]: tree.left.value}
    return whole, {"when": "true"}


_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`|#[^\n]*', re.DOTALL)


def _masked(text: str) -> tuple[str, str]:
    """The query with its comments blanked, and with its string literals blanked too (same offsets)."""
    code, bare = [], []
    pos = 0
    for m in _LITERAL.finditer(text):
        code.append(text[pos:m.start()])
        bare.append(text[pos:m.start()])
        blank = " " * (m.end() - m.start())
        code.append(blank if m.group().startswith("#") else m.group())
        bare.append(blank)
        pos = m.end()
    return "".join(code) + text[pos:], "".join(bare) + text[pos:]


def _plain(number: str) -> bool:
    """A number written as one (not MetricsQL's 5m or 10Gi, whose value the parser does not keep)."""
    try:
        float(number.strip().replace("_", ""))
    except ValueError:
        return number.strip().lower().lstrip("+-") in ("inf", "nan")
    return True


def _closes_at(text: str, stop: int) -> bool:
    """The parenthesis at `stop` closes the one that opens the text (not `(a) + (b)`)."""
    depth = 0
    for i, c in enumerate(text[:stop + 1]):
        depth += c == "("
        depth -= c == ")"
        if depth == 0 and text[:i + 1].strip():
            return i == stop
    return False


_PROM_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000,
               "y": 31_536_000_000}
_PROM_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")


_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")


def _ms(text: str) -> int:
    """A Prometheus (or vmalert: 1.5m, or 90 seconds as 90) duration in milliseconds; the schema has checked
    its form."""
    if _SECONDS.fullmatch(str(text)):
        return int(float(text) * 1000)
    return int(sum(float(n) * _PROM_UNITS[u] for n, u in _PROM_PART.findall(str(text))))


def _identifier(text: str) -> str:
    """A vmrules name from any text: other characters as _, `_` before a digit."""
    base = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in text) or "_"
    return "_" + base if base[0].isdigit() else base


def _name(alert: str, taken: dict[str, int] | None) -> str:
    """A vmrules rule name from an alert name: other characters as _, a second alert of the name `NAME_2` (none
    when `taken` is None: the names of a rule set are made distinct across its files)."""
    base = _identifier(alert)
    if taken is None:
        return base
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    taken[name] = 1
    return name


# -- the rules themselves, as a run takes them --------------------------------------------------------------------
def build_rules(f: LoadedFile, datasource: Datasource | None, routes: tuple[Route, ...], range_ms: int,
                taken: dict[str, int] | None, external: dict[str, str] | None = None) \
        -> tuple[list[Rule], list[Problem]]:
    """The rules of a valid Prometheus rule file, with these routes; a warning for each rule not run. `taken`:
    as `_name` takes it.

    An alerting rule is its `as_vmrules` spec (exact); a recording rule is its expr, its rows named after the
    record (`__name__` among the static labels) and labelled with the rule's labels."""
    from vmrules import expr as condition

    rules: list[Rule] = []
    warnings: list[Problem] = []
    for g, group in enumerate(f.data.get("groups") or []):
        interval = group.get("interval") if _ms(group.get("interval") or "") > 0 else DEFAULT_INTERVAL
        for r, rule in enumerate(group.get("rules") or []):
            path = ("groups", g, "rules", r)
            common: dict[str, Any] = {"location": f.where(path), "datasource": datasource, "range_ms": range_ms,
                      "step_ms": _ms(interval), "routes": routes, "origin": "prometheus",
                      "query_location": f.where(path + ("expr",)), "external_labels": external or {}}
            if "record" in rule:
                labels = {k: _text(v) for k, v in {**(group.get("labels") or {}), **(rule.get("labels") or {})}.items()}
                if any("{{" in str(v) for v in labels.values()):
                    warnings.append(Problem(f.where(path), f"record {rule['record']}: not run (templated labels)",
                                            "warning"))
                    continue
                rules.append(Rule(name=_name(rule["record"], taken), query=str(rule["expr"]).strip(),
                                  labels={**{k: str(v) for k, v in labels.items()}, "__name__": rule["record"]},
                                  description=f"record {rule['record']} of group {group.get('name', '?')}",
                                  **common))
                continue
            spec, why = _alert_spec(group, rule, interval, taken, templates=True)
            if spec is None:
                warnings.append(Problem(f.where(path), f"alert {rule.get('alert')}: not run: {why}", "warning"))
                continue
            t = spec["thresholds"][0]
            key = next(k for k in (*_THRESHOLD_KEYS.values(), "when") if k in t)
            threshold = Threshold(
                severity=t["severity"], op=COMPARISONS[key].op if key != "when" else "when",
                value=float(t[key]) if key != "when" else None,
                when=condition.parse("true") if key == "when" else None,
                for_ms=_ms(t["for"]) if "for" in t else 0, location=f.where(path),
                keep_firing_ms=_ms(t["keep_firing_for"]) if "keep_firing_for" in t else 0)
            rules.append(Rule(name=spec["name"], query=spec["query"], labels=spec.get("labels", {}),
                              thresholds=(threshold,), description=spec["description"],
                              label_templates=spec.get("label_templates", {}),
                              annotations={k: _text(v) for k, v in (rule.get("annotations") or {}).items()},
                              **common))
    return rules, warnings
