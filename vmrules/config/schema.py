"""The JSON Schema of rule files, and its errors mapped onto YAML positions."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterator
from functools import cache, lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from vmrules.config import hints
from vmrules.errors import Problem, cut, excerpt
from vmrules.targets.registry import BUILT_IN, target_plugins

if TYPE_CHECKING:  # jsonschema is imported only to explain an invalid file
    import jsonschema
    from jsonschema.exceptions import ValidationError
from vmrules.config.load import LoadedFile

_DURATION = "ms|s|m|h|d|w"     # in the pattern of a duration


@lru_cache(maxsize=1)
def schema_text() -> str:
    """The schema shipped with the package (identical to schemas/vmrules.schema.json)."""
    return resources.files("vmrules").joinpath("data/vmrules.schema.json").read_text(encoding="utf-8")


@lru_cache(maxsize=2)
def schema(plugins: bool = True) -> dict[str, Any]:
    """The schema as data, extended with the options of installed target plugins (unless `plugins` is False)."""
    doc: dict[str, Any] = json.loads(schema_text())
    for name, plugin in sorted(target_plugins().items() if plugins else ()):
        target = doc["$defs"]["target"]
        target["properties"]["type"]["enum"].append(name)
        target["allOf"].append({"if": {"required": ["type"], "properties": {"type": {"const": name}}},
                                "then": {"$ref": f"#/$defs/target_{name}"}})
        doc["$defs"][f"target_{name}"] = {
            "description": plugin.description or f"target plugin {name} ({plugin.source})",
            "type": "object", "additionalProperties": False,
            "required": ["type", *plugin.schema.get("required", [])],
            "properties": {"type": {"description": name, "const": name}, **plugin.schema.get("properties", {})},
        }
    return doc


@lru_cache(maxsize=2)
def validator(plugins: bool = True) -> jsonschema.Draft202012Validator:
    """jsonschema's validator of the schema, built once per process; it explains what is wrong."""
    from jsonschema import Draft202012Validator, validators

    return validators.extend(Draft202012Validator, {"pattern": _pattern})(schema(plugins))


def _pattern(validator: Any, pattern: str, instance: Any, _schema: Any) -> Iterator[ValidationError]:
    """`pattern` as JSON Schema reads it (ECMA-262, as editors do): `$` is the end of the text, where
    Python's `$` also matches before a final newline and would let `5m\\n` pass as a duration."""
    from jsonschema.exceptions import ValidationError

    if isinstance(instance, str) and not _ecma(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@cache
def _ecma(pattern: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"(?<!\\)\$", r"\\Z", pattern))


def needs_plugins(doc: Any) -> bool:
    """Whether a file names a target type that is not built in (plugins are looked up only then)."""
    targets = doc.get("targets") if isinstance(doc, dict) else None
    if not isinstance(targets, dict):
        return False
    return any(isinstance(t, dict) and t.get("type") not in BUILT_IN for t in targets.values())


def check(f: LoadedFile) -> tuple[list[Problem], set[tuple[Any, ...]]]:
    """Schema problems of one file, each at the YAML node that is wrong, and the paths that hold them."""
    if f.data is None:
        return [Problem(f.where(()), "file is empty: a rule file starts with `version: 1`")], {()}
    plugins = needs_plugins(f.data)
    if f.empty:
        _empty_as_text(f, plugins)
    if is_valid(f.data, plugins):
        return [], set()
    from jsonschema.exceptions import best_match

    problems, paths = [], set()
    for error in validator(plugins).iter_errors(f.data):
        for leaf in _leaves(error, best_match):
            problems += _problems(f, leaf)
        paths.add(tuple(error.absolute_path))
    return problems, paths


def _empty_as_text(f: LoadedFile, plugins: bool) -> None:
    """A value written as nothing (`description:`) is null in YAML; where the schema takes a string and not null,
    it is the empty string, as vmrules files have always read it (null stays where it means something: an
    expected row's `severity:` or `end:`)."""
    errors = list(validator(plugins).iter_errors(f.data))
    while errors:
        e = errors.pop()
        errors += e.context or []
        path = tuple(e.absolute_path)
        if e.validator == "type" and e.instance is None and path in f.empty and "string" in e.validator_value:
            parent = f.data
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]] = ""


