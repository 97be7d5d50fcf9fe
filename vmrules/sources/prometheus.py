"""HTTP client for Prometheus-compatible query APIs (VictoriaMetrics, vmselect, Prometheus)."""

from __future__ import annotations

import base64
import collections
import json
import os
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from http.client import HTTPException
from typing import Any

from vmrules.durations import format_time_ms
from vmrules.model import Datasource, too_many_requests
from vmrules.net import http
from vmrules.net.http import HttpError, Retryable, redact_url
from vmrules.net.transport import Response, Transport
from vmrules.sources.result import FetchError, QueryResult
from vmrules.window import Window

POST_ABOVE_CHARS = 2000          # longer queries go as a form POST
MAX_WHOLE_BYTES = 1 << 30        # an answer read whole (errors, instant queries, the fallback parser)

__all__ = ["HttpSource", "redact_url"]


class HttpSource:
    """Runs queries against one datasource; one session, bounded retries, clear errors."""

    def __init__(self, ds: Datasource, env: Mapping[str, str] | None = None,
                 log: Callable[[str], None] | None = None):
        self.ds = ds
        self.log = log or (lambda _msg: None)
        self.secrets = http.Secrets(os.environ if env is None else env, ds.url)
        self.timeout_s = ds.timeout_ms / 1000
        self.attempt_s = self.timeout_s      # this attempt's deadline: less when the request's budget runs out
        try:
            headers = {k: self.secrets.expand(v) for k, v in ds.headers.items()}
            if ds.bearer_token is not None:
                headers["Authorization"] = "Bearer " + self.secrets.expand(ds.bearer_token)
            if ds.basic_auth is not None:
                pair = f"{self.secrets.expand(ds.basic_auth[0])}:{self.secrets.expand(ds.basic_auth[1])}"
                headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
                self.secrets.add(headers["Authorization"].split(" ", 1)[1])
            for k, v in headers.items():
                http.check_header(k, v)
            self.transport = Transport(ds.url, headers, self.timeout_s, ds.ca_file, ds.tls_insecure)
        except HttpError as exc:
            raise FetchError(self.secrets.scrub(str(exc))) from None
        except (OSError, ssl.SSLError) as exc:         # an unreadable ca_file
            raise FetchError(f"TLS setup failed: {exc}") from None

    @classmethod
    def open(cls, ds: Datasource, env: Mapping[str, str], log: Callable[[str], None]) -> HttpSource:
        return cls(ds, env, log)

    def fetch(self, query: str, window: Window) -> list[QueryResult]:
        """One result per request of the window (range) or one instant result, each read whole."""
        if window.instant:
            params = {**self.ds.params, "query": query, "time": _seconds(window.end_ms)}
            return list(self._attempts(self.ds.url + "/api/v1/query", params, "vector"))
        out: list[QueryResult] = []
        for w in self._requests(window):
            out += self._range(query, w, "matrix")
        return out

    def has_series(self, selector: str, start_ms: int, end_ms: int) -> bool:
        """Whether the server holds any series matching `selector` between the two times (/api/v1/series)."""
        params = {**self.ds.params, "match[]": selector, "start": _seconds(start_ms), "end": _seconds(end_ms),
                  "limit": "1"}
        try:
            body = self._request(self.ds.url + "/api/v1/series", params)
        except Retryable as exc:
            raise FetchError(str(exc)) from None
        try:
            doc = json.loads(body)
        except ValueError:
            raise FetchError("the answer to /api/v1/series is not JSON") from None
        data = doc.get("data") if isinstance(doc, dict) else None
        if not isinstance(data, list):
            raise FetchError("the answer to /api/v1/series has no data list")
        return bool(data)

    def _requests(self, window: Window) -> list[Window]:
        """The window split into requests of at most max_points_per_series points; too many are refused."""
        limit = self.ds.max_points_per_series
        if why := too_many_requests(window.points, limit):
            raise FetchError(f"the window {format_time_ms(window.start_ms)} .. {format_time_ms(window.end_ms)}: "
                             f"{why}: raise max_points_per_series or the step, or split the window with --chunk")
        return window.chunks(limit)

    def _range(self, query: str, w: Window, mode: str) -> Iterator[QueryResult]:
        """One range request; only its own window's samples (a server may send others)."""
        for result in self._attempts(self.ds.url + "/api/v1/query_range", self._range_params(query, w), mode):
            from vmrules.sources.parse import within  # numpy: loaded once the first answer is in

            yield within(result, w)

    def _range_params(self, query: str, w: Window) -> dict[str, str]:
        return {**self.ds.params, "query": query, "start": _seconds(w.start_ms), "end": _seconds(w.end_ms),
                "step": _seconds(w.step_ms), "nocache": "1"}

    def batches(self, query: str, window: Window) -> Iterator[QueryResult]:
        """The answer in batches of complete series, parsed while it arrives.

        A window longer than max_points_per_series comes request after request, in
        time order; a series then spans batches (evaluation carries its state).
        """
        if window.instant:
            yield from self.fetch(query, window)
            return
        for w in self._requests(window):
            yield from self._range(query, w, "stream")

    def close(self) -> None:
        self.transport.close()

    def _attempts(self, url: str, params: dict[str, str], mode: str) -> Iterator[QueryResult]:
        """One request with the retry policy; `mode` is "stream" (batches as they arrive) or the
        resultType read whole. Once part of a streamed answer has been handed out, no retry.
        Before the first batch, all attempts and pauses end within ATTEMPTS x timeout."""
        scrub = self.secrets.scrub
        once = self._stream_once if mode == "stream" else (lambda u, p: self._whole_once(u, p, mode))
        first = time.monotonic()
        budget = http.ATTEMPTS * self.timeout_s
        for attempt in range(1, http.ATTEMPTS + 1):
            yielded = False
            self.attempt_s = max(min(self.timeout_s, budget - (time.monotonic() - first)), 0.001)
            try:
                for batch in once(url, params):
                    batch.requests = 0 if yielded else attempt
                    batch.request_start = not yielded
                    yielded = True
                    yield batch
                return
            except Retryable as exc:
                if yielded:
                    raise FetchError(scrub(f"{redact_url(url)}: {exc} (after part of the answer was read)")) from None
                delay = http.backoff(attempt, exc.retry_after)
                if attempt == http.ATTEMPTS:
                    raise FetchError(scrub(f"{redact_url(url)}: {exc} (after {http.ATTEMPTS} attempts)")) from None
                if time.monotonic() - first + delay + 0.001 >= budget:
                    raise FetchError(scrub(f"{redact_url(url)}: {exc} (after {attempt} attempt(s): no time left "
                                           f"within {budget:g}s, {http.ATTEMPTS} x the timeout)")) from None
                self.log(scrub(f"retrying {redact_url(url)} in {delay:.1f}s: {exc}"))
                time.sleep(delay)
            except (FetchError, HttpError) as exc:
                raise FetchError(scrub(f"{redact_url(url)}: {exc}")) from None

    def _stream_once(self, url: str, params: dict[str, str]) -> Iterator[QueryResult]:
        started = time.monotonic()
        resp = self._open(url, params)
        with resp:
            if resp.status_code != 200:
                body = self._read(resp, started)
                http.check_status(resp.status_code, body, resp.headers)
                from vmrules.sources.parse import parse_answer
                yield parse_answer(body, "matrix")
                return
            chunks = prefetch(self._chunks(resp, started))
            first = next(chunks, b"")          # the reader runs from here on, while the parser loads
            from vmrules.sources.parse import finish_matrix, parse_answer, sort_samples
            from vmrules.sources.stream import MatrixStream, NotCompact
            stream = MatrixStream()
            size, told, drained = 0, 0, False
            pieces = _prepend(first, chunks)    # referenced, so a fallback can read on where this stopped
            try:
                for chunk in pieces:
                    size += len(chunk)
                    for batch in stream.feed(chunk):
                        drained = True
                        batch.bytes_read, told = size - told, size
                        yield sort_samples(batch)
                batches, envelope = stream.finish()
            except NotCompact:
                if drained:
                    raise FetchError("the answer changed its layout midway") from None
                yield parse_answer(stream.raw() + b"".join(pieces), "matrix")   # and the rest, from the reader
                return
        self.log(f"GET {redact_url(url)} -> 200, {size} bytes, {time.monotonic() - started:.2f}s, streamed")
        last = finish_matrix(batches, envelope)
        last.bytes_read = size - told
        if last.labels or not drained:
            yield last

    def _whole_once(self, url: str, params: dict[str, str], expect: str) -> Iterator[QueryResult]:
        from vmrules.sources.parse import parse_answer

        body = self._request(url, params)
        result = parse_answer(body, expect)
        result.bytes_read = len(body)
        yield result

    def _open(self, url: str, params: dict[str, str]) -> Response:
        post = len(params.get("query", "")) > POST_ABOVE_CHARS
        try:
            return self.transport.open("POST" if post else "GET", url, params, timeout_s=self.attempt_s)
        except ssl.SSLError as exc:
            raise FetchError(http.tls_failure(exc, ca_file=True)) from None
        except TimeoutError:
            raise Retryable(f"no answer within {self.timeout_s:g}s") from None
        except (OSError, HTTPException) as exc:
            raise Retryable(f"cannot connect: {http.reason(exc)}") from None
        except ValueError as exc:      # http.client refuses a header; its message may quote the value
            raise FetchError(self.secrets.scrub(f"request refused before sending: {exc}")) from None

    def _request(self, url: str, params: dict[str, str]) -> bytes:
        started = time.monotonic()
        post = len(params.get("query", "")) > POST_ABOVE_CHARS
        resp = self._open(url, params)
        with resp:
            body = self._read(resp, started)
        self.log(f"{'POST' if post else 'GET'} {redact_url(url)} -> {resp.status_code}, {len(body)} bytes, "
                 f"{time.monotonic() - started:.2f}s")
        http.check_status(resp.status_code, body, resp.headers)
        return body

    def _read(self, resp: Response, started: float) -> bytes:
        """The whole body, read as it arrives, within the request's total deadline and MAX_WHOLE_BYTES."""
        parts, size = [], 0
        for chunk in self._chunks(resp, started):
            size += len(chunk)
            if size > MAX_WHOLE_BYTES:
                raise http.AnswerTooLarge(f"the answer is larger than {MAX_WHOLE_BYTES >> 20} MiB; refused")
            parts.append(chunk)
        return b"".join(parts)

    def _chunks(self, resp: Response, started: float) -> Iterator[bytes]:
        """The body as it arrives, within the request's total deadline."""
        try:
            while chunk := resp.read1(1 << 20):
                yield chunk
                if time.monotonic() - started > self.attempt_s:
                    raise Retryable(f"answer not complete within {self.timeout_s:g}s")
        except TimeoutError:
            raise Retryable(f"answer not complete within {self.timeout_s:g}s") from None
        except (HTTPException, zlib.error, OSError) as exc:
            raise Retryable(f"connection broke while reading the answer: {http.reason(exc)}") from None


