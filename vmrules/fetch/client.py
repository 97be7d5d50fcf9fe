"""HTTP client for Prometheus-compatible query APIs (VictoriaMetrics, vmselect, Prometheus)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

import requests
import urllib3

from vmrules import http
from vmrules.fetch.parse import parse_answer
from vmrules.fetch.result import FetchError, QueryResult
from vmrules.http import HttpError, Retryable, redact_url
from vmrules.model import Datasource
from vmrules.window import Window

POST_ABOVE_CHARS = 2000          # longer queries go as a form POST

__all__ = ["HttpSource", "redact_url"]


class HttpSource:
    """Runs queries against one datasource; one session, bounded retries, clear errors."""

    def __init__(self, ds: Datasource, env: Mapping[str, str] | None = None,
                 log: Callable[[str], None] | None = None):
        self.ds = ds
        self.log = log or (lambda _msg: None)
        self.secrets = http.Secrets(os.environ if env is None else env)
        try:
            headers = dict(ds.headers)
            if ds.bearer_token is not None:
                headers["Authorization"] = "Bearer " + ds.bearer_token
            self.session = http.new_session(ds.url, headers, self.secrets, ds.ca_file, ds.tls_insecure)
            if ds.basic_auth is not None:
                self.session.auth = (self.secrets.expand(ds.basic_auth[0]), self.secrets.expand(ds.basic_auth[1]))
        except HttpError as exc:
            raise FetchError(str(exc)) from None
        self.timeout_s = ds.timeout_ms / 1000

    def fetch(self, query: str, window: Window) -> list[QueryResult]:
        """One result per chunk of the window (range) or one instant result."""
        if window.instant:
            params = {"query": query, "time": _seconds(window.end_ms)}
            return [self._get("/api/v1/query", params, "vector")]
        out = []
        for w in window.chunks(self.ds.max_points_per_series):
            params = {"query": query, "start": _seconds(w.start_ms), "end": _seconds(w.end_ms),
                      "step": _seconds(w.step_ms), "nocache": "1"}
            out.append(self._get("/api/v1/query_range", params, "matrix"))
        return out

    def close(self) -> None:
        self.session.close()

    def _get(self, path: str, params: dict[str, str], expect: str) -> QueryResult:
        url = self.ds.url + path
        params = {**self.ds.params, **params}
        scrub = self.secrets.scrub
        for attempt in range(1, http.ATTEMPTS + 1):
            try:
                body = self._request(url, params)
                result = parse_answer(body, expect)
                result.requests, result.bytes_read = attempt, len(body)
                return result
            except Retryable as exc:
                if attempt == http.ATTEMPTS:
                    raise FetchError(scrub(f"{redact_url(url)}: {exc} (after {http.ATTEMPTS} attempts)")) from None
                delay = http.backoff(attempt, exc.retry_after)
                self.log(scrub(f"retrying {redact_url(url)} in {delay:.1f}s: {exc}"))
                time.sleep(delay)
            except (FetchError, HttpError) as exc:
                raise FetchError(scrub(f"{redact_url(url)}: {exc}")) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _request(self, url: str, params: dict[str, str]) -> bytes:
        started = time.monotonic()
        post = len(params.get("query", "")) > POST_ABOVE_CHARS
        try:
            resp = self.session.request("POST" if post else "GET", url, params=None if post else params,
                                        data=params if post else None, timeout=self.timeout_s,
                                        stream=True, allow_redirects=False)
        except requests.exceptions.SSLError as exc:
            raise FetchError(f"TLS failed: {http.reason(exc)} (set ca_file to the CA that signed the server's "
                             "certificate)") from None
        except requests.exceptions.ConnectionError as exc:
            raise Retryable(f"cannot connect: {http.reason(exc)}") from None
        except requests.exceptions.Timeout:
            raise Retryable(f"no answer within {self.timeout_s:g}s") from None
        with resp:
            body = self._read(resp, started)
        self.log(f"{'POST' if post else 'GET'} {redact_url(url)} -> {resp.status_code}, {len(body)} bytes, "
                 f"{time.monotonic() - started:.2f}s")
        http.check_status(resp.status_code, body, resp.headers)
        return body

    def _read(self, resp: requests.Response, started: float) -> bytes:
        """The whole body, read as it arrives, within the request's total deadline."""
        parts = []
        try:
            while chunk := resp.raw.read1(1 << 20, decode_content=True):
                parts.append(chunk)
                if time.monotonic() - started > self.timeout_s:
                    raise Retryable(f"answer not complete within {self.timeout_s:g}s")
        except (urllib3.exceptions.ProtocolError, urllib3.exceptions.DecodeError, OSError) as exc:
            raise Retryable(f"connection broke while reading the answer: {http.reason(exc)}") from None
        except urllib3.exceptions.ReadTimeoutError:
            raise Retryable(f"no answer within {self.timeout_s:g}s") from None
        return b"".join(parts)


def _seconds(ms: int) -> str:
    return str(ms // 1000) if ms % 1000 == 0 else f"{ms / 1000:.3f}"
