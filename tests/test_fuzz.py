"""Hostile input: whatever bytes a rule file holds, only vmrules' own errors come out."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmrules import expr
from vmrules.config.load import load_text
from vmrules.config.validate import validate_paths
from vmrules.errors import ConfigError

YAMLISH = st.text(alphabet=st.sampled_from(list("version: 1\nrules:- name{}[]'\"&*!|>#%@`,?\t ~xq0.5e=_-")),
                  max_size=300)
GOOD = Path(__file__).parent.parent / "rules" / "node.yaml"


@settings(max_examples=300, deadline=None)
@given(YAMLISH)
def test_loader_raises_only_config_errors(text: str) -> None:
    try:
        load_text(text, "fuzz.yaml")
    except ConfigError as exc:
        assert exc.problems and all(p.location.path == "fuzz.yaml" for p in exc.problems)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(GOOD.read_text()) - 1), st.binary(min_size=1, max_size=8))
def test_validate_survives_corrupted_files(at: int, junk: bytes) -> None:
    raw = GOOD.read_bytes()
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "r.yaml").write_bytes(raw[:at] + junk + raw[at + len(junk):])
        result = validate_paths([d])
        assert all(p.location.path.endswith("r.yaml") and p.location.line >= 1 for p in result.problems)


EXPRISH = st.text(alphabet=st.sampled_from(list("value env instance and or not ()=!~<>\"'\\.*0123456789-+eE_")),
                  max_size=60)


@settings(max_examples=500, deadline=None)
@given(EXPRISH)
def test_expression_parser_raises_only_expr_errors(text: str) -> None:
    try:
        expr.parse(text)
    except expr.ExprError as exc:
        assert 0 <= exc.offset <= len(text)
