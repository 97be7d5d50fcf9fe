"""HTTP pieces shared by the datasource client and the service targets.

Secrets from `${VAR}` (only the variables the allow-list names, sent only where
it says), URLs safe to print, one scrubber for every credential in use, and one
retry policy: resets, timeouts, 5xx and 429 (honouring Retry-After) are retried
with capped, jittered backoff, all attempts of a request within ATTEMPTS times
its timeout; nothing else is retried. Requests go through net/transport.py:
no proxies or .netrc from the environment, no redirects followed.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from email.message import Message
from typing import TYPE_CHECKING

from vmrules.errors import AnswerTooLarge, HttpError

if TYPE_CHECKING:  # the query path imports this module; the transport loads with the first request
    from vmrules.net.transport import Transport

ATTEMPTS = 3
BACKOFF_S = 0.5
MAX_RETRY_AFTER_S = 10.0
MAX_ERROR_BODY = 64 << 10           # bytes of a service's answer read (for its error message)
ALLOW_ENV = "VMRULES_ALLOW_ENV"
MIN_SCRUBBED = 8                    # credentials this long or longer are scrubbed from every message
DSN_SCHEMES = ("postgresql", "postgres")   # database servers' URIs (target postgres)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class Retryable(Exception):
    """A failure worth another attempt (after `retry_after` seconds when the server said so)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


# -- which variables a rule file may read, and where it may send them ---------------------------------
def parse_allow_env(*texts: str) -> dict[str, tuple[str, ...]]:
    """`NAME` or `NAME=URL_PREFIX` items, separated by commas or spaces (the syntax of VMRULES_ALLOW_ENV and
    --allow-env), merged: NAME may be sent anywhere, NAME=URL only to URLs under that prefix (a name given
    with several prefixes may go under any of them). ValueError when an item is malformed."""
    out: dict[str, tuple[str, ...]] = {}
    for item in (i for text in texts for i in re.split(r"[,\s]+", text.strip()) if i):
        name, sep, url = item.partition("=")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"{item!r}: expected NAME or NAME=URL_PREFIX")
        if sep and urllib.parse.urlsplit(url).scheme not in ("http", "https", *DSN_SCHEMES):
            raise ValueError(f"{item!r}: the prefix must be an http://, https:// or postgresql:// URL")
        anywhere = not sep or out.get(name) == ()
        out[name] = () if anywhere else (*out.get(name, ()), url)
    return out


def url_within(url: str, prefix: str) -> bool:
    """True when `url` is at or below `prefix`: same scheme, host and port, and a path under the prefix's."""
    a, b = urllib.parse.urlsplit(url), urllib.parse.urlsplit(prefix)
    if (a.scheme.lower(), (a.hostname or "").lower(), _port(a)) != (b.scheme.lower(), (b.hostname or "").lower(),
                                                                    _port(b)):
        return False
    base = b.path.rstrip("/")
    return a.path == base or a.path.startswith(base + "/") or not base


def _port(p: urllib.parse.SplitResult) -> int | None:
    try:
        return p.port or {"http": 80, "https": 443, "postgresql": 5432, "postgres": 5432}.get(p.scheme.lower())
    except ValueError:
        return None


@dataclass(frozen=True)
class Env(Mapping[str, str]):
    """The environment as rule files see it: only the allowed variables, each only for its URLs.

    `allow` None lets every variable of `base` through (a mapping the caller built itself).
    """

    base: Mapping[str, str]
    allow: Mapping[str, tuple[str, ...]] | None = None

    def refusal(self, name: str, url: str) -> str | None:
        """Why rule files may not send `name` to `url` (None: they may)."""
        if self.allow is not None:
            if name not in self.allow:
                return (f"environment variable {name} may not be read by rule files: allow it with "
                        f"{ALLOW_ENV}={name}=URL_PREFIX or --allow-env (README, Security)")
            prefixes = self.allow[name]
            if prefixes and not any(url_within(url, p) for p in prefixes):
                return (f"environment variable {name} may not be sent to {redact_url(url)} "
                        f"(allowed: {', '.join(prefixes)})")
        return None

    def lookup(self, name: str, url: str) -> str:
        """The value of `name` for a request to `url`; HttpError (naming no value) when refused or unset."""
        if why := self.refusal(name, url):
            raise HttpError(why)
        if name not in self.base:
            raise HttpError(f"environment variable {name} is not set")
        return self.base[name]

    def __getitem__(self, name: str) -> str:
        if self.allow is not None and name not in self.allow:
            raise KeyError(name)
        return self.base[name]

    def __iter__(self) -> Iterator[str]:
        return (k for k in self.base if self.allow is None or k in self.allow)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def rule_env(env: Mapping[str, str] | None, allow: Mapping[str, tuple[str, ...]] | None = None) -> Env:
    """What rule files may read of `env` (default os.environ): the variables `allow` names, or when it is
    None those that VMRULES_ALLOW_ENV in that environment names; nothing when neither names any.
    An Env is taken as it is (`Env(os.environ)` trusts every variable: headers a person typed)."""
    import os

    if isinstance(env, Env):
        return env
    base = os.environ if env is None else env
    if allow is None:
        try:
            allow = parse_allow_env(base.get(ALLOW_ENV, ""))
        except ValueError as exc:
            raise HttpError(f"{ALLOW_ENV}: {exc}") from None
    return Env(base, allow)


