"""HTTP pieces shared by the datasource client and the service targets.

Secrets from `${VAR}`, URLs safe to print, sessions that ignore the environment
and never follow redirects, and one retry policy: resets, timeouts, 5xx and 429
(honouring Retry-After) are retried with capped, jittered backoff; nothing else is.
"""

from __future__ import annotations

import json
import random
import re
import time
import urllib.parse
import warnings
from collections.abc import Callable, Mapping
from email.message import Message
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the service targets' client; the query path has its own (fetch/transport.py)
    import requests

ATTEMPTS = 3
BACKOFF_S = 0.5
MAX_RETRY_AFTER_S = 10.0
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class HttpError(Exception):
    """A request that failed for good; the message is safe to print."""


class Retryable(Exception):
    """A failure worth another attempt (after `retry_after` seconds when the server said so)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def expand_secret(text: str, env: Mapping[str, str]) -> str:
    """Replace `${VAR}` with the environment's value; HttpError names a variable that is not set."""
    def repl(m: re.Match[str]) -> str:
        if m.group(1) not in env:
            raise HttpError(f"environment variable {m.group(1)} is not set")
        return env[m.group(1)]
    return _VAR.sub(repl, text)


def redact_url(url: str) -> str:
    """The URL without credentials or query string, safe to print."""
    p = urllib.parse.urlsplit(url)
    host = p.hostname or ""
    if p.port:
        host += f":{p.port}"
    return urllib.parse.urlunsplit((p.scheme, host, p.path, "", ""))


class Secrets:
    """Credentials in use, so that any echo of them (servers do echo) is scrubbed from messages."""

    def __init__(self, env: Mapping[str, str]):
        self.env = env
        self.values: list[str] = []

    def expand(self, text: str) -> str:
        value = expand_secret(text, self.env)
        if value != text or len(value) >= 4:
            self.values.append(value)
        return value

    def scrub(self, text: str) -> str:
        for secret in self.values:
            if len(secret) >= 4:
                text = text.replace(secret, "<secret>")
        return text


def new_session(url: str, headers: Mapping[str, str], secrets: Secrets, ca_file: str | None = None,
                tls_insecure: bool = False) -> requests.Session:
    """A session that ignores proxies and .netrc from the environment, with expanded headers."""
    import requests
    import urllib3

    session = requests.Session()
    session.trust_env = False
    session.verify = ca_file or not tls_insecure
    if tls_insecure:   # asked for explicitly in the rule file; the README says what it costs
        warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
    host = urllib.parse.urlsplit(url).hostname or ""
    session.headers["Accept-Encoding"] = "identity" if host in LOOPBACK else "gzip"
    session.headers["User-Agent"] = "vmrules"
    for k, v in headers.items():
        session.headers[k] = secrets.expand(v)
    return session


def backoff(attempt: int, retry_after: float | None) -> float:
    """Seconds to wait before attempt `attempt + 1`."""
    delay = retry_after if retry_after is not None else BACKOFF_S * 2 ** (attempt - 1)
    return float(min(delay, MAX_RETRY_AFTER_S) * (1 + random.random() / 4))


def deliver(session: requests.Session, method: str, url: str, body: bytes, headers: Mapping[str, str],
            timeout_s: float, secrets: Secrets, log: Callable[[str], None]) -> requests.Response:
    """Send a request with the retry policy; HttpError when it cannot be delivered."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            resp = _send(session, method, url, body, headers, timeout_s)
            log(f"{method} {redact_url(url)} -> {resp.status_code} (attempt {attempt})")
            return resp
        except Retryable as exc:
            if attempt == ATTEMPTS:
                raise HttpError(secrets.scrub(f"{redact_url(url)}: {exc} (after {ATTEMPTS} attempts)")) from None
            delay = backoff(attempt, exc.retry_after)
            log(secrets.scrub(f"retrying {redact_url(url)} in {delay:.1f}s: {exc}"))
            time.sleep(delay)
        except HttpError as exc:
            raise HttpError(secrets.scrub(f"{redact_url(url)}: {exc}")) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _send(session: requests.Session, method: str, url: str, body: bytes, headers: Mapping[str, str],
          timeout_s: float) -> requests.Response:
    import requests

    try:
        resp = session.request(method, url, data=body, headers=dict(headers), timeout=timeout_s,
                               allow_redirects=False)
    except requests.exceptions.SSLError as exc:
        raise HttpError(f"TLS failed: {reason(exc)}") from None
    except requests.exceptions.ConnectionError as exc:
        raise Retryable(f"cannot connect: {reason(exc)}") from None
    except requests.exceptions.Timeout:
        raise Retryable(f"no answer within {timeout_s:g}s") from None
    check_status(resp.status_code, resp.content, resp.headers)
    return resp


def check_status(status: int, body: bytes, headers: Mapping[str, str] | Message) -> None:
    """Raise for a status that is not success: Retryable for 5xx and 429, HttpError otherwise."""
    if status >= 500 or status == 429:
        raise Retryable(f"HTTP {status}: {server_said(body)}", retry_after(headers))
    if 300 <= status < 400:
        raise HttpError(f"HTTP {status} redirect to {redact_url(headers.get('Location', '?'))}; "
                        "set the url to the final address (redirects are not followed)")
    if status >= 400:
        said = server_said(body)
        hint = (" (wrong path? the url is the Prometheus API prefix: http://host:8428 for single-node "
                "VictoriaMetrics, http://vmselect:8481/select/0/prometheus for a cluster)") \
            if status == 404 or "unsupported path" in said else ""
        if status in (401, 403) or "auth" in said.lower():
            hint = (" (check the credentials: bearer_token, basic_auth or headers, and that the ${VAR} "
                    "they name is set)")
        raise HttpError(f"HTTP {status}: {said}{hint}")


def retry_after(headers: Mapping[str, str] | Message) -> float | None:
    value = headers.get("Retry-After") or ""
    return float(value) if value.strip().isdigit() else None


_REASONS = {   # what the exception says -> what to tell the user, with a hint where one helps
    "certificate verify failed": "certificate verify failed",
    "Connection refused": "connection refused (nothing listens there: check the host and port of the url, "
                          "and that the server runs)",
    "Name or service not known": "host name not found (check the host in the url)",
    "Temporary failure in name resolution": "host name not found (check the host in the url, and DNS)",
    "No address associated with hostname": "host name not found (check the host in the url)",
    "timed out": "timed out",
    "Connection reset": "connection reset",
    "IncompleteRead": "the answer was shorter than announced",
    "Remote end closed": "remote end closed the connection",
}


def reason(exc: Exception) -> str:
    """A short cause of a connection failure, with a hint for the usual mistakes."""
    text = str(exc)
    for marker, said in _REASONS.items():
        if marker in text:
            return said
    return text[:200]


def server_said(body: bytes) -> str:
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
