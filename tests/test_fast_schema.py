"""The fast schema check agrees with jsonschema; parallel validation equals serial validation."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from vmrules.config import schema, validate
from vmrules.config.load import load_text

ROOT = Path(__file__).parent.parent
CASES = yaml.safe_load((Path(__file__).parent / "cases" / "validate.yaml").read_text())
GOOD = [load_text(p.read_text()).data for p in sorted((ROOT / "rules").glob("*.yaml"))] + \
       [load_text((ROOT / "examples" / "seed-layout" / "rules.yaml").read_text()).data]


def jsonschema_valid(doc: Any) -> bool:
    return not any(True for _ in schema.validator().iter_errors(doc))


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_agrees_on_every_case(case: dict[str, Any]) -> None:
    try:
        doc = load_text(case["yaml"]).data
    except Exception:  # noqa: BLE001 - YAML-level cases never reach the schema
        return
    assert schema.is_valid(doc) == jsonschema_valid(doc)


def test_agrees_on_good_files() -> None:
    for doc in GOOD:
        assert schema.is_valid(doc) and jsonschema_valid(doc)


junk = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False), st.text(max_size=5),
                 st.sampled_from(["5m", "0s", "csv", "upsert", "x-y", "_a", "1h30m", "POST", "", "snappy"]),
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


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(range(len(GOOD))), st.data(), st.integers(0, 2))
def test_agrees_on_mutated_files(which: int, data: st.DataObject, mode: int) -> None:
    doc = copy.deepcopy(GOOD[which])
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
    assert schema.is_valid(doc) == jsonschema_valid(doc)


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