# -- secrets: expanded, checked, and scrubbed from every message ------------------------------------
_IN_USE: set[str] = set()
_IN_USE_LOCK = threading.Lock()


def scrub(text: str) -> str:
    """`text` with every credential vmrules has expanded in this process replaced by `<secret>`."""
    with _IN_USE_LOCK:
        values = sorted(_IN_USE, key=len, reverse=True)
    for value in values:
        text = text.replace(value, "<secret>")
    return text


def remember_secret(value: str) -> None:
    """Scrub `value` (and the forms a message may print it in) from every message from now on. Shorter
    values are scrubbed only from the messages of the requests that use them (Secrets.scrub): a process-wide
    scrub of a short word would blank it out of every message."""
    forms = {value, value.strip(), repr(value)[1:-1], repr(value.encode())[2:-1]}
    with _IN_USE_LOCK:
        _IN_USE.update(f for f in forms if len(f) >= MIN_SCRUBBED)


def variables(text: str) -> list[str]:
    """The names of the `${VAR}`s in `text`, in order."""
    return _VAR.findall(text)


def expand_secret(text: str, env: Mapping[str, str], url: str = "") -> str:
    """Replace `${VAR}` with the environment's value; HttpError names a variable that is refused or not set.

    A value's trailing line break (usual for Kubernetes secrets made from files) is dropped; a line
    break or control character elsewhere is refused (it cannot go in a header) without printing it.
    """
    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if isinstance(env, Env):
            raw = env.lookup(name, url)
        elif name in env:
            raw = env[name]
        else:
            raise HttpError(f"environment variable {name} is not set")
        remember_secret(raw)
        value = raw.rstrip("\r\n")
        if _CONTROL.search(value):
            raise HttpError(f"environment variable {name} holds a line break or control character, "
                            "which cannot be sent in a header (its value is not shown)")
        return value
    return _VAR.sub(repl, text)


def check_header(name: str, value: str) -> None:
    """A header line break would split the request: refuse it, without printing the value."""
    if _CONTROL.search(value) or _CONTROL.search(name) or ":" in name:
        raise HttpError(f"header {name.strip()!r}: a line break or control character cannot be sent in a header "
                        "(the value is not shown)")


def redact_url(url: str) -> str:
    """The URL without credentials or query string, safe to print."""
    p = urllib.parse.urlsplit(url)
    host = p.hostname or ""
    try:
        if p.port:
            host += f":{p.port}"
    except ValueError:
        pass
    return urllib.parse.urlunsplit((p.scheme, host, p.path, "", ""))


def redact_dsn(dsn: str) -> str:
    """A database URI as it may be printed: no password, no query string (it may carry one too)."""
    p = urllib.parse.urlsplit(dsn)
    if p.scheme not in DSN_SCHEMES:
        return dsn if _VAR.fullmatch(dsn) else "<dsn>"
    host = p.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((p.scheme, f"{p.username}@{host}" if p.username else host, p.path, "", ""))


class Secrets:
    """Credentials in use for requests to `url`, so that any echo of them (servers do echo) is scrubbed."""

    def __init__(self, env: Mapping[str, str], url: str = ""):
        self.env = env
        self.url = url
        self.values: list[str] = []

    def expand(self, text: str) -> str:
        value = expand_secret(text, self.env, self.url)
        if value != text or len(value) >= 4:
            self.add(value)
        return value

    def add(self, value: str) -> None:
        self.values.append(value)
        remember_secret(value)

    def scrub(self, text: str) -> str:
        for secret in self.values:
            if len(secret) >= 4:
                text = text.replace(secret, "<secret>")
        return scrub(text)


