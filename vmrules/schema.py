"""The JSON Schema of rule files, and its errors mapped onto YAML positions."""

from __future__ import annotations

import difflib
import json
from functools import lru_cache
from importlib import resources
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from vmrules.errors import Problem
from vmrules.load import LoadedFile


@lru_cache(maxsize=1)
def schema_text() -> str:
    """The schema shipped with the package (identical to schemas/vmrules.schema.json)."""
    return resources.files("vmrules").joinpath("data/vmrules.schema.json").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The schema as data."""
    return dict(json.loads(schema_text()))


@lru_cache(maxsize=1)
def validator() -> jsonschema.Draft202012Validator:
    """A compiled validator, built once per process."""
    return jsonschema.Draft202012Validator(schema())


def check(f: LoadedFile) -> tuple[list[Problem], set[tuple[Any, ...]]]:
    """Schema problems of one file, each at the YAML node that is wrong, and the paths that hold them."""
    if f.data is None:
        return [Problem(f.where(()), "file is empty: a rule file starts with `version: 1`")], {()}
    problems, paths = [], set()
    for error in validator().iter_errors(f.data):
        problems.append(_problem(f, best_match([error])))
        paths.add(tuple(error.absolute_path))
    return problems, paths


def _problem(f: LoadedFile, e: ValidationError) -> Problem:
    path = tuple(e.absolute_path)
    where = _describe(path)
    match e.validator:
        case "required":
            missing = [k for k in e.validator_value if k not in e.instance]
            return Problem(f.where(path), f"{where}missing required key {missing[0]!r}")
        case "additionalProperties":
            allowed = sorted(e.schema.get("properties", {}))
            extras = [k for k in e.instance if k not in allowed]
            key = extras[0] if extras else "?"
            hint = difflib.get_close_matches(key, allowed, n=1)
            more = f"; did you mean {hint[0]!r}?" if hint else f"; allowed: {', '.join(allowed)}"
            return Problem(f.where_key(path + (key,)), f"{where}unknown key {key!r}{more}")
        case "propertyNames":
            return Problem(f.where_key(path + (e.instance,)), f"{where}invalid name {e.instance!r}: "
                           "use letters, digits and _, not starting with a digit")
        case "const" if path == ("version",):
            return Problem(f.where(path), f"unsupported version {e.instance!r}: this vmrules reads version 1")
        case "enum":
            return Problem(f.where(path), f"{where}{e.instance!r} is not one of: "
                           f"{', '.join(map(str, e.validator_value))}")
        case "type":
            want = e.validator_value if isinstance(e.validator_value, str) else " or ".join(e.validator_value)
            return Problem(f.where(path), f"{where}expected {_noun(want)}, got {_kind(e.instance)}")
        case "pattern":
            return Problem(f.where(path), f"{where}{_pattern_message(e)}")
        case "minLength" | "minItems" | "minProperties":
            return Problem(f.where(path), f"{where}must not be empty")
        case "uniqueItems":
            return Problem(f.where(path), f"{where}lists an item twice")
    return Problem(f.where(path), f"{where}{e.message}")


def _pattern_message(e: ValidationError) -> str:
    if "ms|s|m|h|d|w" in e.validator_value:
        return f"{e.instance!r} is not a duration: use a number and a unit (ms s m h d w), e.g. 30s, 5m, 1h30m"
    return f"{e.instance!r} is not a valid name: use letters, digits and _, not starting with a digit"


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
        return f"the number {value!r}"
    return f"the string {value!r}" if isinstance(value, str) else type(value).__name__
