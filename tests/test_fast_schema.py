"""The fast schema check agrees with jsonschema, plugins' options included; parallel validation equals serial."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from vmrules.config import schema, validate
from vmrules.config.load import load_text
from vmrules.targets.registry import Plugin

ROOT = Path(__file__).parent.parent
CASES = yaml.safe_load((Path(__file__).parent / "cases" / "validate.yaml").read_text())
GOOD = [load_text(p.read_text()).data for p in sorted((ROOT / "rules").glob("*.yaml"))] + \
       [load_text((ROOT / "examples" / "seed-layout" / "rules.yaml").read_text()).data]


def jsonschema_valid(doc: Any, plugins: bool = True) -> bool:
    return not any(True for _ in schema.validator(plugins).iter_errors(doc))


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_agrees_on_every_case(case: dict[str, Any]) -> None:
    try:
        doc = load_text(case["yaml"]).data
    except Exception:  # noqa: BLE001 - YAML-level cases never reach the schema
        return
    assert schema.is_valid(doc) == jsonschema_valid(doc)


def test_agrees_on_good_files() -> None:
    assert schema.fast_check(False) is not None, "the built-in schema uses a keyword the fast check does not know"
    for doc in GOOD:
        assert schema.is_valid(doc) and jsonschema_valid(doc)


junk = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False), st.text(max_size=5),
                 st.sampled_from(["5m", "0s", "csv", "upsert", "x-y", "_a", "1h30m", "POST", "", "snappy",
                                  "5m\n", "a\n"]),
                 st.lists(st.sampled_from(["rule", "value", "t", 1]), max_size=3),
                 st.dictionaries(st.sampled_from(["min", "max", "to", "type", "path", "url", "k"]),
                                 st.one_of(st.integers(0, 2), st.text(max_size=3)), max_size=2))


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, path + (i,))
    return out


def _mutate(doc: Any, data: st.DataObject, mode: int) -> None:
    """One change at a random place: a junk value, a key removed, or a key added."""
    path = data.draw(st.sampled_from(_paths(doc)[1:]))
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    if mode == 0:
        parent[path[-1]] = data.draw(junk)
    elif mode == 1 and isinstance(parent, dict):
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[data.draw(st.sampled_from(["extra", "when", "for", "severity", "columns", "mode"]))] = data.draw(junk)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(range(len(GOOD))), st.data(), st.integers(0, 2))
def test_agrees_on_mutated_files(which: int, data: st.DataObject, mode: int) -> None:
    doc = copy.deepcopy(GOOD[which])
    _mutate(doc, data, mode)
    assert schema.is_valid(doc) == jsonschema_valid(doc)


# -- plugins: their option schemas are merged into the schema at run time --------------------
def _example_plugin() -> Any:
    """The example plugin's module, loaded from its file (its folder on sys.path would install it)."""
    path = ROOT / "examples" / "plugins" / "vmrules-markdown" / "vmrules_markdown" / "__init__.py"
    spec = importlib.util.spec_from_file_location("vmrules_markdown_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MARKDOWN = _example_plugin().SCHEMA

PLUGIN_DOC = {"version": 1, "targets": {"md": {"type": "markdown", "path": "r.md", "title": "CPU", "max_rows": 5,
                                               "columns": ["rule", "value"]},
                                        "c": {"type": "csv", "path": "c.csv"}},
              "rules": [{"name": "r", "query": "up", "route": [{"to": ["md", "c"]}]}]}


@contextlib.contextmanager
def plugin(options: dict[str, Any], name: str = "markdown") -> Iterator[None]:
    """A target plugin with these option schemas, as if installed."""
    caches = (schema.schema, schema.validator, schema.fast_check)
    was = schema.target_plugins
    schema.target_plugins = lambda: {name: Plugin(name, "file", options, "", None, "test")}  # type: ignore[assignment]
    for c in caches:
        c.cache_clear()
    try:
        yield
    finally:
        schema.target_plugins = was
        for c in caches:
            c.cache_clear()


@settings(max_examples=300, deadline=None)
@given(st.data(), st.integers(0, 2))
def test_agrees_on_mutated_files_with_a_plugin(data: st.DataObject, mode: int) -> None:
    with plugin(MARKDOWN):
        assert schema.fast_check(True) is not None and schema.is_valid(PLUGIN_DOC)
        doc = copy.deepcopy(PLUGIN_DOC)
        _mutate(doc, data, mode)
        assert schema.is_valid(doc) == jsonschema_valid(doc)


@pytest.mark.parametrize("options", [
    {"properties": {"pair": {"type": "array", "prefixItems": [{"type": "string"}]}}},   # draft 2020-12 only
    {"properties": {"n": {"$ref": "#/$defs/name", "maxLength": 1}}},                    # beside a $ref
    {"properties": {"n": {"$ref": "https://example.com/schema.json"}}},                 # never fetched
    {"properties": {"n": {"type": "number", "multipleOf": 0.1}}},                       # computed otherwise
], ids=["prefixItems", "ref_with_siblings", "remote_ref", "multipleOf"])
def test_a_schema_the_fast_check_would_read_otherwise_is_left_to_jsonschema(options: dict[str, Any]) -> None:
    with plugin(options, "odd"):
        assert schema.fast_check(True) is None and schema.fast_check(False) is not None
        assert not schema.is_valid({"version": 1, "targets": {"o": {"type": "odd"}}})


def test_jsonschema_still_judges_what_the_fast_check_leaves() -> None:
    with plugin({"properties": {"pair": {"type": "array", "prefixItems": [{"type": "string"}]}}}, "odd"):
        bad = load_text("version: 1\ntargets: {o: {type: odd, pair: [1]}}\n")
        good = load_text("version: 1\ntargets: {o: {type: odd, pair: [a, 1]}}\n")
        assert [p.message for p in schema.check(bad)[0]] == ["targets.o.pair[0]: expected a string, got the number 1"]
        assert schema.check(good) == ([], set())


def test_parallel_equals_serial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validate, "PARALLEL_MIN_FILES", 2)
    (tmp_path / "t.yaml").write_text("version: 1\ntargets: {o: {type: csv, path: '{{ rule.name }}.csv'}}\n")
    for i in range(12):
        bad = "    where: 'value >'\n" if i % 5 == 0 else ""
        (tmp_path / f"r{i:02d}.yaml").write_text(f"version: 1\nrules:\n  - name: r{i % 10}\n    query: up\n{bad}"
                                                  "    route: [{to: o}]\n")
    serial = validate.validate_paths([str(tmp_path)], jobs=1)
    parallel = validate.validate_paths([str(tmp_path)], jobs=2)
    assert serial.problems == parallel.problems
    assert len(serial.problems) == 5   # three bad expressions, two duplicate names
