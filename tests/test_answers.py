"""Bad answers give the right rows or one clear error, never wrong rows: on every parse path.

The paths: the streaming fast path (compact layout, cut in batches), the whole-answer fast
path, the json.loads fallback (any other layout), and the `file:` export source.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support import read
from tests.support.data import END_S
from tests.support.servers import FaultServer, Reply, matrix
from vmrules.cli import main
from vmrules.model import Datasource
from vmrules.sources.parse import finish_matrix, parse_answer
from vmrules.sources.prometheus import HttpSource
from vmrules.sources.result import FetchError
from vmrules.sources.stream import MatrixStream, NotCompact
from vmrules.window import Window

START_S = END_S - 600
WINDOW = ["--from", str(START_S), "--to", str(END_S)]
POINTS = [(END_S - 60 * i, str(float(i))) for i in range(10, -1, -1)]
REAL = [({"__name__": "m", "i": "a"}, POINTS)]
LONG = [({"i": str(i)}, POINTS) for i in range(40000)]       # about 10 MB: at least two batches of 4 MiB
FAKE = {"result": [{"metric": {"__name__": "fake"}, "values": [[END_S, "666"]]}]}

pytestmark = pytest.mark.usefixtures("fast_backoff")


def apply(tmp_path: Path, url: str, *args: str, extra: str = "") -> tuple[int, str, list[dict]]:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    (folder / "r.yaml").write_text(
        f"version: 1\ndatasource: {{url: '{url}'{extra}}}\n"
        "targets:\n  f: {type: csv, path: out.csv}\n"
        "rules:\n  - {name: r0, query: 'm', route: [{to: f}]}\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(out), *WINDOW, *args])
    rows = read.rows(str(out / "out.csv")) if (out / "out.csv").exists() else []
    return res.exit_code, res.stderr, rows


def streamed(body: bytes, batch_bytes: int = 64, cut: int = 7) -> list:
    """The streaming parse in small batches, the body fed in small pieces."""
    stream = MatrixStream(batch_bytes=batch_bytes)
    batches = []
    for i in range(0, len(body), cut):
        batches += stream.feed(body[i:i + cut])
    rest, envelope = stream.finish()
    return [finish_matrix(batches + rest, envelope)]


# -- data.result, located by the structure of the answer ------------------------
def test_a_result_array_before_data_is_not_read_as_rows(server: FaultServer, tmp_path: Path) -> None:
    body = matrix(REAL, before={"stats": FAKE})
    server.script = [Reply(200, body)]
    code, stderr, rows = apply(tmp_path, server.url)
    assert code == 0, stderr
    assert [(r["metric"], r["value"]) for r in rows] == [("m", float(v)) for _, v in POINTS]
    for parsed in (parse_answer(body, "matrix"), *streamed(body)):
        assert parsed.labels == [{"__name__": "m", "i": "a"}] and parsed.samples == len(POINTS)


@pytest.mark.parametrize("before", [
    {"stats": {"x": {"result": [1]}, "result": []}},               # nested, and empty
    {"note": 'a "result":[ in a string', "stats": FAKE},          # inside a string
    {'odd"result': [{"metric": {}, "values": [[1, "1"]]}]},        # a key that ends in "result
    {"data2": {"result": [{"metric": {}, "values": [[1, "1"]]}]}},
])
def test_data_result_is_found_whatever_comes_before_it(before: dict) -> None:
    body = matrix(REAL, before=before)
    for parsed in (parse_answer(body, "matrix"), *streamed(body, cut=3)):
        assert parsed.labels == [{"__name__": "m", "i": "a"}] and parsed.samples == len(POINTS)


def test_a_repeated_data_key_reads_as_json_does_or_is_refused() -> None:
    fake = b'{"resultType":"matrix","result":[{"metric":{"__name__":"fake"},"values":[[%d,"1"]]}]}' % END_S
    body = matrix(REAL)[:-1] + b',"data":' + fake + b"}"        # json.loads keeps the last "data"
    assert parse_answer(body, "matrix").labels == [{"__name__": "fake"}]
    assert [b.labels for b in source_batches(body)] == [[{"__name__": "fake"}]]
    long = matrix(LONG)[:-1] + b',"data":' + fake + b"}"
    with pytest.raises(FetchError, match="the answer changed its layout midway"):   # batches already out
        source_batches(long)


@pytest.mark.parametrize("body", [
    matrix(REAL)[:-1] + b',"data":{"result":[]}}',                        # the array cut out is not data.result
    matrix(REAL)[:-1] + b',"x":}',                                        # broken after the array
    b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]}]}}',
    json.dumps(json.loads(matrix(REAL)), indent=1).encode(),
], ids=["two-data", "broken-tail", "vector", "pretty"])
def test_a_fallback_gets_every_byte_of_the_answer(body: bytes) -> None:
    stream = MatrixStream(batch_bytes=None)
    for i in range(0, len(body), 5):
        stream.feed(body[i:i + 5])
    with pytest.raises(NotCompact):
        stream.finish()
    assert stream.raw() == body


@pytest.mark.parametrize("tail", [
    b',"x":[[%d,"7"]]' % END_S,                  # another array of pairs after the values
    b',"x":[[%d,"7"],[%d,"8"]],"y":1' % (END_S, END_S - 60),
    b',"values2":[]',
    b',"x":"]]"',                                 # the series' end, spelled inside a string
    b',"5,6"\n:[0,[%d,"8"]]' % END_S,             # a key and a line break that would parse as points
])
def test_a_series_with_keys_after_its_values_reads_as_json_does(tail: bytes) -> None:
    """Keys after a series' values are never read as points: the fast path refuses the layout and the
    whole answer is parsed as JSON."""
    body = matrix(REAL + [({"i": "b"}, POINTS[:3])])
    cut = body.index(b"]]}") + 2
    body = body[:cut] + tail + body[cut:]
    for batch_bytes, cut in ((64, 7), (1 << 20, 1 << 20)):
        with pytest.raises(NotCompact):
            streamed(body, batch_bytes, cut)
    truth = json.loads(body)["data"]["result"]
    parsed = parse_answer(body, "matrix")
    fetched = source_batches(body)                  # HttpSource: the fast path's NotCompact, then the JSON parse
    for labels, values in ((parsed.labels, parsed.values.tolist()),
                           ([lab for b in fetched for lab in b.labels], [v for b in fetched for v in b.values])):
        assert labels == [r["metric"] for r in truth]
        assert sorted(values) == sorted(float(v) for r in truth for _, v in r["values"])
        assert len(values) == len(POINTS) + 3


def source_batches(body: bytes) -> list:
    """The answer through HttpSource's streaming path, from a fault server."""
    server = FaultServer([Reply(200, body)])
    source = HttpSource(Datasource(url=server.url))
    try:
        return list(source.batches("m", Window(START_S * 1000, END_S * 1000, 60_000)))
    finally:
        source.close()
        server.stop()


