"""Datasource client and answer parsing, against a scripted fault server on loopback."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.servers import FaultServer, Reply, matrix
from vmrules.model import Datasource
from vmrules.sources.parse import _fast_matrix, _slow, parse_answer
from vmrules.sources.prometheus import HttpSource, redact_url
from vmrules.sources.result import FetchError
from vmrules.window import Window

W = Window(1_000_000, 1_240_000, 60_000)
GOOD = matrix([({"__name__": "up", "job": "a"}, [(1000, "1"), (1060, "0")]),
               ({"__name__": "up", "job": "b"}, [(1000, "NaN"), (1060, "+Inf"), (1120, "-Inf")])])


pytestmark = pytest.mark.usefixtures("fast_backoff")


def fetch(server: FaultServer, replies: list[Reply], **ds: object) -> list:
    server.script = replies
    source = HttpSource(Datasource(url=server.url, **ds))  # type: ignore[arg-type]
    try:
        return source.fetch("up", W)
    finally:
        source.close()


def test_good_answer_parses(server: FaultServer) -> None:
    (r,) = fetch(server, [Reply(200, GOOD)])
    assert r.labels == [{"__name__": "up", "job": "a"}, {"__name__": "up", "job": "b"}]
    assert r.series_id.tolist() == [0, 0, 1, 1, 1]
    assert r.ts_ms.tolist() == [1_000_000, 1_060_000, 1_000_000, 1_060_000, 1_120_000]
    v = r.values
    assert v[:2].tolist() == [1.0, 0.0] and math.isnan(v[2]) and v[3] == math.inf and v[4] == -math.inf
    seen = server.seen[0]
    assert seen.path == "/api/v1/query_range"
    assert seen.query["start"] == ["1000"] and seen.query["end"] == ["1240"] and seen.query["step"] == ["60"]
    assert seen.query["nocache"] == ["1"]
    assert seen.headers["Accept-Encoding"] == "identity"


def test_reset_then_503_then_success_is_retried(server: FaultServer) -> None:
    (r,) = fetch(server, [Reply(reset=True), Reply(503, b"busy"), Reply(200, GOOD)])
    assert r.samples == 5 and r.requests == 3 and len(server.seen) == 3


def test_429_honours_retry_after(server: FaultServer) -> None:
    (r,) = fetch(server, [Reply(429, b"slow down", {"Retry-After": "0"}), Reply(200, GOOD)])
    assert r.requests == 2


@pytest.mark.parametrize("reply, message", [
    (Reply(422, b'{"status":"error","errorType":"422","error":"too many points"}'), "HTTP 422: 422: too many points"),
    (Reply(400, b'{"status":"error","errorType":"bad_data","error":"parse error"}'), "HTTP 400: bad_data: parse error"),
    (Reply(200, b'{"status":"error","errorType":"execution","error":"boom"}'), "execution: boom"),
    (Reply(404, b"<html><body><h1>404 Not Found</h1>unsupported path</body></html>"),
     "HTTP 404: 404 Not Found unsupported path (wrong path? the url is the Prometheus API prefix"),
    (Reply(401, b"Unauthorized"), "HTTP 401: Unauthorized (check the credentials: bearer_token"),
    (Reply(302, b"", {"Location": "http://127.0.0.1:1/elsewhere?token=x"}), "redirects are not followed"),
    (Reply(200, b'{"status":"success","data":{"resultType":"matrix","result":[{"metric":{}'),
     "not valid JSON"),
    (Reply(200, b"<html>gateway</html>"), "not valid JSON"),
    (Reply(200, matrix([], isPartial=True)), "partial"),
    (Reply(200, matrix([], warnings=["some nodes failed"])), "warnings"),
    (Reply(200, matrix([({"a": "1"}, [(1, "1")]), ({"a": "1"}, [(2, "1")])])), "duplicate label set"),
    (Reply(200, b'{"status":"success","data":{"resultType":"vector","result":[]}}'), "expected a matrix"),
    (Reply(200, b'{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"x"]]}]}}'),
     "malformed series"),
])
def test_errors_are_clear_and_not_retried(server: FaultServer, reply: Reply, message: str) -> None:
    with pytest.raises(FetchError) as info:
        fetch(server, [reply])
    assert message in str(info.value)
    assert str(info.value).startswith(f"{server.url}/api/v1/query_range: ")
    assert len(server.seen) == 1


def test_short_body_is_retried_then_reported(server: FaultServer) -> None:
    short = [Reply(200, GOOD[:40], content_length=len(GOOD)) for _ in range(3)]
    with pytest.raises(FetchError) as info:
        fetch(server, short)
    assert "after 3 attempts" in str(info.value) and len(server.seen) == 3


def test_drip_feed_hits_the_deadline(server: FaultServer) -> None:
    with pytest.raises(FetchError) as info:
        fetch(server, [Reply(200, GOOD, drip_s=0.05)] * 3, timeout_ms=300)
    assert "not complete within 0.3s" in str(info.value)


def test_long_query_is_posted(server: FaultServer) -> None:
    server.script = [Reply(200, GOOD)]
    source = HttpSource(Datasource(url=server.url))
    source.fetch("up{" + ",".join(f'l{i}="v"' for i in range(300)) + "}", W)
    assert server.seen[0].method == "POST" and b"query=up" in server.seen[0].body


def test_chunks_cover_the_window_once(server: FaultServer) -> None:
    server.script = lambda seen: Reply(200, GOOD)
    w = Window(0, 99 * 60_000, 60_000)
    HttpSource(Datasource(url=server.url, max_points_per_series=30)).fetch("up", w)
    spans = [(int(s.query["start"][0]), int(s.query["end"][0])) for s in server.seen]
    assert spans == [(0, 1740), (1800, 3540), (3600, 5340), (5400, 5940)]


def test_headers_and_basic_auth_from_environment(server: FaultServer) -> None:
    server.script = [Reply(200, GOOD)]
    ds = Datasource(url=server.url, headers={"X-Scope-OrgID": "${TENANT}"}, basic_auth=("u", "${PW}"))
    HttpSource(ds, env={"TENANT": "t1", "PW": "pa55word"}).fetch("up", W)
    h = server.seen[0].headers
    assert h["X-Scope-OrgID"] == "t1" and h["Authorization"].startswith("Basic ")


def test_instant_query(server: FaultServer) -> None:
    server.script = [Reply(200, b'{"status":"success","data":{"resultType":"vector","result":'
                                b'[{"metric":{"a":"1"},"value":[1240,"3.5"]}]}}')]
    (r,) = HttpSource(Datasource(url=server.url)).fetch("up", Window(0, 1_240_000, 60_000, instant=True))
    assert server.seen[0].path == "/api/v1/query" and server.seen[0].query["time"] == ["1240"]
    assert r.values.tolist() == [3.5] and r.ts_ms.tolist() == [1_240_000]


def test_redact_url() -> None:
    assert redact_url("http://user:pw@host:81/a/b?token=x") == "http://host:81/a/b"


# -- the fast matrix parser equals the json.loads parser on any answer -------
label_values = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=8)
values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6).map(float))


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.dictionaries(st.sampled_from(["__name__", "a", "b", "le"]), label_values, max_size=3),
                          st.lists(st.tuples(st.integers(0, 2 * 10**9), st.sampled_from([0, 250, 500]), values),
                                   min_size=1, max_size=5, unique_by=lambda p: p[0])),
                max_size=6, unique_by=lambda s: tuple(sorted(s[0].items()))))
def test_fast_parser_equals_json_parser(series: list) -> None:
    body = matrix([(m, [(t + ms / 1000 if ms else t, _fmt(v)) for t, ms, v in pts]) for m, pts in series])
    fast = _fast_matrix(body)
    slow = _slow(json.loads(body), "matrix")
    assert fast is not None
    assert fast.labels == slow.labels
    assert fast.series_id.tolist() == slow.series_id.tolist()
    assert fast.ts_ms.tolist() == slow.ts_ms.tolist()
    np.testing.assert_array_equal(fast.values, slow.values)


def test_pretty_printed_answers_fall_back() -> None:
    body = json.dumps(json.loads(GOOD), indent=2).encode()
    assert _fast_matrix(body) is None
    assert parse_answer(body, "matrix").samples == 5


# -- streaming: any chunking of the answer gives the same samples ---------------
@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(1, 200), min_size=1, max_size=40), st.integers(1, 400), st.integers(1, 30))
def test_stream_in_any_chunks_equals_whole_parse(cuts: list[int], batch_bytes: int, n_series: int) -> None:
    from vmrules.sources.parse import finish_matrix
    from vmrules.sources.stream import MatrixStream
    body = matrix([({"__name__": "m", "i": str(i)}, [(1000 + 60 * k, f"{i}.{k}") for k in range(i % 5)])
                   for i in range(n_series)], before={"stats": {"result": [{"metric": {}, "values": [[1, "1"]]}]}},
                  stats={"seriesFetched": str(n_series)})
    stream = MatrixStream(batch_bytes=batch_bytes)
    batches, pos = [], 0
    for cut in cuts * (len(body) // max(1, sum(cuts)) + 1):
        if pos >= len(body):
            break
        batches += stream.feed(body[pos:pos + cut])
        pos += cut
    rest, envelope = stream.finish()
    got = finish_matrix(batches + rest, envelope)
    want = _slow(json.loads(body), "matrix")
    assert got.labels == want.labels
    assert got.series_id.tolist() == want.series_id.tolist()
    assert got.ts_ms.tolist() == want.ts_ms.tolist() and got.values.tolist() == want.values.tolist()
    assert stream.series == n_series


def test_streamed_partial_answer_is_refused_at_the_end(server: FaultServer) -> None:
    big = matrix([({"__name__": "m", "i": str(i)}, [(1000 + 60 * k, "1") for k in range(5)]) for i in range(20000)],
                 isPartial=True)
    server.script = [Reply(200, big)]
    source = HttpSource(Datasource(url=server.url))
    with pytest.raises(FetchError, match="partial"):
        list(source.batches("m", W))


def test_gzip_answers_are_decoded_whole_and_streamed(server: FaultServer) -> None:
    import gzip

    zipped = Reply(200, gzip.compress(GOOD), {"Content-Encoding": "gzip"})
    (r,) = fetch(server, [zipped])
    assert r.samples == 5 and r.labels[1] == {"__name__": "up", "job": "b"}
    server.script = [zipped]
    source = HttpSource(Datasource(url=server.url))
    try:
        batches = list(source.batches("up", W))
    finally:
        source.close()
    assert sum(b.samples for b in batches) == 5


def test_a_broken_gzip_body_is_retried(server: FaultServer) -> None:
    bad = Reply(200, b"\x1f\x8b\x08\x00not gzip at all", {"Content-Encoding": "gzip"})
    with pytest.raises(FetchError) as info:
        fetch(server, [bad] * 3)
    assert "connection broke while reading the answer" in str(info.value) and len(server.seen) == 3


def test_one_connection_serves_the_requests_of_a_long_window(server: FaultServer) -> None:
    server.script = [Reply(200, GOOD)] * 5
    source = HttpSource(Datasource(url=server.url, max_points_per_series=2))
    try:
        source.fetch("up", W)
    finally:
        source.close()
    assert len(server.seen) == 3 and len({s.peer for s in server.seen}) == 1


def test_a_kept_alive_connection_the_server_closed_is_opened_anew(server: FaultServer) -> None:
    server.script = [Reply(200, GOOD, hang_up=True), Reply(200, GOOD)]
    source = HttpSource(Datasource(url=server.url, max_points_per_series=3))
    try:
        results = source.fetch("up", W)
    finally:
        source.close()
    assert [r.requests for r in results] == [1, 1]          # no attempt of the retry policy spent on it
    assert len(server.seen) == 2 and server.seen[0].peer != server.seen[1].peer
