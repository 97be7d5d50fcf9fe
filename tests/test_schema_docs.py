"""The schema file, its packaged copy, its descriptions, and the README reference generated from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

from vmrules.config import docs, schema

ROOT = Path(__file__).parent.parent


def test_packaged_schema_is_identical_to_the_repository_copy() -> None:
    assert (ROOT / "schemas" / "vmrules.schema.json").read_text() == schema.schema_text()


def test_schema_is_valid_draft_2020_12() -> None:
    doc = json.loads(schema.schema_text())
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(doc)


def _objects(node: Any, path: str = "#") -> list[tuple[str, dict]]:
    out = []
    if isinstance(node, dict):
        if "properties" in node:
            out.append((path, node))
        for k, v in node.items():
            out += _objects(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _objects(v, f"{path}/{i}")
    return out


def test_every_property_has_a_description_and_unknown_keys_are_rejected() -> None:
    doc = schema.schema()
    defs = doc["$defs"]
    for path, obj in _objects(doc):
        if "if" in path.split("/")[-1:] or "/if" in path:
            continue
        for key, prop in obj["properties"].items():
            target = defs[prop["$ref"].split("/")[-1]] if "$ref" in prop else prop
            assert prop.get("description") or target.get("description"), f"{path}/{key}"
        if path == "#/$defs/expected_row":      # any label may be expected: its values are strings
            assert obj["additionalProperties"]["type"] == "string"
        elif path != "#/$defs/target":
            assert obj.get("additionalProperties") is False, path


def test_readme_reference_is_current() -> None:
    readme = (ROOT / "README.md").read_text()
    assert docs.splice(readme) == readme, "run: python -m vmrules.config.docs README.md"
    assert "| `max_points_per_series` |" in readme


def test_built_in_type_names_agree() -> None:
    from vmrules.targets.registry import BUILT_IN, get
    enum = schema.schema()["$defs"]["target"]["properties"]["type"]["enum"]
    assert list(BUILT_IN) == enum[:len(BUILT_IN)]
    assert all(get(name).name == name and get(name).kind == kind for name, (kind, _) in BUILT_IN.items())


def test_the_schema_lists_the_threshold_kinds_of_the_table() -> None:
    """A new comparison is one entry in vmrules/thresholds.py and its key in the schema: they agree."""
    from vmrules.thresholds import COMPARISONS, CONDITION_KEYS

    doc = json.loads(schema.schema_text())
    threshold = doc["$defs"]["threshold"]["properties"]
    clear = threshold["clear"]["properties"]
    for key in CONDITION_KEYS:
        assert key in threshold and key in clear, key
    for key, c in COMPARISONS.items():
        assert threshold[key]["description"] == c.text == clear[key]["description"], key
    assert set(clear) == set(CONDITION_KEYS)