# -- one point per (series, timestamp), only inside the window ------------------
def test_repeated_timestamps_keep_the_last_point(server: FaultServer, tmp_path: Path) -> None:
    pts = [(END_S - 120, "1"), (END_S - 60, "2"), (END_S - 120, "3"), (END_S, "4"), (END_S, "5")]
    server.script = [Reply(200, matrix([({"__name__": "m"}, pts)]))]
    code, stderr, rows = apply(tmp_path, server.url)
    assert code == 0, stderr
    assert [(r["timestamp"], r["value"]) for r in rows] == [
        (END_S - 120, 3.0), (END_S - 60, 2.0), (END_S, 5.0)]


def test_points_outside_the_window_are_dropped(server: FaultServer, tmp_path: Path) -> None:
    pts = [(START_S - 60, "1"), (START_S, "2"), (END_S, "3"), (END_S + 60, "4"), (END_S + 86400, "5")]
    server.script = [Reply(200, matrix([({"__name__": "m"}, pts)]))]
    code, stderr, rows = apply(tmp_path, server.url)
    assert code == 0, stderr
    assert [(r["timestamp"], r["value"]) for r in rows] == [(START_S, 2.0), (END_S, 3.0)]


def test_each_request_of_a_split_window_keeps_its_own_points(server: FaultServer, tmp_path: Path) -> None:
    server.script = lambda seen: Reply(200, matrix(REAL))    # every request gets the whole window's points
    code, stderr, rows = apply(tmp_path, server.url, extra=", max_points_per_series: 4")
    assert code == 0, stderr
    assert len(server.seen) == 3
    assert [(r["timestamp"], r["value"]) for r in rows] == [(t, float(v)) for t, v in POINTS]


def test_incremental_runs_never_deliver_a_point_at_or_before_the_watermark(server: FaultServer,
                                                                           tmp_path: Path) -> None:
    server.script = lambda seen: Reply(200, matrix(REAL))    # the same eleven points, whatever is asked
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "r.yaml").write_text(
        f"version: 1\ndatasource: {{url: '{server.url}'}}\n"
        "targets:\n  f: {type: csv, path: '{{ run.from }}.csv'}\n"
        "rules:\n  - {name: r0, query: m, range: 15m, route: [{to: f}]}\n")
    out = tmp_path / "out"
    for to in (END_S - 300, END_S):
        res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(out), "--incremental",
                                        "--lag", "0s", "--to", str(to)])
        assert res.exit_code == 0, res.stderr
    got = sorted(r["timestamp"] for f in out.glob("*.csv") for r in read.rows(str(f)))
    assert got == [t for t, _ in POINTS]