def _leaves(e: ValidationError, best_match: Callable[[list[ValidationError]], ValidationError]) \
        -> list[ValidationError]:
    """What to say of one error: best_match cuts anyOf/oneOf noise by picking one branch; every error of
    that branch is said (two wrong values of one expected row are two problems), each cut the same way."""
    best = best_match([e])
    if best is e or not e.context:
        return [best]
    top = best
    while top.parent is not None and top.parent is not e:
        top = top.parent
    branch = top.relative_schema_path[0] if top.relative_schema_path else None
    return [leaf for c in e.context if c.relative_schema_path and c.relative_schema_path[0] == branch
            for leaf in _leaves(c, best_match)] or [best]


def _problems(f: LoadedFile, e: ValidationError) -> list[Problem]:
    """What one schema error says: each unknown key on its own, and nothing that another problem
    of the same object already explains (hints.py)."""
    path = tuple(e.absolute_path)
    allowed = e.schema.get("properties", {}) if isinstance(e.schema, dict) else {}
    match e.validator:
        case "additionalProperties":
            out = []
            for key in (k for k in e.instance if k not in allowed):
                more = hints.unknown_key(path, e.instance, key, allowed)
                if more is not None:
                    out.append(Problem(f.where_key(path + (key,)),
                                       f"{_describe(path)}unknown key {excerpt(key)}{more}"))
            return out
        case "required":
            missing = next(k for k in e.validator_value if k not in e.instance)
            if hints.missing_is_explained(path, e.instance, missing, allowed):
                return []
        case "pattern" if path[:1] == ("tests",) and path[-1:] == ("rule",) and e.instance in _rule_names(f.data):
            return []     # the test names a rule whose name is wrong: said at the rule
    return [_problem(f, e)]


def _rule_names(doc: Any) -> set[str]:
    rules = doc.get("rules") if isinstance(doc, dict) else None
    return {r["name"] for r in rules if isinstance(r, dict) and isinstance(r.get("name"), str)} \
        if isinstance(rules, list) else set()


def _problem(f: LoadedFile, e: ValidationError) -> Problem:
    path = tuple(e.absolute_path)
    where = _describe(path)
    match e.validator:
        case "required":
            missing = [k for k in e.validator_value if k not in e.instance]
            return Problem(f.where(path), f"{where}missing required key {missing[0]!r}")
        case "propertyNames":
            return Problem(f.where_key(path + (e.instance,)), f"{where}invalid name {excerpt(e.instance)}: "
                           "use letters, digits and _, not starting with a digit")
        case "const" if path == ("version",):
            return Problem(f.where(path), f"unsupported version {excerpt(e.instance)}: this vmrules reads version 1")
        case "enum" if e.instance is None:
            return Problem(f.where(path), f"{where}expected one of: {', '.join(map(str, e.validator_value))}, got "
                           "nothing (null)")
        case "enum":
            close = difflib.get_close_matches(e.instance, [str(v) for v in e.validator_value], n=1) \
                if isinstance(e.instance, str) else []
            more = f"; did you mean {close[0]!r}?" if close else ""
            return Problem(f.where(path), f"{where}{excerpt(e.instance)} is not one of: "
                           f"{', '.join(map(str, e.validator_value))}{more}")
        case "anyOf" if _json_type(e.instance, "number") and any(
                _DURATION in c.schema.get("pattern", "") for c in e.context if isinstance(c.schema, dict)):
            return Problem(f.where(path), f"{where}{excerpt(e.instance)} is not a duration: add a unit "
                           f"(ms s m h d w), e.g. {excerpt(e.instance)}s, or write 0")
        case "type" if _DURATION in e.schema.get("pattern", "") and _json_type(e.instance, "number"):
            return Problem(f.where(path), f"{where}{excerpt(e.instance)} is not a duration: add a unit "
                           f"(ms s m h d w), e.g. {excerpt(e.instance)}s")
        case "type":
            want = e.validator_value if isinstance(e.validator_value, str) else " or ".join(e.validator_value)
            got = _kind(e.instance) if path or isinstance(e.instance, list) else \
                "a plain value (this is not a vmrules rule file; its content is not shown)"
            return Problem(f.where(path), f"{where}expected {_noun(want)}, got {got}")
        case "pattern":
            return Problem(f.where(path), f"{where}{_pattern_message(e)}")
        case "minLength" | "minItems" | "minProperties":
            return Problem(f.where(path), f"{where}must not be empty")
        case "minimum":
            return Problem(f.where(path),
                           f"{where}{excerpt(e.instance)} is less than the minimum of {e.validator_value}")
        case "uniqueItems":
            return Problem(f.where(path), f"{where}lists an item twice")
    return Problem(f.where(path), f"{where}{cut(e.message, 160)}")


