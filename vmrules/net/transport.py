"""The query path's HTTP/1.1 client, on the standard library's http.client.

Measured: `import requests` took 75-85 ms of the ~0.2 s before the first
request left (it brings cookie jars, charset detection, logging, idna...);
http.client and ssl take about 20 ms. The query path needs little: GET or
form POST, headers, a connect and read timeout, TLS verified against the
system or a given CA, gzip, bodies read as they arrive, one kept-alive
connection, no proxies, no .netrc and no redirects followed. The service
targets (webhook, Alertmanager, VictoriaMetrics import) send through it too.

Bounds that hold against a hostile server: the timeout is a total deadline for
the whole request, headers and body (a watchdog shuts the socket when it
passes, so a server that drips one byte a second cannot stretch it), and a
gzip answer is inflated step by step and refused once it inflates more than
MAX_INFLATE_RATIO times (past a floor) or beyond MAX_INFLATED_BYTES.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import urllib.parse
import zlib
from collections.abc import Mapping

from vmrules.errors import AnswerTooLarge
from vmrules.net import LOOPBACK

INFLATE_STEP = 1 << 20              # bytes of inflated answer per step: memory stays bounded per call
MAX_INFLATE_RATIO = 200             # JSON answers inflate 5-30x; a gzip bomb about 1000x
INFLATE_RATIO_FLOOR = 64 << 20      # the ratio is judged only past this many inflated bytes
MAX_INFLATED_BYTES = 8 << 30        # whatever the ratio


class Deadline:
    """A request's total deadline: when it passes, the connection's socket is shut down, which ends
    any read or write in progress (a per-read socket timeout alone lets a slow drip go on forever).
    A connection still being made is shut down as soon as it has a socket."""

    def __init__(self, conn: http.client.HTTPConnection, seconds: float):
        self.conn = conn
        self.expired = False
        self.cancelled = threading.Event()
        self.timer = threading.Timer(max(seconds, 0.0), self._expire)
        self.timer.daemon = True
        self.timer.start()

    def _expire(self) -> None:
        self.expired = True
        while self.conn.sock is None and not self.cancelled.wait(0.05):
            pass
        sock = self.conn.sock
        if sock is not None and not self.cancelled.is_set():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        self.cancelled.set()
        self.timer.cancel()


class Transport:
    """Requests to one server (scheme, host and port of `base_url`), one connection kept alive."""

    def __init__(self, base_url: str, headers: Mapping[str, str], timeout_s: float, ca_file: str | None = None,
                 tls_insecure: bool = False):
        parts = urllib.parse.urlsplit(base_url)
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname or "", parts.port
        self.timeout_s = timeout_s
        self.headers = {"User-Agent": "vmrules", "Accept": "application/json",
                        "Accept-Encoding": "identity" if self.host in LOOPBACK else "gzip", **headers}
        self.context: ssl.SSLContext | None = None
        if self.https:
            self.context = ssl.create_default_context(cafile=ca_file)
            if tls_insecure:          # asked for explicitly in the rule file; the README says what it costs
                self.context.check_hostname = False
                self.context.verify_mode = ssl.CERT_NONE
        self.conn: http.client.HTTPConnection | None = None

    def open(self, method: str, url: str, params: Mapping[str, str], body: bytes | None = None,
             headers: Mapping[str, str] | None = None, timeout_s: float | None = None) -> Response:
        """Send a request; the answer's body is read through the Response, all within the deadline.

        With `body` None, a POST sends `params` as a form; otherwise they go in the URL. OSError
        (TimeoutError once the deadline passed) and http.client.HTTPException come out as they are
        (the caller says what they mean).
        """
        parts = urllib.parse.urlsplit(url)
        query = "&".join(q for q in (parts.query, urllib.parse.urlencode(params)) if q)
        path = parts.path or "/"
        all_headers = {**self.headers, **(headers or {})}
        if method == "POST" and body is None:
            body = query.encode()
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif query:
            path += "?" + query
        reused = self.conn is not None
        seconds = self.timeout_s if timeout_s is None else timeout_s
        try:
            return self._send(method, path, body, all_headers, seconds)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            if not reused:          # a kept-alive connection the server closed meanwhile: once more, anew
                raise
            return self._send(method, path, body, all_headers, seconds)

    def _send(self, method: str, path: str, body: bytes | None, headers: dict[str, str],
              seconds: float) -> Response:
        conn = self.conn or self._connect()
        self.conn = None              # taken until its answer has been read whole
        deadline = Deadline(conn, seconds)
        try:
            conn.request(method, path, body=body, headers=headers)
            return Response(conn.getresponse(), conn, self, deadline)
        except BaseException as exc:
            deadline.cancel()
            conn.close()
            if deadline.expired and isinstance(exc, (OSError, http.client.HTTPException)):
                raise TimeoutError(f"no answer within {seconds:g}s") from None
            raise

    def _connect(self) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout_s, context=self.context)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Response:
    """A status, headers, and the body (decoded from gzip) as it arrives."""

    def __init__(self, raw: http.client.HTTPResponse, conn: http.client.HTTPConnection, transport: Transport,
                 deadline: Deadline):
        self.raw, self.conn, self.transport, self.deadline = raw, conn, transport, deadline
        self.status_code = raw.status
        self.headers = raw.headers
        gzipped = (raw.getheader("Content-Encoding") or "").strip().lower() == "gzip"
        self.inflate = zlib.decompressobj(wbits=31) if gzipped else None
        self.compressed = self.inflated = 0
        self.done = False

    def read1(self, n: int) -> bytes:
        """Some of the body (b"" at its end); http.client undoes chunked transfer encoding.
        TimeoutError once the request's deadline has passed; AnswerTooLarge for a gzip bomb."""
        try:
            return self._read1(n)
        except (OSError, http.client.HTTPException):
            if self.deadline.expired:
                raise TimeoutError("answer not complete within the request's deadline") from None
            raise

    def _read1(self, n: int) -> bytes:
        while not self.done:
            if self.inflate is not None and self.inflate.unconsumed_tail:
                out = self._inflate(self.inflate.unconsumed_tail)
                if out:
                    return out
                continue
            data = self.raw.read1(n)
            if not data:
                if self.raw.length:   # read1 takes a close before Content-Length for the end: it is not
                    raise http.client.IncompleteRead(b"", self.raw.length)
                self.done = True
                return self._inflate(b"", final=True) if self.inflate is not None else b""
            if self.inflate is None:
                return data
            self.compressed += len(data)
            out = self._inflate(data)
            if out:
                return out
        return b""

    def _inflate(self, data: bytes, final: bool = False) -> bytes:
        """At most INFLATE_STEP bytes of inflated answer; the rest of `data` waits in unconsumed_tail."""
        assert self.inflate is not None
        out = self.inflate.flush(INFLATE_STEP) if final else self.inflate.decompress(data, INFLATE_STEP)
        self.inflated += len(out)
        if self.inflated > MAX_INFLATED_BYTES or (self.inflated > INFLATE_RATIO_FLOOR
                                                   and self.inflated > MAX_INFLATE_RATIO * self.compressed):
            raise AnswerTooLarge(f"the gzip answer inflated to more than {self.inflated >> 20} MiB from "
                                 f"{self.compressed >> 10} KiB (over {MAX_INFLATE_RATIO}x: a gzip bomb?); refused")
        return out

    def close(self) -> None:
        """Give the connection back when the body was read whole; otherwise close it."""
        self.deadline.cancel()
        self.raw.close()              # the response only: its connection stays open for the next request
        if self.done and not self.raw.will_close and not self.deadline.expired:
            self.transport.conn = self.conn
        else:
            self.conn.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
