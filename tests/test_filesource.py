"""The file: datasource reads VictoriaMetrics export files and answers plain selectors."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from tests.support.data import END_S, dataset, export_jsonl
from tests.support.servers import VictoriaMetrics
from vmrules.sources.exportfile import ExportFile, FileSource, parse_selector
from vmrules.sources.result import FetchError
from vmrules.window import Window


@pytest.fixture
def export(tmp_path: Path) -> str:
    path = tmp_path / "data.jsonl"
    path.write_text(export_jsonl())
    return str(path)


def test_bare_infinity_is_accepted(export: str) -> None:
    assert "Inf," in Path(export).read_text()
    data = ExportFile(export)
    assert any(math.isinf(v) for vals in data.values for v in vals)


@pytest.mark.parametrize("query, count", [
    ("cpu_usage", 12), ('cpu_usage{env="prod"}', 6), ("cpu_usage{env!='prod'}", 6),
    ('cpu_usage{instance=~"host-0[0-3]", env!~"stag.*"}', 2), ('{__name__="disk_free"}', 4),
    ('{__name__=~"cpu_usage|disk_free", instance="host-00"}', 2), ("nothing", 0),
])
def test_selectors(export: str, query: str, count: int) -> None:
    w = Window((END_S - 600) * 1000, END_S * 1000, 60_000)
    (r,) = FileSource("file:" + export).fetch(query, w)
    assert len(r.labels) == count
    assert r.samples == count * 11


@pytest.mark.parametrize("query", ["rate(cpu_usage[5m])", "sum(cpu_usage)", "cpu_usage > 5", "cpu_usage[5m]",
                                   '{env="prod"} or up', '{instance=~".*"}'])
def test_anything_else_is_refused(export: str, query: str) -> None:
    with pytest.raises(FetchError, match="not supported by the file datasource|matches every series"):
        FileSource("file:" + export).fetch(query, Window(0, 60_000, 60_000))


def test_missing_file_is_clear(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="cannot read"):
        FileSource(f"file:{tmp_path}/none.jsonl").fetch("up", Window(0, 60_000, 60_000))


def test_bad_line_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_text('{"metric":{"__name__":"a"},"values":[1],"timestamps":[1]}\nnot json\n')
    with pytest.raises(FetchError, match=r"bad.jsonl:2: not a VictoriaMetrics export line"):
        ExportFile(str(p))


def test_parse_selector_values() -> None:
    (m,) = parse_selector('up{job="a\\"b", x=~\'y.*\', y="\\x41\\u00e9"}')
    assert [(x.label, x.op, x.value) for x in m] == [("__name__", "=", "up"), ("job", "=", 'a"b'), ("x", "=~", "y.*"),
                                                     ("y", "=", "A\u00e9")]
    a, b = parse_selector('{a="1" or b=~"2|3"}')                      # MetricsQL's or: either group
    assert [(x.label, x.value) for x in a] == [("a", "1")] and [(x.label, x.value) for x in b] == [("b", "2|3")]


@pytest.mark.parametrize("query, message", [
    ("rate(up[5m])", "not supported by the file datasource: it answers plain series selectors"),
    ("up offset 5m", "not supported by the file datasource"),
    ("up{a=~\"(?=x)\"}", "invalid regex"),                             # Python's re takes lookaheads, RE2 refuses
    ("up{a=\"\\d\"}", "unknown escape sequence"),                     # Go's escapes, as the servers read them
    ("{a=~\".*\"}", "matches every series"),
])
def test_what_validate_refuses_the_file_datasource_refuses_alike(query: str, message: str) -> None:
    with pytest.raises(FetchError, match=re.escape(message)):
        parse_selector(query)


def test_same_answer_as_victoriametrics(export: str, vm: VictoriaMetrics) -> None:
    """For aligned data the file datasource answers as the server does."""
    from vmrules.model import Datasource
    from vmrules.sources.prometheus import HttpSource
    for step in (60_000, 300_000):
        w = Window((END_S - 7200) * 1000 + 30_000, END_S * 1000, step)
        for query in ('cpu_usage{env="prod"}', 'cpu_usage{instance=~"host-0[12].*", env!~"st.g.+"}',
                      '{__name__=~"cpu_.*|mem_.*", env="prod"}', "(cpu_usage)"):
            (a,) = FileSource("file:" + export).fetch(query, w)
            (b,) = HttpSource(Datasource(url=vm.url)).fetch(query, w)
            key_a = sorted(tuple(sorted(lab.items())) for lab in a.labels)
            key_b = sorted(tuple(sorted(lab.items())) for lab in b.labels)
            assert key_a == key_b and key_a, query
            assert a.samples == b.samples
            assert sorted(zip(a.ts_ms.tolist(), a.values.tolist(), strict=True)) == \
                sorted(zip(b.ts_ms.tolist(), b.values.tolist(), strict=True))
    assert len(dataset()) == 16
    # MetricsQL's {a or b} (VictoriaMetrics 1.79.5 predates it): the series of either selector, once
    w = Window((END_S - 7200) * 1000, END_S * 1000, 60_000)
    (both,) = FileSource("file:" + export).fetch('cpu_usage{env="prod" or instance=~"host-0[0-3]"}', w)
    (a,) = FileSource("file:" + export).fetch('cpu_usage{env="prod"}', w)
    (b,) = FileSource("file:" + export).fetch('cpu_usage{instance=~"host-0[0-3]"}', w)
    union = {tuple(sorted(lab.items())) for lab in a.labels + b.labels}
    assert sorted(tuple(sorted(lab.items())) for lab in both.labels) == sorted(union)
    assert len(union) < len(a.labels) + len(b.labels)
