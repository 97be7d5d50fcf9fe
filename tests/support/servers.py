"""Real peers on loopback for the tests: VictoriaMetrics, vmauth, and a scripted fault server."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen[bytes], log: str, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{what} did not start; its log:\n{open(log).read()[-2000:]}")


class VictoriaMetrics:
    """A throwaway single-node VictoriaMetrics (Debian's package) on a free loopback port."""

    def __init__(self, workdir: str, path_prefix: str = ""):
        binary = shutil.which("victoria-metrics")
        if binary is None:
            raise RuntimeError("victoria-metrics is not installed: run `make test` (it installs Debian's package)")
        self.port = free_port()
        self.prefix = path_prefix
        self.url = f"http://127.0.0.1:{self.port}{path_prefix}"
        self.log = os.path.join(workdir, f"vm-{self.port}.log")
        args = [binary, f"-storageDataPath={workdir}/vmdata-{self.port}", f"-httpListenAddr=127.0.0.1:{self.port}",
                "-retentionPeriod=100y", "-search.latencyOffset=0s", "-search.disableCache"]
        if path_prefix:
            args.append(f"-http.pathPrefix={path_prefix}")
        self.proc = subprocess.Popen(args, stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        _wait(f"{self.url}/health", self.proc, self.log, "victoria-metrics")

    def import_lines(self, lines: Iterable[dict[str, Any]]) -> None:
        body = "".join(json.dumps(x).replace("Infinity", "Inf") + "\n" for x in lines).encode()
        req = urllib.request.Request(self.url + "/api/v1/import", data=body, method="POST")
        urllib.request.urlopen(req, timeout=60).read()
        urllib.request.urlopen(self.url + "/internal/force_flush", timeout=60).read()

    def wait_for(self, query: str, count: int, at_s: int) -> None:
        """Bounded wait until `count(query)` at `at_s` equals `count`."""
        for _ in range(150):
            q = urllib.parse.urlencode({"query": f"count({query})", "time": at_s})
            doc = json.load(urllib.request.urlopen(f"{self.url}/api/v1/query?{q}", timeout=10))
            result = doc["data"]["result"]
            if result and result[0]["value"][1] == str(count):
                return
            time.sleep(0.1)
        raise RuntimeError(f"{query}: imported data did not become visible")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class VmAuth:
    """vmauth in front of a VictoriaMetrics, admitting one bearer token."""

    def __init__(self, workdir: str, backend: str, token: str):
        port = free_port()
        cfg = os.path.join(workdir, f"vmauth-{port}.yml")
        with open(cfg, "w") as f:
            f.write(f"users:\n  - bearer_token: {json.dumps(token)}\n    url_prefix: {json.dumps(backend)}\n")
        self.url = f"http://127.0.0.1:{port}"
        self.log = os.path.join(workdir, f"vmauth-{port}.log")
        binary = shutil.which("vmauth")
        if binary is None:
            raise RuntimeError("vmauth is not installed: run `make test` (Debian's victoria-metrics package)")
        self.proc = subprocess.Popen([binary, f"-auth.config={cfg}", f"-httpListenAddr=127.0.0.1:{port}"],
                                     stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        _wait(f"{self.url}/health", self.proc, self.log, "vmauth")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@dataclass
class Reply:
    """One scripted answer of the fault server."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    reset: bool = False              # close the connection without an answer
    drip_s: float = 0.0              # pause between bytes
    content_length: int | None = None
    hang_up: bool = False            # close the connection after answering, without saying so
    drip_headers_s: float = 0.0      # pause between bytes of the status line and headers (slow headers)
    gzip: bool = False               # send the body with Content-Encoding: gzip (compressed here)


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    peer: str = ""                   # the client's address and port: one per connection


class FaultServer:
    """A loopback HTTP server that answers each request with the next scripted Reply."""

    def __init__(self, script: list[Reply] | Callable[[Seen], Reply], tls: tuple[str, str] | None = None):
        self.script = script
        self.in_flight = 0
        self.max_in_flight = 0
        self._count = threading.Lock()
        self.seen: list[Seen] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parsed = urllib.parse.urlsplit(self.path)
                seen = Seen(self.command, parsed.path, urllib.parse.parse_qs(parsed.query),
                            {k: v for k, v in self.headers.items()}, body, f"{self.client_address}")
                server.seen.append(seen)
                with server._count:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    reply = server.next(seen)
                finally:
                    with server._count:
                        server.in_flight -= 1
                if reply.reset:   # RST: linger 0, then close the descriptor itself
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    os.close(self.connection.detach())
                    self.close_connection = True
                    return
                body = reply.body
                headers = dict(reply.headers)
                if reply.gzip:
                    body = body if body[:2] == b"\x1f\x8b" else gzip.compress(body)
                    headers["Content-Encoding"] = "gzip"
                n = reply.content_length if reply.content_length is not None else len(body)
                head = f"HTTP/1.1 {reply.status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                head += f"Content-Length: {n}\r\n\r\n"
                for i in range(len(head) if reply.drip_headers_s else 1):
                    self.wfile.write(head[i:i + 1].encode() if reply.drip_headers_s else head.encode())
                    self.wfile.flush()
                    time.sleep(reply.drip_headers_s)
                reply = Reply(**{**reply.__dict__, "body": body})
                if reply.drip_s:
                    for i in range(len(reply.body)):
                        self.wfile.write(reply.body[i:i + 1])
                        self.wfile.flush()
                        time.sleep(reply.drip_s)
                else:
                    self.wfile.write(reply.body)
                if reply.content_length is not None and reply.content_length > len(reply.body) or reply.hang_up:
                    self.close_connection = True

            do_GET = do_POST = do_PUT = handle_any

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass   # resets and early closes are the point of this server

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        scheme = "http"
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def next(self, seen: Seen) -> Reply:
        if callable(self.script):
            return self.script(seen)
        if not self.script:
            return Reply(500, b"script exhausted")
        return self.script.pop(0)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


_BOMBS: dict[int, bytes] = {}


def gzip_bomb(inflated: int) -> bytes:
    """A gzip stream of `inflated` zero bytes (a MiB multiple; about 1/1000 of that on the wire), made once
    per size: one MiB compressed after a full flush is the same bytes every time, so it is repeated."""
    if inflated not in _BOMBS:
        z = zlib.compressobj(9, zlib.DEFLATED, -15)
        zeros = bytes(1 << 20)
        block = z.compress(zeros) + z.flush(zlib.Z_FULL_FLUSH)
        crc = 0
        for _ in range(inflated >> 20):
            crc = zlib.crc32(zeros, crc)
        head = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
        tail = z.flush() + struct.pack("<II", crc, inflated & 0xFFFFFFFF)
        _BOMBS[inflated] = head + block * (inflated >> 20) + tail
    return _BOMBS[inflated]


def non_string_labels() -> bytes:
    """A query_range answer whose label values are a number, a boolean and null (servers send strings)."""
    return json.dumps({"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"__name__": "m", "code": 500, "ok": True, "zone": None}, "values": [[1, "1"]]}]}}).encode()


def self_signed(folder: str) -> tuple[str, str]:
    """A certificate and key for 127.0.0.1, made with openssl (Debian's)."""
    cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    return cert, key


def matrix(series: list[tuple[dict[str, Any], list[tuple[float, str]]]], before: dict[str, Any] | None = None,
           **extra: Any) -> bytes:
    """A query_range answer in the compact layout servers write; `before` holds keys that come before
    `data` (e.g. a `stats` object with a `result` of its own), `extra` keys that come after it.
    Label values are written as given, strings or not."""
    result = [{"metric": m, "values": [[t, v] for t, v in pts]} for m, pts in series]
    doc = {"status": "success", **(before or {}), "data": {"resultType": "matrix", "result": result}, **extra}
    return json.dumps(doc, separators=(",", ":")).encode()


class Alertmanager:
    """A throwaway Alertmanager (Debian's prometheus-alertmanager) on a free loopback port."""

    def __init__(self, workdir: str):
        binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        if binary is None:
            raise RuntimeError("prometheus-alertmanager is not installed: run `make test` (Debian's package)")
        port = free_port()
        cfg = os.path.join(workdir, f"am-{port}.yml")
        with open(cfg, "w") as f:
            f.write("route: {receiver: blackhole}\nreceivers: [{name: blackhole}]\n")
        self.url = f"http://127.0.0.1:{port}"
        self.log = os.path.join(workdir, f"am-{port}.log")
        self.proc = subprocess.Popen([binary, f"--config.file={cfg}", f"--storage.path={workdir}/am-{port}",
                                      f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                                     stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        _wait(f"{self.url}/-/ready", self.proc, self.log, "alertmanager")

    def alerts(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=10) as r:
            return list(json.load(r))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


class Postgres:
    """A throwaway PostgreSQL (Debian's package) on a free loopback port, in a folder of its own.

    `initdb` refuses to run as root, so then the server runs as the `postgres` system user. Logins
    need the password (scram-sha-256), so that a wrong one is refused as on a real server.
    """

    USER = "vmrules"

    def __init__(self) -> None:
        import glob
        import tempfile

        # Debian keeps the server's tools out of PATH, in /usr/lib/postgresql/VERSION/bin
        found = shutil.which("initdb") or max(glob.glob("/usr/lib/postgresql/*/bin/initdb"), default=None)
        if found is None:
            raise RuntimeError("initdb is not installed: run `make test` (it installs Debian's postgresql)")
        self.bin = os.path.dirname(os.path.realpath(found))

        self.dir = tempfile.mkdtemp(prefix="vmrules-pg-")
        self.password = "pg-" + os.urandom(8).hex()
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.dir, "postgres")
        pwfile = os.path.join(self.dir, "pw")
        with open(pwfile, "w") as f:
            f.write(self.password + "\n")
        if self._as:
            shutil.chown(pwfile, "postgres")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        self._run("initdb", "-D", self.data, "-A", "scram-sha-256", "-U", self.USER, f"--pwfile={pwfile}",
                  "-E", "UTF8", "--locale=C.UTF-8")
        self._run("pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "-o",
                  f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        self.url = f"postgresql://{self.USER}:{self.password}@127.0.0.1:{self.port}"
        self._n = 0

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._as, os.path.join(self.bin, args[0]), *args[1:]], capture_output=True, text=True,
                              cwd=self.dir)
        if done.returncode != 0:
            log = open(self.log).read()[-2000:] if os.path.exists(self.log) else ""
            raise RuntimeError(f"{args[0]} failed: {done.stdout}{done.stderr}{log}")

    def dsn(self, database: str = "postgres") -> str:
        return f"{self.url}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its DSN."""
        self._n += 1
        name = f"t{self._n}"
        self.execute(f"CREATE DATABASE {name}")
        return self.dsn(name)

    def execute(self, sql: str, dsn: str | None = None) -> list[tuple[Any, ...]]:
        """Run one statement (autocommit); its rows, if it returns any."""
        from adbc_driver_postgresql import dbapi

        with dbapi.connect(dsn or self.dsn(), autocommit=True) as con, con.cursor() as cur:
            cur.execute(sql)
            try:
                return [tuple(r) for r in cur.fetchall()]
            except Exception:  # noqa: BLE001 - a statement without rows
                return []

    def stop(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
