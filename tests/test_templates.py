"""Sandboxed templates, the no-network promise of validate, and label values that cannot steer paths."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from vmrules.config.validate import validate_paths
from vmrules.templates import TemplateError, render


@pytest.mark.parametrize("payload", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ rule.__class__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ lipsum.__globals__ }}",
    "{{ ''|attr('__class__') }}",
    "{{ rule.name.format.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{% for x in range(10**9) %}{% endfor %}",
])
def test_escape_payloads_are_refused(payload: str) -> None:
    with pytest.raises(TemplateError):
        render(payload, {"rule": {"name": "r"}})


def test_output_size_is_capped() -> None:
    with pytest.raises(TemplateError, match="longer than"):
        render("{{ rule.name * 10000 }}", {"rule": {"name": "r"}})


def test_payload_in_a_rule_file_is_caught_by_validate(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "version: 1\ntargets:\n  t: {type: csv, path: \"{{ ''.__class__.__mro__ }}.csv\"}\n")
    result = validate_paths([str(tmp_path)])
    assert [p.message for p in result.problems] == [
        "target 't': path: template not allowed: access to attribute '__class__' of 'str' object is unsafe."]


def test_validate_makes_no_network_calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("validate opened a socket")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("VM_TOKEN", "sentinel-token-value")
    (tmp_path / "r.yaml").write_text("version: 1\ndatasource: {url: 'http://vm:8428', bearer_token: '${VM_TOKEN}'}\n"
                                     "rules: [{name: r, query: up}]\n")
    result = validate_paths([str(tmp_path)])
    assert result.ok
    assert result.ruleset is not None and result.ruleset.rules[0].datasource.bearer_token == "${VM_TOKEN}"


@pytest.mark.parametrize("team, message", [
    ("../../etc", "leaves the output directory"),
    ("/etc", "is absolute"),
    ("a\\u0000b", "NUL"),
])
def test_label_values_cannot_steer_paths_out(tmp_path: Path, team: str, message: str) -> None:
    (tmp_path / "r.yaml").write_text(
        "version: 1\ntargets:\n  t: {type: csv, path: '{{ rule.labels.team }}/x.csv'}\n"
        f'rules:\n  - {{name: r, query: up, labels: {{team: "{team}"}}, route: [{{to: t}}]}}\n')
    result = validate_paths([str(tmp_path)])
    assert len(result.problems) == 1 and message in result.problems[0].message
    assert "(rendered for rule 'r')" in result.problems[0].message
