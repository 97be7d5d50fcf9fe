"""The query path's HTTP/1.1 client, on the standard library's http.client.

Measured: `import requests` took 75-85 ms of the ~0.2 s before the first
request left (it brings cookie jars, charset detection, logging, idna...);
http.client and ssl take about 20 ms. The query path needs little: GET or
form POST, headers, a connect and read timeout, TLS verified against the
system or a given CA, gzip, bodies read as they arrive, one kept-alive
connection, no proxies, no .netrc and no redirects followed.
"""

from __future__ import annotations

import http.client
import ssl
import urllib.parse
import zlib
from collections.abc import Mapping

from vmrules.http import LOOPBACK


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

    def open(self, method: str, url: str, params: Mapping[str, str]) -> Response:
        """Send a request; the answer's body is read through the Response. OSError and
        http.client.HTTPException come out as they are (the caller says what they mean)."""
        path = urllib.parse.urlsplit(url).path or "/"
        query = urllib.parse.urlencode(params)
        headers = dict(self.headers)
        body = None
        if method == "POST":
            body = query.encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            path += "?" + query
        reused = self.conn is not None
        try:
            return self._send(method, path, body, headers)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            if not reused:          # a kept-alive connection the server closed meanwhile: once more, anew
                raise
            return self._send(method, path, body, headers)

    def _send(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Response:
        conn = self.conn or self._connect()
        self.conn = None              # taken until its answer has been read whole
        try:
            conn.request(method, path, body=body, headers=headers)
            return Response(conn.getresponse(), conn, self)
        except BaseException:
            conn.close()
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

    def __init__(self, raw: http.client.HTTPResponse, conn: http.client.HTTPConnection, transport: Transport):
        self.raw, self.conn, self.transport = raw, conn, transport
        self.status_code = raw.status
        self.headers = raw.headers
        gzipped = (raw.getheader("Content-Encoding") or "").strip().lower() == "gzip"
        self.inflate = zlib.decompressobj(wbits=31) if gzipped else None
        self.done = False

    def read1(self, n: int) -> bytes:
        """Some of the body (b"" at its end); http.client undoes chunked transfer encoding."""
        while not self.done:
            data = self.raw.read1(n)
            if not data:
                if self.raw.length:   # read1 takes a close before Content-Length for the end: it is not
                    raise http.client.IncompleteRead(b"", self.raw.length)
                self.done = True
                return self.inflate.flush() if self.inflate is not None else b""
            if self.inflate is None:
                return data
            out = self.inflate.decompress(data)
            if out:
                return out
        return b""

    def close(self) -> None:
        """Give the connection back when the body was read whole; otherwise close it."""
        self.raw.close()              # the response only: its connection stays open for the next request
        if self.done and not self.raw.will_close:
            self.transport.conn = self.conn
        else:
            self.conn.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