def _pattern_message(e: ValidationError) -> str:
    if _DURATION in e.validator_value:
        return f"{excerpt(e.instance)} is not a duration: use a number and a unit (ms s m h d w), e.g. 30s, 5m, 1h30m"
    return f"{excerpt(e.instance)} is not a valid name: use letters, digits and _, not starting with a digit"


def _describe(path: tuple[Any, ...]) -> str:
    """A short human prefix for where in the document an error is, e.g. `rules[2].valid: `."""
    if not path:
        return ""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text + ": "


def _noun(json_type: str) -> str:
    return {"object": "a mapping", "array": "a list", "string": "a string", "number": "a number",
            "integer": "an integer", "boolean": "true or false"}.get(json_type, json_type)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (int, float)):
        return f"the number {excerpt(value)}"
    return f"the string {excerpt(value)}" if isinstance(value, str) else type(value).__name__


# -- a fast yes/no check over the same schema ---------------------------------
# jsonschema explains what is wrong but costs microseconds per node; valid files
# (nearly all of them) are confirmed by closures compiled from the very same
# schema, and only a file that fails is handed to jsonschema for its messages.

Check = Callable[[Any], bool]
_IGNORED = {"$schema", "$id", "title", "description", "$defs", "then"}


def is_valid(doc: Any, plugins: bool = True) -> bool:
    """True when `doc` satisfies the schema (agrees with jsonschema; tested).

    A schema using keywords the fast check does not know (a plugin's) always goes to jsonschema.
    """
    check = fast_check(plugins)
    return check is not None and check(doc)


@lru_cache(maxsize=2)
def fast_check(plugins: bool = True) -> Check | None:
    """The schema compiled to closures; None when it uses a keyword they do not know (left to jsonschema)."""
    try:
        return _Compiler(schema(plugins)).compile(schema(plugins))
    except ValueError:
        return None