def _seconds(ms: int) -> str:
    return str(ms // 1000) if ms % 1000 == 0 else f"{ms / 1000:.3f}"


_DONE = object()
PREFETCH_BYTES = 32 << 20


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


def prefetch(chunks: Iterator[bytes], max_bytes: int = PREFETCH_BYTES) -> Iterator[bytes]:
    """Read the body in a thread while the caller parses: the server seldom waits on us.

    The reader starts at once (this is a generator only in name) and holds at most
    `max_bytes` of unparsed answer; its errors come out here, in order.
    """
    items: collections.deque[Any] = collections.deque()
    held = [0]
    cond = threading.Condition()
    stop = threading.Event()

    def reader() -> None:
        try:
            for chunk in chunks:
                with cond:
                    while held[0] >= max_bytes and not stop.is_set():
                        cond.wait(0.1)
                    if stop.is_set():
                        return
                    items.append(chunk)
                    held[0] += len(chunk)
                    cond.notify_all()
            item: Any = _DONE
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            item = exc
        with cond:
            items.append(item)
            cond.notify_all()

    thread = threading.Thread(target=reader, name="vmrules-reader", daemon=True)
    thread.start()
    return _consume(items, held, cond, stop, thread)


def _consume(items: collections.deque[Any], held: list[int], cond: threading.Condition, stop: threading.Event,
             thread: threading.Thread) -> Iterator[bytes]:
    try:
        while True:
            with cond:
                while not items:
                    cond.wait()
                item = items.popleft()
                if isinstance(item, bytes):
                    held[0] -= len(item)
                    cond.notify_all()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        with cond:
            cond.notify_all()
        thread.join(timeout=5)