def new_session(url: str, headers: Mapping[str, str], secrets: Secrets, ca_file: str | None = None,
                tls_insecure: bool = False, timeout_s: float = 30.0) -> Transport:
    """A connection to the server of `url`, with the expanded headers (no proxies, no .netrc, no redirects)."""
    from vmrules.net.transport import Transport

    expanded = {}
    for k, v in headers.items():
        expanded[k] = secrets.expand(v)
        check_header(k, expanded[k])
    expanded["Accept-Encoding"] = "identity"      # only an error message is read from a service's answer
    return Transport(url, expanded, timeout_s, ca_file, tls_insecure)


def backoff(attempt: int, retry_after: float | None) -> float:
    """Seconds to wait before attempt `attempt + 1`."""
    delay = retry_after if retry_after is not None else BACKOFF_S * 2 ** (attempt - 1)
    return float(min(delay, MAX_RETRY_AFTER_S) * (1 + random.random() / 4))


@dataclass
class Answer:
    """A service's answer: its status and the first MAX_ERROR_BODY bytes of its body."""

    status_code: int
    content: bytes


def deliver(session: Transport, method: str, url: str, body: bytes, headers: Mapping[str, str],
            timeout_s: float, secrets: Secrets, log: Callable[[str], None], read: int = 0) -> Answer:
    """Send a request with the retry policy; HttpError when it cannot be delivered.

    Each attempt has `timeout_s` in all (headers and body); all attempts and pauses end within
    ATTEMPTS x `timeout_s`. The answer's body is read to MAX_ERROR_BODY bytes, or whole up to `read`
    bytes (AnswerTooLarge beyond) when the caller needs it.
    """
    started = time.monotonic()
    budget = ATTEMPTS * timeout_s
    for attempt in range(1, ATTEMPTS + 1):
        try:
            left = budget - (time.monotonic() - started)
            resp = _send(session, method, url, body, headers, timeout_s, min(timeout_s, max(left, 0.001)), read)
            log(f"{method} {redact_url(url)} -> {resp.status_code} (attempt {attempt})")
            return resp
        except Retryable as exc:
            delay = backoff(attempt, exc.retry_after)
            if attempt == ATTEMPTS:
                raise HttpError(secrets.scrub(f"{redact_url(url)}: {exc} (after {ATTEMPTS} attempts)")) from None
            if time.monotonic() - started + delay >= budget:
                raise HttpError(secrets.scrub(f"{redact_url(url)}: {exc} (after {attempt} attempt(s): no time left "
                                              f"within {budget:g}s, {ATTEMPTS} x the timeout)")) from None
            log(secrets.scrub(f"retrying {redact_url(url)} in {delay:.1f}s: {exc}"))
            time.sleep(delay)
        except HttpError as exc:
            raise HttpError(secrets.scrub(f"{redact_url(url)}: {exc}")) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _send(session: Transport, method: str, url: str, body: bytes, headers: Mapping[str, str],
          timeout_s: float, deadline_s: float, read: int = 0) -> Answer:
    import http.client
    import ssl

    limit = max(read, MAX_ERROR_BODY)
    try:
        with session.open(method, url, {}, body=body, headers=headers, timeout_s=deadline_s) as resp:
            parts, size = [], 0
            while size < limit and (chunk := resp.read1(min(limit - size, 1 << 20))):
                parts.append(chunk)
                size += len(chunk)
            if read and size >= limit and resp.read1(1):
                raise AnswerTooLarge(f"the answer is larger than {limit >> 20} MiB; refused")
            content = b"".join(parts)
            status, answer_headers = resp.status_code, resp.headers
    except ssl.SSLError as exc:
        raise HttpError(tls_failure(exc)) from None
    except TimeoutError:
        raise Retryable(f"no complete answer within {timeout_s:g}s") from None
    except (OSError, http.client.HTTPException) as exc:
        raise Retryable(f"cannot connect: {reason(exc)}") from None
    check_status(status, content, answer_headers)
    return Answer(status, content)


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


_PLAIN_HTTP = ("wrong version number", "record layer failure", "http request", "packet length too long",
               "unknown protocol")   # what OpenSSL says when an https:// URL reaches a plain HTTP server


def tls_failure(exc: Exception, ca_file: bool = False) -> str:
    """Why a TLS connection failed, with what to do: an https:// URL of a plain HTTP server wants http://;
    a certificate that does not verify wants the CA (`ca_file`, where there is one)."""
    text = str(exc).lower().replace("_", " ")
    if any(marker in text for marker in _PLAIN_HTTP):
        return "TLS failed: the server answered in plain HTTP, not TLS: use http:// in the url"
    hint = " (set ca_file to the CA that signed the server's certificate)" if ca_file and "certificate" in text else ""
    return f"TLS failed: {reason(exc)}{hint}"


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