def _json_type(value: Any, name: str) -> bool:
    match name:
        case "object":
            return isinstance(value, dict)
        case "array":
            return isinstance(value, list)
        case "string":
            return isinstance(value, str)
        case "boolean":
            return isinstance(value, bool)
        case "null":
            return value is None
        case "number":
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        case "integer":
            return (isinstance(value, int) and not isinstance(value, bool)) or (
                isinstance(value, float) and value.is_integer())
    raise ValueError(f"unknown JSON type {name}")


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1."""
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


class _Compiler:
    def __init__(self, root: dict[str, Any]):
        self.root = root
        self.refs: dict[str, Check] = {}

    def ref(self, ref: str) -> Check:
        if not ref.startswith("#/$defs/") or ref.removeprefix("#/$defs/") not in self.root.get("$defs", {}):
            raise ValueError(f"the fast schema check follows only references into $defs, not {ref!r}")
        if ref not in self.refs:
            target = self.root["$defs"][ref.removeprefix("#/$defs/")]
            self.refs[ref] = lambda v: compiled(v)
            compiled = self.compile(target)
            self.refs[ref] = compiled
        return self.refs[ref]

    def compile(self, node: dict[str, Any]) -> Check:
        checks: list[Check] = []
        for key, arg in node.items():
            if key in _IGNORED:
                continue
            make = getattr(self, "k_" + key.lstrip("$"), None)
            if make is None:
                raise ValueError(f"the fast schema check does not know the keyword {key!r}")
            checks.append(make(arg, node))
        if len(checks) == 1:
            return checks[0]
        return lambda v: all(c(v) for c in checks)

    def k_ref(self, ref: str, _node: dict[str, Any]) -> Check:
        if ref not in self.refs:
            self.ref(ref)
        return lambda v: self.refs[ref](v)

    def k_type(self, name: str | list[str], _node: dict[str, Any]) -> Check:
        if isinstance(name, list):
            return lambda v: any(_json_type(v, n) for n in name)
        return lambda v: _json_type(v, name)

    def k_const(self, want: Any, _node: dict[str, Any]) -> Check:
        return lambda v: _same(v, want)

    def k_enum(self, options: list[Any], _node: dict[str, Any]) -> Check:
        return lambda v: any(_same(v, o) for o in options)

    def k_pattern(self, pattern: str, _node: dict[str, Any]) -> Check:
        rx = _ecma(pattern)
        return lambda v: not isinstance(v, str) or rx.search(v) is not None

    def k_minLength(self, n: int, _node: dict[str, Any]) -> Check:
        return lambda v: not isinstance(v, str) or len(v) >= n

    def k_minimum(self, n: float, _node: dict[str, Any]) -> Check:
        return lambda v: not _json_type(v, "number") or v >= n

    def k_minItems(self, n: int, _node: dict[str, Any]) -> Check:
        return lambda v: not isinstance(v, list) or len(v) >= n

    def k_maxItems(self, n: int, _node: dict[str, Any]) -> Check:
        return lambda v: not isinstance(v, list) or len(v) <= n

    def k_minProperties(self, n: int, _node: dict[str, Any]) -> Check:
        return lambda v: not isinstance(v, dict) or len(v) >= n

    def k_uniqueItems(self, on: bool, _node: dict[str, Any]) -> Check:
        def unique(v: Any) -> bool:
            if not on or not isinstance(v, list):
                return True
            seen = [json.dumps(x, sort_keys=True) + type(x).__name__ for x in v]
            return len(set(seen)) == len(seen)
        return unique

    def k_required(self, keys: list[str], _node: dict[str, Any]) -> Check:
        return lambda v: not isinstance(v, dict) or all(k in v for k in keys)

    def k_properties(self, props: dict[str, Any], _node: dict[str, Any]) -> Check:
        compiled = {k: self.compile(p) for k, p in props.items()}
        return lambda v: not isinstance(v, dict) or all(compiled[k](x) for k, x in v.items() if k in compiled)

    def k_additionalProperties(self, extra: bool | dict[str, Any], node: dict[str, Any]) -> Check:
        known = set(node.get("properties", {}))
        if extra is False:
            return lambda v: not isinstance(v, dict) or all(k in known for k in v)
        if extra is True:
            return lambda v: True
        sub = self.compile(extra)
        return lambda v: not isinstance(v, dict) or all(sub(x) for k, x in v.items() if k not in known)

    def k_propertyNames(self, names: dict[str, Any], _node: dict[str, Any]) -> Check:
        sub = self.compile(names)
        return lambda v: not isinstance(v, dict) or all(sub(k) for k in v)

    def k_items(self, items: dict[str, Any], _node: dict[str, Any]) -> Check:
        sub = self.compile(items)
        return lambda v: not isinstance(v, list) or all(sub(x) for x in v)

    def k_allOf(self, subs: list[dict[str, Any]], _node: dict[str, Any]) -> Check:
        compiled = [self.compile(x) for x in subs]
        return lambda v: all(c(v) for c in compiled)

    def k_anyOf(self, subs: list[dict[str, Any]], _node: dict[str, Any]) -> Check:
        compiled = [self.compile(x) for x in subs]
        return lambda v: any(c(v) for c in compiled)

    def k_oneOf(self, subs: list[dict[str, Any]], _node: dict[str, Any]) -> Check:
        compiled = [self.compile(x) for x in subs]
        return lambda v: sum(1 for c in compiled if c(v)) == 1

    def k_if(self, cond: dict[str, Any], node: dict[str, Any]) -> Check:
        test = self.compile(cond)
        then = self.compile(node.get("then", {}))
        return lambda v: not test(v) or then(v)
