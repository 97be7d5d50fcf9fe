"""Shared fixtures: a real VictoriaMetrics with deterministic data, a PostgreSQL server, and the fault server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.data import END_S, dataset, export_jsonl
from tests.support.servers import FaultServer, Postgres, VictoriaMetrics
from vmrules.net import http


@pytest.fixture(scope="session")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    """A VictoriaMetrics holding tests.support.data.dataset(); missing binary is a failure, not a skip."""
    server = VictoriaMetrics(str(tmp_path_factory.mktemp("vm")))
    try:
        data = dataset()
        server.import_lines(data)
        server.wait_for('{__name__=~"cpu_usage|disk_free"}', len(data), END_S)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server of the suite's own; a missing server is a failure, not a skip."""
    server = Postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries without the real backoff pauses."""
    monkeypatch.setattr(http, "BACKOFF_S", 0.01)


@pytest.fixture
def server() -> Iterator[FaultServer]:
    """A scripted fault server; tests set `server.script`."""
    s = FaultServer([])
    yield s
    s.stop()


def file_rules(tmp_path: Path, body: str) -> Path:
    """A rule folder whose file reads the test data through the file: datasource; `body` holds targets and rules."""
    data = tmp_path / "data.jsonl"
    data.write_text(export_jsonl())
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    (folder / "r.yaml").write_text(f"version: 1\ndatasource: {{url: 'file:{data}'}}\n{body}")
    return folder