# -- label values are strings, on every path ------------------------------------
BAD_LABELS = [({"a": 1}, "label 'a' has the value 1, not a string"),
              ({"a": {"x": 1}}, 'label \'a\' has the value {"x": 1}, not a string'),
              ({"__name__": 5}, "label '__name__' has the value 5, not a string"),
              ({"a": None}, "label 'a' has the value null, not a string")]


@pytest.mark.parametrize("labels, message", BAD_LABELS, ids=["int", "object", "name", "null"])
def test_a_label_that_is_not_a_string_is_refused_alike_everywhere(server: FaultServer, tmp_path: Path,
                                                                  labels: dict, message: str) -> None:
    compact = matrix([({"i": "ok"}, POINTS), (labels, POINTS)])
    pretty = json.dumps(json.loads(compact), indent=1).encode()          # not compact: the fallback parse
    for body in (compact, pretty):
        with pytest.raises(FetchError) as info:
            parse_answer(body, "matrix")
        assert str(info.value) == message
    with pytest.raises(FetchError) as info:
        streamed(compact)
    assert str(info.value) == message
    export = tmp_path / "data.jsonl"
    export.write_text(json.dumps({"metric": {"__name__": "m", **labels}, "values": [1.0], "timestamps": [1]}) + "\n")
    for url, body, where in ((f"file:{export}", b"", f"{export}:1: "), (server.url, compact, "query_range: "),
                             (server.url, pretty, "query_range: ")):
        server.script = [Reply(200, body)]
        code, stderr, rows = apply(tmp_path, url)
        assert code == 1 and rows == []
        assert "error: rule r0: datasource " in stderr and where + message in stderr, stderr


def test_the_file_source_names_the_line_of_a_bad_label(tmp_path: Path) -> None:
    export = tmp_path / "data.jsonl"
    line = {"metric": {"__name__": "m"}, "values": [1.0], "timestamps": [END_S * 1000]}
    export.write_text(json.dumps(line) + "\n" + json.dumps({**line, "metric": {"__name__": "m", "a": 1}}) + "\n")
    code, stderr, _ = apply(tmp_path, f"file:{export}")
    assert code == 1 and f"{export}:2: label 'a' has the value 1, not a string" in stderr


# -- a series without points ------------------------------------------------------
def test_a_series_without_points_is_part_of_a_valid_answer(server: FaultServer, tmp_path: Path) -> None:
    body = matrix([({"i": "empty"}, []), *REAL, ({"i": "empty2"}, [])])
    for parsed in (parse_answer(body, "matrix"), *streamed(body, batch_bytes=16)):
        assert [lab["i"] for lab in parsed.labels] == ["empty", "a", "empty2"]
        assert parsed.series_id.tolist() == [1] * len(POINTS) and parsed.samples == len(POINTS)
    server.script = [Reply(200, body)]
    code, stderr, rows = apply(tmp_path, server.url)
    assert code == 0, stderr
    assert [(r["i"], r["value"]) for r in rows] == [("a", float(v)) for _, v in POINTS]


def test_a_long_streamed_answer_with_a_series_without_points(server: FaultServer) -> None:
    server.script = [Reply(200, matrix([({"i": "empty"}, []), *LONG]))]
    source = HttpSource(Datasource(url=server.url))
    try:
        batches = list(source.batches("m", Window(START_S * 1000, END_S * 1000, 60_000)))
    finally:
        source.close()
    assert len(batches) > 1
    assert sum(b.samples for b in batches) == len(LONG) * len(POINTS)
    assert sum(len(b.labels) for b in batches) == len(LONG) + 1


def test_a_long_answer_in_another_layout_falls_back_whole(server: FaultServer) -> None:
    big = [({"i": str(i)}, POINTS) for i in range(10000)]
    server.script = [Reply(200, json.dumps(json.loads(matrix(big)), indent=1).encode())]   # ~4 MB, not compact
    source = HttpSource(Datasource(url=server.url))
    try:
        (result,) = source.batches("m", Window(START_S * 1000, END_S * 1000, 60_000))
    finally:
        source.close()
    assert result.samples == 10000 * len(POINTS) and len(result.labels) == 10000
