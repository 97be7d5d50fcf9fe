"""Bounds that hold against hostile servers and rule files: deadlines, inflation, template work, YAML aliases,
regexes as the run sees them, output that cannot inject, and clear errors instead of tracebacks."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import time
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support.data import END_S, export_jsonl
from tests.support.servers import Alertmanager, FaultServer, Reply, gzip_bomb, matrix, non_string_labels
from vmrules.cli import main
from vmrules.net import http
from vmrules.targets.webhook import MAX_BODY_CHARS
from vmrules.templates import TemplateError, render

WINDOW = ["--from", str(END_S - 600), "--to", str(END_S)]
GOOD = matrix([({"__name__": "m", "i": "a"}, [(END_S - 60, "1"), (END_S, "2")])])
BOMB = 128 << 20

pytestmark = pytest.mark.usefixtures("fast_backoff")


def run(args: list[str], env: dict[str, str | None] | None = None) -> tuple[int, str, str]:
    res = CliRunner(env=env).invoke(main, args)
    assert not isinstance(res.exception, Exception), res.exception      # an error, never a traceback
    return res.exit_code, res.stdout, res.stderr


def write_rules(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    (folder / "r.yaml").write_text(text)
    return folder


def http_rules(tmp_path: Path, url: str, timeout: str = "1s", where: str = "") -> Path:
    return write_rules(tmp_path, f"version: 1\ndatasource: {{url: '{url}', timeout: {timeout}}}\n"
                                 "targets: {f: {type: csv, path: f.csv}}\n"
                                 f"rules: [{{name: r, query: m, {where}route: [{{to: f}}]}}]\n")


def file_rules(tmp_path: Path, targets: str, route: str, rule: str = "") -> Path:
    data = tmp_path / "data.jsonl"
    data.write_text(export_jsonl())
    return write_rules(tmp_path, f"version: 1\ndatasource: {{url: 'file:{data}'}}\ntargets: {{{targets}}}\n"
                                 f"rules: [{{name: r, query: cpu_usage, {rule}route: [{{to: {route}}}]}}]\n")


# -- deadlines -------------------------------------------------------------------------------------
def test_slow_headers_from_a_datasource_hit_the_deadline(tmp_path: Path) -> None:
    server = FaultServer(lambda seen: Reply(200, GOOD, drip_headers_s=0.2))
    try:
        started = time.monotonic()
        code, _, err = run(["apply", str(http_rules(tmp_path, server.url, "500ms")), "--output-dir",
                            str(tmp_path / "o"), *WINDOW])
        took = time.monotonic() - started
        assert code == 1 and "no answer within 0.5s" in err
        assert took < 3 * 0.5 + 1.5, took            # three attempts of 0.5 s at most, pauses included
    finally:
        server.stop()


@pytest.mark.parametrize("reply", [Reply(200, b"ok", drip_headers_s=0.2), Reply(200, b"x" * 200, drip_s=0.1)])
def test_slow_webhook_answers_hit_the_deadline(tmp_path: Path, reply: Reply) -> None:
    receiver = FaultServer(lambda seen: reply)
    try:
        folder = file_rules(tmp_path, f"hook: {{type: webhook, url: '{receiver.url}/h', timeout: 500ms}}", "hook")
        started = time.monotonic()
        code, _, err = run(["apply", str(folder), "--output-dir", str(tmp_path / "o"), *WINDOW])
        took = time.monotonic() - started
        assert code == 1 and "error: rule r: target hook:" in err and "no complete answer within 0.5s" in err
        assert took < 3 * 0.5 + 1.5, took
    finally:
        receiver.stop()


# -- inflation -------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [200, 503])      # streamed, and read whole for its error message
def test_a_gzip_bomb_from_a_datasource_is_refused(tmp_path: Path, status: int) -> None:
    server = FaultServer(lambda seen: Reply(status, gzip_bomb(BOMB), gzip=True))
    try:
        code, _, err = run(["apply", str(http_rules(tmp_path, server.url, "20s")), "--output-dir",
                            str(tmp_path / "o"), *WINDOW])
        assert code == 1 and "gzip bomb?" in err
        assert len(server.seen) == 1                  # refused for good, not retried
    finally:
        server.stop()


def test_a_gzip_bomb_from_a_webhook_is_not_inflated(tmp_path: Path) -> None:
    receiver = FaultServer(lambda seen: Reply(500, gzip_bomb(BOMB), gzip=True))
    try:
        folder = file_rules(tmp_path, f"hook: {{type: webhook, url: '{receiver.url}/h', timeout: 5s}}", "hook")
        code, _, err = run(["apply", str(folder), "--output-dir", str(tmp_path / "o"), *WINDOW])
        assert code == 1 and "HTTP 500" in err and "(after 3 attempts)" in err
        secrets = http.Secrets({})
        tracemalloc.start()
        try:
            with pytest.raises(http.HttpError, match="HTTP 500"):
                http.deliver(http.new_session(receiver.url, {}, secrets), "POST", receiver.url + "/h", b"{}", {},
                             5.0, secrets, lambda _m: None)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 16 << 20, peak              # the 128 MiB answer was never inflated
    finally:
        receiver.stop()


# -- template work ---------------------------------------------------------------------------------
NESTED = "{% for a in rule.query %}{% for b in rule.query %}{% for c in rule.query %}{% for d in rule.query %}" \
         "{% endfor %}{% endfor %}{% endfor %}{% endfor %}x.csv"


@pytest.mark.parametrize("template, message", [
    (NESTED, "too much work"),
    ('{{ ("ab" * 4000000000)|length }}.csv', "would build a value of 8000000000"),
    ("{{ '%999999999d' % 1 }}.csv", "format width"),
    ("{{ '{:>999999999}'.format(1) }}.csv", "format width"),
    ("{{ rule.query|replace('a', rule.query)|length }}.csv", "would build"),
    ("{{ 'x'.ljust(999999999) }}.csv", "ljust"),
    ("{{ 9 ** 99999999 }}.csv", "exponent"),
    ("{% set a = rule.query ~ rule.query %}{% set b = a ~ a %}{% set c = b ~ b %}{{ c ~ c ~ c }}.csv", "would build"),
    ("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}.csv", "macro"),
])
def test_template_work_is_bounded_before_it_is_done(tmp_path: Path, template: str, message: str) -> None:
    folder = write_rules(tmp_path, "version: 1\ntargets: {f: {type: csv, path: " + json.dumps(template) + "}}\n"
                         f"rules: [{{name: r, query: '{'a' * 20000}', route: [{{to: f}}]}}]\n")
    started = time.monotonic()
    code, out, _ = run(["validate", str(folder)])
    assert code == 1 and message in out
    assert time.monotonic() - started < 10


def test_run_time_templates_have_the_same_bounds() -> None:
    rows = [{"value": i} for i in range(1000)]
    started = time.monotonic()
    for body in ('{{ ("ab" * 4000000000)|length }}', "{% for a in rows %}{% for b in rows %}{% for c in rows %}"
                 "{% endfor %}{% endfor %}{% endfor %}"):
        with pytest.raises(TemplateError, match="template not allowed"):
            render(body, {"rows": rows}, limit=MAX_BODY_CHARS)
    assert time.monotonic() - started < 10
    assert render("{% for r in rows %}{{ r.value }};{% endfor %}", {"rows": rows[:3]}) == "0;1;2;"


# -- YAML: aliases are limited, size is not ---------------------------------------------------------
def test_forty_thousand_plain_rules_load_and_an_alias_bomb_does_not(tmp_path: Path) -> None:
    lines = ["version: 1", "datasource: {url: 'http://vm:8428'}", "rules:"]
    lines += [f"  - {{name: rule_{i:05d}, query: 'up{{job=\"node\", i=\"{i}\"}}'}}" for i in range(40_000)]
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "r.yaml").write_text("\n".join(lines) + "\n")
    assert (tmp_path / "big" / "r.yaml").stat().st_size > 1_800_000
    code, _, err = run(["validate", str(tmp_path / "big")])
    assert code == 0, err
    bomb = ["version: 1", 'a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    bomb += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]" for i in range(6)]
    (tmp_path / "bomb").mkdir()
    (tmp_path / "bomb" / "r.yaml").write_text("\n".join(bomb) + "\n")
    code, out, _ = run(["validate", str(tmp_path / "bomb")])
    assert code == 1 and "aliases expand to more than" in out


# -- regexes: validate checks with the engine that runs them ---------------------------------------
@pytest.mark.parametrize("regex", ["(?=1)", "a{1001}", "(?P<x>a)(?P=x)", "(a)\\\\1"])
def test_regexes_re2_refuses_fail_validate(tmp_path: Path, regex: str) -> None:
    folder = file_rules(tmp_path, "f: {type: csv, path: f.csv}", "f", f"where: 'instance =~ \"{regex}\"', ")
    code, out, _ = run(["validate", str(folder)])
    assert code == 1 and "invalid regex" in out


def test_a_posix_class_is_no_warning_in_json_logs(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, "f: {type: csv, path: f.csv}", "f", "where: 'instance =~ \"[[:alpha:]]+-[0-9]+\"', ")
    proc = subprocess.run([os.sys.executable, "-m", "vmrules", "apply", str(folder), "--output-dir",
                           str(tmp_path / "o"), *WINDOW, "--log-format", "json"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONWARNINGS": "default"})
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stderr.splitlines()]
    assert any(r["event"] == "rule" and r["series"] > 0 for r in records)


# -- output that cannot inject ---------------------------------------------------------------------
def test_every_csv_text_cell_is_safe_from_formulas(tmp_path: Path) -> None:
    series = [({"__name__": '=HYPERLINK("http://evil.example/")', "l": "+1", "ok": "fine"}, [(END_S, "1")])]
    server = FaultServer(lambda seen: Reply(200, matrix(series)))
    try:
        folder = http_rules(tmp_path, server.url)
        (folder / "r.yaml").write_text((folder / "r.yaml").read_text().replace(
            "path: f.csv", "path: f.csv, columns: [rule, metric, labels, l, ok, timestamp, value]"))
        assert run(["apply", str(folder), "--output-dir", str(tmp_path / "o"), *WINDOW])[0] == 0
        with open(tmp_path / "o" / "f.csv", newline="") as f:
            (row,) = csv.DictReader(f)
        assert row["metric"] == "'=HYPERLINK(\"http://evil.example/\")" and row["l"] == "'+1" and row["ok"] == "fine"
        code, out, _ = run(["query", "--datasource", server.url, *WINDOW, "--format", "csv", "--", "-up"])
        (cells,) = list(csv.DictReader(out.splitlines()))
        assert code == 0 and cells["rule"] == "'-up" and cells["metric"].startswith("'=HYPERLINK")
    finally:
        server.stop()


def test_plan_markdown_escapes_every_cell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    said = "bad\n| x | y |\n![pixel](http://evil.example/p.png) [click](http://evil.example) @here <b>`"
    server = FaultServer(lambda seen: Reply(400, json.dumps({"status": "error", "error": said}).encode()))
    try:
        repo = tmp_path / "repo"
        repo.mkdir()
        http_rules(repo, server.url)
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
        for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "rules"]):
            subprocess.run([*git, *args], cwd=repo, check=True, capture_output=True)
        monkeypatch.chdir(repo)
        code, out, _ = run(["plan", "rules", *WINDOW, "--base", "main", "--format", "markdown"])
        assert code == 1
        table = [line for line in out.splitlines() if line.startswith("| r ")]
        assert len(table) == 1 and len(out.splitlines()) == 5       # title, blank line, head, rule, one row
        cell = table[0]
        assert "](" not in cell.replace("`", "").split("failed: ")[0]
        failure = cell.split("(failed: ", 1)[1]
        assert failure.startswith("`") and failure.count("`") == 2         # one code span: no link, image or HTML
        assert "\\| x \\| y \\|" in failure and cell.count(" | ") == 5           # six cells
    finally:
        server.stop()


def test_alertmanager_gets_the_alert_of_a_series_with_odd_labels(tmp_path: Path) -> None:
    now = int(time.time()) // 60 * 60
    doc = json.loads(non_string_labels())      # label values that are not strings are refused (test_answers.py)
    (series,) = doc["data"]["result"]
    series["metric"] = {"__name__": "m", "service.name": "api", "code": "500"}
    series["values"] = [[now - 60, "1"], [now, "1"]]
    server = FaultServer(lambda seen: Reply(200, json.dumps(doc).encode()))
    am = Alertmanager(str(tmp_path))
    try:
        folder = write_rules(tmp_path, f"version: 1\ndatasource: {{url: '{server.url}'}}\n"
                             f"targets: {{am: {{type: alertmanager, url: '{am.url}'}}}}\n"
                             "rules: [{name: Odd, query: m, range: 5m, thresholds: [{above: 0}], "
                             "route: [{when: alert, to: am}]}]\n")
        code, _, err = run(["apply", str(folder), "--output-dir", str(tmp_path / "o"), "--to", str(now), "-v"])
        assert code == 0, err
        assert "service.name -> service_name" in err
        for _ in range(50):
            alerts = am.alerts()
            if alerts:
                break
            time.sleep(0.1)
        (alert,) = alerts
        assert alert["labels"]["service_name"] == "api" and alert["labels"]["alertname"] == "Odd"
        assert all(isinstance(v, str) for v in alert["labels"].values())
        assert alert["annotations"]["vmrules_renamed_labels"] == "service.name -> service_name"
    finally:
        am.stop()
        server.stop()


# -- clear errors, not tracebacks ------------------------------------------------------------------
READ_ONLY = "/sys" if os.geteuid() == 0 else "/proc"       # a folder nobody may write in, root included


def test_unwritable_places_are_clear_errors(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, "f: {type: csv, path: f.csv}", "f")
    code, _, err = run(["apply", str(folder), "--output-dir", READ_ONLY, *WINDOW])
    assert code == 2 and f"cannot write to the output directory {READ_ONLY}" in err
    for cmd in (["apply", str(folder), "--output-dir", str(tmp_path / "o")], ["plan", str(folder)]):
        code, _, err = run([*cmd, *WINDOW, "--report", f"{READ_ONLY}/r.html"])
        assert code == 2 and "--report" in err and "cannot write there" in err
    data = f"file:{tmp_path / 'data.jsonl'}"
    for fmt in ("csv", "parquet"):
        code, _, err = run(["query", "cpu_usage", "--datasource", data, *WINDOW, "--format", fmt, "-o",
                            f"{READ_ONLY}/q.{fmt}"])
        assert code == 2 and "cannot write there" in err


def test_a_time_in_milliseconds_is_a_clear_error(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, "f: {type: csv, path: f.csv}", "f")
    for cmd in (["apply", str(folder), "--output-dir", str(tmp_path / "o")], ["plan", str(folder)],
                ["query", "cpu_usage", "--datasource", f"file:{tmp_path / 'data.jsonl'}"]):
        code, _, err = run([*cmd, "--to", str(END_S * 1000), "--since", "1h"])
        assert code == 2 and "looks like milliseconds" in err
