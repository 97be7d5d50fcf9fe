"""Error messages as a new user meets them: each names the rule and says what to check."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support.data import END_S, export_jsonl
from tests.support.servers import FaultServer, Reply, VictoriaMetrics, free_port, matrix
from vmrules.cli import main
from vmrules.net import http

WINDOW = ["--from", str(END_S - 600), "--to", str(END_S)]


def usage(command: str, error: str) -> str:
    """What click prints for a usage error of `command` (exit 2)."""
    args = "EXPR..." if command == "query" else "[PATHS]..."
    return f"Usage: main {command} [OPTIONS] {args}\nTry 'main {command} --help' for help.\n\nError: {error}\n"


def apply(tmp_path: Path, url: str, query: str = "cpu_usage") -> tuple[int, str]:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    (folder / "r.yaml").write_text(f"version: 1\ndatasource: {{url: '{url}', timeout: 2s}}\n"
                                   "targets: {f: {type: csv, path: f.csv}}\n"
                                   f"rules: [{{name: r, query: '{query}', route: [{{to: f}}]}}]\n")
    res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(tmp_path / "out"), *WINDOW])
    return res.exit_code, res.stderr


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "BACKOFF_S", 0.01)


def test_connection_refused(tmp_path: Path) -> None:
    code, err = apply(tmp_path, f"http://127.0.0.1:{free_port()}")
    assert code == 1
    assert "error: rule r: datasource http://127.0.0.1:" in err
    assert "connection refused (nothing listens there: check the host and port of the url" in err


def test_host_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_host(*_args: object, **_kw: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)      # no resolver is asked: loopback only
    code, err = apply(tmp_path, "http://vmselect.example:8481/select/0/prometheus")
    assert code == 1
    assert "host name not found (check the host in the url)" in err


def test_wrong_path_prefix(vm: VictoriaMetrics, tmp_path: Path) -> None:
    code, err = apply(tmp_path, vm.url + "/select/0/prometheus")      # a cluster path on a single node
    assert code == 1
    assert "HTTP 400" in err or "HTTP 404" in err
    assert "wrong path? the url is the Prometheus API prefix: http://host:8428 for single-node" in err


def test_empty_result_gets_a_note(vm: VictoriaMetrics, tmp_path: Path) -> None:
    code, err = apply(tmp_path, vm.url, query="cpu_usgae")
    assert code == 0
    assert "note: rule r: the query found no series from 2026-10-31T23:50:00Z to 2026-11-01T00:00:00Z" in err
    assert "vmrules query 'cpu_usgae' --since 1h" in err
    assert apply(tmp_path, vm.url)[1] == ""                        # no note when there are series


# -- https:// against a plain HTTP server ----------------------------------------------------------
PLAIN = "TLS failed: the server answered in plain HTTP, not TLS: use http:// in the url"


def test_https_to_a_plain_http_server_says_use_http(tmp_path: Path) -> None:
    server = FaultServer(lambda seen: Reply(200, matrix([({"__name__": "m"}, [(END_S, "1")])])))
    try:
        tls = server.url.replace("http://", "https://")
        code, err = apply(tmp_path, tls)
        assert code == 1
        assert err == f"error: rule r: datasource {tls}: {tls}/api/v1/query_range: {PLAIN}\n"
        res = CliRunner().invoke(main, ["query", "m", "--datasource", tls, *WINDOW])
        assert res.exit_code == 1
        assert res.stderr == f"error: query 'm': {tls}/api/v1/query_range: {PLAIN}\n"
        assert server.seen == []                  # what TLS sent was no HTTP request
        assert apply(tmp_path, server.url, query="m") == (0, "")
    finally:
        server.stop()


def test_a_webhook_at_https_on_a_plain_http_server_says_use_http(tmp_path: Path) -> None:
    receiver = FaultServer(lambda seen: Reply(200, b"{}"))
    try:
        data = tmp_path / "data.jsonl"
        data.write_text(export_jsonl())
        hook = receiver.url.replace("http://", "https://") + "/hook"
        folder = tmp_path / "rules"
        folder.mkdir()
        (folder / "r.yaml").write_text(f"version: 1\ndatasource: {{url: 'file:{data}'}}\n"
                                       f"targets: {{hook: {{type: webhook, url: '{hook}'}}}}\n"
                                       "rules: [{name: r, query: cpu_usage, route: [{to: hook}]}]\n")
        res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(tmp_path / "out"), *WINDOW, "-q"])
        assert res.exit_code == 1
        assert res.stderr == f"error: rule r: target hook: {hook}: {PLAIN}\n"
        assert receiver.seen == []
    finally:
        receiver.stop()


def test_a_certificate_that_does_not_verify_still_points_at_ca_file() -> None:
    import ssl

    failure = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    assert http.tls_failure(failure, ca_file=True) == ("TLS failed: certificate verify failed (set ca_file to the "
                                                       "CA that signed the server's certificate)")
    assert http.tls_failure(failure) == "TLS failed: certificate verify failed"
    for said in ("[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)",
                 "[SSL: RECORD_LAYER_FAILURE] record layer failure (_ssl.c:1000)"):
        assert http.tls_failure(ssl.SSLError(1, said), ca_file=True) == PLAIN


# -- an environment variable that is not set ---------------------------------------------------------
def _variables_rules(tmp_path: Path, url: str) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "a.yaml").write_text(
        f"version: 1\ndatasource: {{url: '{url}', bearer_token: '${{VM_TOKEN}}'}}\n"
        "targets:\n  f: {type: csv, path: f.csv}\n"
        f"  hook: {{type: webhook, url: '{url}/hook', headers: {{X-Key: '${{HOOK_TOKEN}}'}}}}\n"
        "rules:\n" + "".join(f"  - {{name: r{i}, query: m, route: [{{to: f}}]}}\n" for i in range(5))
        + "  - {name: hooked, query: m, route: [{to: [f, hook]}]}\n")
    (folder / "b.yaml").write_text(
        f"version: 1\ndatasource:\n  url: '{url}'\n  headers: {{X-Org: '${{VM_TOKEN}}', X-Team: '${{TEAM}}'}}\n"
        "rules: [{name: other, query: m, route: [{to: f}]}]\n")
    return folder


def test_an_unset_variable_is_one_usage_error_before_any_request(tmp_path: Path) -> None:
    server = FaultServer(lambda seen: Reply(200, b"{}" if seen.path == "/hook" else
                                            matrix([({"__name__": "m"}, [(END_S, "1")])])))
    try:
        folder = _variables_rules(tmp_path, server.url)
        out = tmp_path / "out"
        env = {"VMRULES_ALLOW_ENV": "VM_TOKEN,HOOK_TOKEN,TEAM", "VM_TOKEN": None, "HOOK_TOKEN": None, "TEAM": "t"}
        a, b = folder / "a.yaml", folder / "b.yaml"
        said = (f"environment variable VM_TOKEN is not set; used in the datasource at {a}:2:13: bearer_token "
                f"(rules r0, r1, r2 and 3 more); the datasource at {b}:3:3: header X-Org (rule other)\n"
                f"environment variable HOOK_TOKEN is not set; used in target hook at {a}:5:3: header X-Key "
                "(rule hooked)")
        for extra in ([], ["--dry-run"], ["--incremental"], ["--chunk", "5m"]):
            res = CliRunner(env=env).invoke(main, ["apply", str(folder), "--output-dir", str(out), *WINDOW, *extra])
            assert res.exit_code == 2, extra
            assert res.stderr == usage("apply", said)
            assert res.stdout == ""
        res = CliRunner(env=env).invoke(main, ["plan", str(folder), *WINDOW])      # plan sends to no target
        assert res.exit_code == 2 and res.stderr == usage("plan", said.split("\n")[0])
        assert server.seen == [] and not out.exists()
        res = CliRunner(env={**env, "VM_TOKEN": "v", "HOOK_TOKEN": "h"}).invoke(
            main, ["apply", str(folder), "--output-dir", str(out), *WINDOW, "-q"])
        assert (res.exit_code, res.stderr) == (0, "")           # once set, they are sent
        assert [s.headers["X-Key"] for s in server.seen if s.path == "/hook"] == ["h"]
        assert {s.headers.get("Authorization", s.headers.get("X-Org")) for s in server.seen
                if s.path.endswith("query_range")} == {"Bearer v", "v"}
    finally:
        server.stop()


def test_a_refused_variable_still_fails_only_its_rules(tmp_path: Path) -> None:
    folder = _variables_rules(tmp_path, f"http://127.0.0.1:{free_port()}")
    env = {"VMRULES_ALLOW_ENV": "HOOK_TOKEN,TEAM", "VM_TOKEN": None, "HOOK_TOKEN": "h", "TEAM": "t"}
    res = CliRunner(env=env).invoke(main, ["apply", str(folder), "--output-dir", str(tmp_path / "out"), *WINDOW, "-q"])
    assert res.exit_code == 1                  # not allowed: the rule files learn nothing of whether it is set
    assert "VM_TOKEN may not be read by rule files" in res.stderr and "not set" not in res.stderr


def test_query_header_with_an_unset_variable(tmp_path: Path) -> None:
    res = CliRunner(env={"NOT_SET_HERE": None}).invoke(
        main, ["query", "up", "--datasource", f"http://127.0.0.1:{free_port()}", "-H", "X-Key: ${NOT_SET_HERE}"])
    assert res.exit_code == 2
    assert res.stderr == usage("query", "-H X-Key: environment variable NOT_SET_HERE is not set")


@pytest.mark.parametrize("command", [["apply", "--output-dir", "OUT"], ["plan"], ["query", "up"]])
def test_a_datasource_without_scheme_is_a_usage_error(tmp_path: Path, command: list[str]) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "r.yaml").write_text("version: 1\nrules: [{name: r, query: up}]\n")
    args = [a.replace("OUT", str(tmp_path / "out")) for a in command]
    res = CliRunner().invoke(main, [*args[:1], *([str(folder)] if args[0] != "query" else []), *args[1:],
                                    "--datasource", "localhost:8428", *WINDOW])
    assert res.exit_code == 2
    assert res.stderr == usage(args[0], "--datasource 'localhost:8428' has no scheme: add http:// in front "
                                        "(https:// for TLS)")
    assert not (tmp_path / "out").exists()


def test_validate_online_with_a_datasource_without_scheme_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("version: 1\nrules: [{name: r, query: up}]\n")
    res = CliRunner().invoke(main, ["validate", str(tmp_path), "--online", "--datasource", "localhost:8428"])
    assert res.exit_code == 2
    assert res.stderr == usage("validate", "--datasource 'localhost:8428' has no scheme: add http:// in front "
                                           "(https:// for TLS)")
