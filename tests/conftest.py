"""Shared fixtures: a real VictoriaMetrics with deterministic data, and the fault server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.data import END_S, dataset
from tests.support.servers import VictoriaMetrics


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
