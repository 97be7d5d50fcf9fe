"""HTTP client for Prometheus-compatible query APIs (VictoriaMetrics, vmselect, Prometheus)."""

from __future__ import annotations

import json
import os
import random
import re
import time
import urllib.parse
import warnings
from collections.abc import Callable, Mapping

import requests
import urllib3

from vmrules.fetch.parse import parse_answer
from vmrules.fetch.result import FetchError, QueryResult
from vmrules.model import Datasource
from vmrules.window import Window

POST_ABOVE_CHARS = 2000          # longer queries go as a form POST
ATTEMPTS = 3
BACKOFF_S = 0.5
MAX_RETRY_AFTER_S = 10.0
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_secret(text: str, env: Mapping[str, str]) -> str:
    """Replace `${VAR}` with the environment's value; FetchError names a variable that is not set."""
    def repl(m: re.Match[str]) -> str:
        if m.group(1) not in env:
            raise FetchError(f"environment variable {m.group(1)} is not set")
        return env[m.group(1)]
    return _VAR.sub(repl, text)


def redact_url(url: str) -> str:
    """The URL without credentials or query string, safe to print."""
    p = urllib.parse.urlsplit(url)
    host = p.hostname or ""
    if p.port:
        host += f":{p.port}"
    return urllib.parse.urlunsplit((p.scheme, host, p.path, "", ""))


class HttpSource:
    """Runs queries against one datasource; one session, bounded retries, clear errors."""

    def __init__(self, ds: Datasource, env: Mapping[str, str] | None = None,
                 log: Callable[[str], None] | None = None):
        env = os.environ if env is None else env
        self.ds = ds
        self.log = log or (lambda _msg: None)
        self.session = requests.Session()
        self.session.trust_env = False           # no proxies or .netrc credentials from the environment
        self.session.verify = ds.ca_file or not ds.tls_insecure
        if ds.tls_insecure:   # asked for explicitly in the rule file; the README says what it costs
            warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
        host = urllib.parse.urlsplit(ds.url).hostname or ""
        self.session.headers["Accept-Encoding"] = "identity" if host in LOOPBACK else "gzip"
        self.session.headers["User-Agent"] = "vmrules"
        self.secrets: list[str] = []
        for k, v in ds.headers.items():
            self.session.headers[k] = self._secret(expand_secret(v, env))
        if ds.bearer_token is not None:
            self.session.headers["Authorization"] = "Bearer " + self._secret(expand_secret(ds.bearer_token, env))
        if ds.basic_auth is not None:
            self.session.auth = (expand_secret(ds.basic_auth[0], env),
                                 self._secret(expand_secret(ds.basic_auth[1], env)))
        self.timeout_s = ds.timeout_ms / 1000

    def _secret(self, value: str) -> str:
        if len(value) >= 4:
            self.secrets.append(value)
        return value

    def scrub(self, text: str) -> str:
        """The text with every credential of this datasource replaced (servers may echo them)."""
        for secret in self.secrets:
            text = text.replace(secret, "<secret>")
        return text

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
        for attempt in range(1, ATTEMPTS + 1):
            try:
                body = self._request(url, params)
                result = parse_answer(body, expect)
                result.requests, result.bytes_read = attempt, len(body)
                return result
            except _Retryable as exc:
                if attempt == ATTEMPTS:
                    raise FetchError(self.scrub(f"{redact_url(url)}: {exc} (after {ATTEMPTS} attempts)")) from None
                delay = exc.retry_after if exc.retry_after is not None else BACKOFF_S * 2 ** (attempt - 1)
                delay = min(delay, MAX_RETRY_AFTER_S) * (1 + random.random() / 4)
                self.log(self.scrub(f"retrying {redact_url(url)} in {delay:.1f}s: {exc}"))
                time.sleep(delay)
            except FetchError as exc:
                raise FetchError(self.scrub(f"{redact_url(url)}: {exc}")) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _request(self, url: str, params: dict[str, str]) -> bytes:
        started = time.monotonic()
        post = len(params.get("query", "")) > POST_ABOVE_CHARS
        try:
            resp = self.session.request("POST" if post else "GET", url, params=None if post else params,
                                        data=params if post else None, timeout=self.timeout_s,
                                        stream=True, allow_redirects=False)
        except requests.exceptions.SSLError as exc:
            raise FetchError(f"TLS failed: {_reason(exc)} (set ca_file to the CA that signed the server's "
                             "certificate)") from None
        except requests.exceptions.ConnectionError as exc:
            raise _Retryable(f"cannot connect: {_reason(exc)}") from None
        except requests.exceptions.Timeout:
            raise _Retryable(f"no answer within {self.timeout_s:g}s") from None
        with resp:
            body = self._read(resp, started)
        self.log(f"{'POST' if post else 'GET'} {redact_url(url)} -> {resp.status_code}, {len(body)} bytes, "
                 f"{time.monotonic() - started:.2f}s")
        if resp.status_code >= 500 or resp.status_code == 429:
            raise _Retryable(f"HTTP {resp.status_code}: {_server_said(body)}", _retry_after(resp))
        if 300 <= resp.status_code < 400:
            raise FetchError(f"HTTP {resp.status_code} redirect to {redact_url(resp.headers.get('Location', '?'))}; "
                             "set the datasource url to the final address (redirects are not followed)")
        if resp.status_code >= 400:
            said = _server_said(body)
            hint = " (check the URL prefix, e.g. /select/0/prometheus)" if resp.status_code == 404 else ""
            if resp.status_code in (401, 403) or "auth" in said.lower():
                hint = " (check the credentials)"
            raise FetchError(f"HTTP {resp.status_code}: {said}{hint}")
        return body

    def _read(self, resp: requests.Response, started: float) -> bytes:
        """The whole body, read as it arrives, within the request's total deadline."""
        parts = []
        try:
            while chunk := resp.raw.read1(1 << 20, decode_content=True):
                parts.append(chunk)
                if time.monotonic() - started > self.timeout_s:
                    raise _Retryable(f"answer not complete within {self.timeout_s:g}s")
        except (urllib3.exceptions.ProtocolError, urllib3.exceptions.DecodeError, OSError) as exc:
            raise _Retryable(f"connection broke while reading the answer: {_reason(exc)}") from None
        except urllib3.exceptions.ReadTimeoutError:
            raise _Retryable(f"no answer within {self.timeout_s:g}s") from None
        return b"".join(parts)


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def _seconds(ms: int) -> str:
    return str(ms // 1000) if ms % 1000 == 0 else f"{ms / 1000:.3f}"


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After", "")
    return float(value) if value.strip().isdigit() else None


def _reason(exc: Exception) -> str:
    text = str(exc)
    for marker in ("certificate verify failed", "Connection refused", "Name or service not known",
                   "Temporary failure in name resolution",
                   "timed out", "Connection reset", "IncompleteRead", "Remote end closed"):
        if marker in text:
            return marker.lower() if marker != "IncompleteRead" else "the answer was shorter than announced"
    return text[:200]


def _server_said(body: bytes) -> str:
    """The error message in a body: the JSON `error`, or the text of an HTML page."""
    text = body[:4096].decode("utf-8", "replace")
    try:
        doc = json.loads(text)
        if isinstance(doc, dict) and "error" in doc:
            return f"{doc.get('errorType', 'error')}: {doc['error']}"
    except ValueError:
        pass
    text = re.sub(r"<[^>]+>", " ", text)
    text = " ".join(text.split())
    return text[:300] or "(empty body)"
