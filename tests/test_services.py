"""Service targets against real peers: a recording receiver, Alertmanager, VictoriaMetrics; and plugins."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support.data import END_S, dataset, export_jsonl
from tests.support.servers import Alertmanager, FaultServer, Reply, VictoriaMetrics
from vmrules.cli import main

ROOT = Path(__file__).parent.parent
WINDOW = ["--from", str(END_S - 3600), "--to", str(END_S)]


pytestmark = pytest.mark.usefixtures("fast_backoff")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text(export_jsonl())
    return path


def apply(tmp_path: Path, text: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    (folder / "r.yaml").write_text(text)
    env = {**env, "VMRULES_ALLOW_ENV": ",".join(env)} if env else None     # rule files read only allowed variables
    res = CliRunner(env=env).invoke(main, ["apply", str(folder), "--output-dir", str(tmp_path / "out"), *args])
    return res.exit_code, res.stdout, res.stderr


# -- webhook --------------------------------------------------------------------
@pytest.fixture
def receiver() -> Iterator[FaultServer]:
    s = FaultServer(lambda seen: Reply(200, b"ok"))
    yield s
    s.stop()


def hook_rules(data: Path, url: str, extra: str = "", batch: int = 25) -> str:
    return (f"version: 1\ndatasource: {{url: 'file:{data}'}}\n"
            f"targets:\n  hook: {{type: webhook, url: '{url}/hook', batch_size: {batch}, "
            f"headers: {{X-Token: '${{TOK}}'}}{extra}}}\n"
            "rules:\n  - name: disk\n    query: disk_free\n    labels: {note: \"say \\\"hi\\\"\\nbye\"}\n"
            "    thresholds: [{severity: low, below: 2000000000}]\n    route: [{when: alert, to: hook}]\n")


def test_webhook_batches_rows_as_json(data: Path, receiver: FaultServer, tmp_path: Path) -> None:
    code, stdout, stderr = apply(tmp_path, hook_rules(data, receiver.url), *WINDOW, env={"TOK": "t0k3n"})
    assert code == 0, stderr
    bodies = [json.loads(s.body) for s in receiver.seen]
    rows = [r for b in bodies for r in b["rows"]]
    want = [w for w in dataset() if w["metric"]["__name__"] == "disk_free"]
    expected = sum(1 for w in want for t, v in zip(w["timestamps"], w["values"], strict=True)
                   if END_S - 3600 <= t // 1000 <= END_S and v < 2e9)
    assert len(rows) == expected == 122 and [b["count"] for b in bodies] == [25, 25, 25, 25, 22]
    assert {b["batches"] for b in bodies} == {5} and [b["batch"] for b in bodies] == [0, 1, 2, 3, 4]
    assert rows[0]["severity"] == "low" and rows[0]["timestamp"].endswith("Z")
    assert json.loads(rows[0]["labels"])["note"] == 'say "hi"\nbye'
    seen = receiver.seen
    assert all(s.method == "POST" and s.path == "/hook" and s.headers["X-Token"] == "t0k3n" for s in seen)
    assert len({s.headers["Idempotency-Key"] for s in seen}) == 5
    assert "hook=122" in stdout


def test_webhook_retries_with_one_key(data: Path, tmp_path: Path) -> None:
    server = FaultServer([Reply(503, b"busy"), Reply(503, b"busy"), Reply(200, b"ok")])
    try:
        code, _, stderr = apply(tmp_path, hook_rules(data, server.url, batch=1000), *WINDOW,
                                env={"TOK": "x"})
        assert code == 0, stderr
        assert len(server.seen) == 3
        assert len({s.headers["Idempotency-Key"] for s in server.seen}) == 1
        assert server.seen[0].body == server.seen[2].body
    finally:
        server.stop()


def test_webhook_key_is_stable_across_reruns(data: Path, receiver: FaultServer, tmp_path: Path) -> None:
    for _ in range(2):
        assert apply(tmp_path, hook_rules(data, receiver.url), *WINDOW, env={"TOK": "x"})[0] == 0
    keys = [s.headers["Idempotency-Key"] for s in receiver.seen]
    assert len(keys) == 10 and keys[:5] == keys[5:]


def test_webhook_client_error_fails_the_rule(data: Path, tmp_path: Path) -> None:
    server = FaultServer([Reply(400, b'{"error": "bad payload"}')])
    try:
        code, _, stderr = apply(tmp_path, hook_rules(data, server.url), *WINDOW, env={"TOK": "x"})
        assert code == 1 and len(server.seen) == 1
        assert "error: rule disk: target hook: " in stderr and "HTTP 400: error: bad payload" in stderr
    finally:
        server.stop()


def test_webhook_body_template_and_put(data: Path, receiver: FaultServer, tmp_path: Path) -> None:
    body = ", method: PUT, body: '{{ rule.name }}:{{ count }}:{% for r in rows %}{{ r.value|int }};{% endfor %}'"
    code, _, stderr = apply(tmp_path, hook_rules(data, receiver.url, body), *WINDOW, env={"TOK": "x"})
    assert code == 0, stderr
    assert [s.method for s in receiver.seen] == ["PUT"] * 5
    assert receiver.seen[0].body.decode().startswith("disk:25:")


def test_webhook_sends_nothing_for_no_rows(data: Path, receiver: FaultServer, tmp_path: Path) -> None:
    text = hook_rules(data, receiver.url).replace("below: 2000000000", "below: 0")
    assert apply(tmp_path, text, *WINDOW, env={"TOK": "x"})[0] == 0
    assert receiver.seen == []


# -- alertmanager -----------------------------------------------------------------
def recent_export(path: Path, now_s: int) -> None:
    """Series ending now: `hot` alerts to the end, `cooled` alerted and then recovered, `calm` never did."""
    ts = [(now_s - (29 - i) * 60) * 1000 for i in range(30)]
    lines = [
        {"metric": {"__name__": "temp", "instance": "hot", "job": "t"}, "values": [95.0] * 30},
        {"metric": {"__name__": "temp", "instance": "cooled", "job": "t"}, "values": [95.0] * 10 + [50.0] * 20},
        {"metric": {"__name__": "temp", "instance": "calm", "job": "t"}, "values": [20.0] * 30},
    ]
    path.write_text("".join(json.dumps({**x, "timestamps": ts}) + "\n" for x in lines))


def am_rules(data: Path, url: str) -> str:
    return (f"version: 1\ndatasource: {{url: 'file:{data}'}}\n"
            f"targets:\n  am:\n    type: alertmanager\n    url: '{url}'\n    labels: {{source: vmrules}}\n"
            "    annotations: {summary: '{{ labels.instance }} is at {{ value }}'}\n"
            "rules:\n  - name: TempHigh\n    query: temp\n    range: 30m\n    labels: {team: ops}\n"
            "    thresholds: [{severity: page, above: 90}]\n    route: [{when: alert, to: am}]\n")


def test_alerts_reach_a_real_alertmanager(tmp_path: Path) -> None:
    now = int(time.time()) // 60 * 60
    recent_export(tmp_path / "temp.jsonl", now)
    am = Alertmanager(str(tmp_path))
    try:
        code, stdout, stderr = apply(tmp_path, am_rules(tmp_path / "temp.jsonl", am.url), "--to", str(now))
        assert code == 0, stderr
        assert "am=2" in stdout and "(alertmanager, 2 alerts, target am)" in stdout
        for _ in range(50):
            firing = am.alerts()
            if firing:
                break
            time.sleep(0.1)
        assert [a["labels"] for a in firing] == [{"alertname": "TempHigh", "alertgroup": "r", "severity": "page",
                                                  "instance": "hot", "job": "t", "team": "ops", "source": "vmrules"}]
        assert firing[0]["annotations"] == {"summary": "hot is at 95.0"}
        assert firing[0]["status"]["state"] == "active"
    finally:
        am.stop()


def test_alert_payload_starts_and_ends(tmp_path: Path, receiver: FaultServer) -> None:
    now = int(time.time()) // 60 * 60
    recent_export(tmp_path / "temp.jsonl", now)
    code, _, stderr = apply(tmp_path, am_rules(tmp_path / "temp.jsonl", receiver.url), "--to", str(now))
    assert code == 0, stderr
    resolved, firing = receiver.seen                    # the resolves in a request of their own, first
    assert resolved.path == firing.path == "/api/v2/alerts"
    assert [a["labels"]["instance"] for a in json.loads(resolved.body)] == ["cooled"]
    alerts = {a["labels"]["instance"]: a for s in (resolved, firing) for a in json.loads(s.body)}
    assert set(alerts) == {"hot", "cooled"}
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 29 * 60))
    assert alerts["hot"]["startsAt"] == alerts["cooled"]["startsAt"] == start
    ends = time.mktime(time.strptime(alerts["hot"]["endsAt"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert abs(ends - time.time() - 20 * 60) < 30                     # firing: renewed 20m ahead by every run
    assert alerts["cooled"]["endsAt"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 19 * 60))
    assert alerts["hot"]["generatorURL"] == ""                        # a file: datasource has no graph page


def test_alertmanager_down_fails_the_rule(tmp_path: Path) -> None:
    now = int(time.time()) // 60 * 60
    recent_export(tmp_path / "temp.jsonl", now)
    server = FaultServer([Reply(500, b"boom")] * 3)
    try:
        code, _, stderr = apply(tmp_path, am_rules(tmp_path / "temp.jsonl", server.url), "--to", str(now))
        assert code == 1 and len(server.seen) == 3
        assert "error: rule TempHigh: target am:" in stderr and "HTTP 500: boom (after 3 attempts)" in stderr
    finally:
        server.stop()


# -- victoriametrics write-back -----------------------------------------------------
def test_round_trip_through_victoriametrics(vm: VictoriaMetrics, tmp_path: Path) -> None:
    text = (f"version: 1\ndatasource: {{url: '{vm.url}'}}\n"
            f"targets:\n  back: {{type: victoriametrics, url: '{vm.url}', metric: '{{{{ rule.name }}}}_copy',"
            " labels: {source: vmrules}, batch_size: 5}\n"
            "rules:\n  - {name: cpu, query: 'cpu_usage{env=\"staging\"}', route: [{to: back}]}\n")
    code, stdout, stderr = apply(tmp_path, text, *WINDOW)
    assert code == 0, stderr
    urllib.request.urlopen(vm.url + "/internal/force_flush").read()
    want = {}
    for line in dataset():
        m = line["metric"]
        if m["__name__"] == "cpu_usage" and m["env"] == "staging":
            pts = {t // 1000: v for t, v in zip(line["timestamps"], line["values"], strict=True)
                   if END_S - 3600 <= t // 1000 <= END_S}
            want[m["instance"]] = pts
    got: dict = {}
    for _ in range(100):
        q = urllib.parse.urlencode({"match[]": 'cpu_copy{source="vmrules"}', "start": END_S - 3600, "end": END_S})
        with urllib.request.urlopen(f"{vm.url}/api/v1/export?{q}") as r:
            text_lines = r.read().decode().splitlines()
        got = {}
        for raw in text_lines:
            fixed = re.sub(r"(?<=[\[,])([+-]?)Inf\b", lambda m: ("-" if m.group(1) == "-" else "") + "Infinity", raw)
            doc = json.loads(fixed)
            assert doc["metric"]["job"] == "node" and doc["metric"]["env"] == "staging"
            got[doc["metric"]["instance"]] = {t // 1000: v for t, v in zip(doc["timestamps"], doc["values"],
                                                                             strict=True)}
        if got == want:
            break
        time.sleep(0.1)
    assert got == want
    assert any(v == float("inf") for pts in got.values() for v in pts.values())
    assert f"back={6 * 61}" in stdout


def test_write_back_is_retried_then_fails_clearly(tmp_path: Path, data: Path) -> None:
    server = FaultServer([Reply(503, b"")] + [Reply(400, b"cannot parse")])
    try:
        text = (f"version: 1\ndatasource: {{url: 'file:{data}'}}\n"
                f"targets:\n  back: {{type: victoriametrics, url: '{server.url}', skip_existing: false}}\n"
                "rules:\n  - {name: disk, query: disk_free, route: [{to: back}]}\n")
        code, _, stderr = apply(tmp_path, text, *WINDOW)
        assert code == 1 and len(server.seen) == 2 and server.seen[0].path == "/api/v1/import"
        assert "target back:" in stderr and "HTTP 400: cannot parse" in stderr
        first = server.seen[0].body.decode().splitlines()
        assert len(first) == 4 and json.loads(first[0])["metric"]["__name__"] == "disk"
    finally:
        server.stop()


# -- plugins --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The example plugin, installed into a folder of its own (the venv stays as it is)."""
    target = tmp_path_factory.mktemp("plugin")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    str(ROOT / "examples" / "plugins" / "vmrules-markdown")], check=True, timeout=300)
    return str(target)


def run_with_plugin(plugin_path: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([plugin_path, str(ROOT)]))
    return subprocess.run([sys.executable, "-m", "vmrules", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)


def test_plugin_is_listed_validated_and_used(plugin_path: str, tmp_path: Path, data: Path) -> None:
    listed = run_with_plugin(plugin_path, "targets", cwd=tmp_path)
    assert listed.returncode == 0 and "markdown" in listed.stdout and "vmrules-markdown 0.1.0" in listed.stdout
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text(
        f"version: 1\ndatasource: {{url: 'file:{data}'}}\n"
        "targets:\n  md: {type: markdown, path: 'report.md', title: Disks, max_rows: 3, columns: [instance, value]}\n"
        "rules: [{name: disk, query: disk_free, route: [{to: md}]}]\n")
    res = run_with_plugin(plugin_path, "apply", str(rules), "--output-dir", "out", *WINDOW, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    text = (tmp_path / "out" / "report.md").read_text().splitlines()
    assert text[:4] == ["## Disks", "", "| instance | value |", "|---|---|"]
    assert text[-1] == f"... and {4 * 61 - 3} more rows"
    (rules / "r.yaml").write_text(
        "version: 1\ntargets:\n  md: {type: markdown, path: r.md, max_rows: 0, colour: red}\n")
    bad = run_with_plugin(plugin_path, "validate", str(rules), cwd=tmp_path)
    assert bad.returncode == 1
    assert "r.yaml:3:7: error: targets.md:" in bad.stdout or "r.yaml:3:" in bad.stdout
    assert "colour" in bad.stdout and "max_rows" in bad.stdout


def test_without_the_plugin_the_type_is_unknown(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("version: 1\ntargets:\n  md: {type: markdown, path: r.md}\n")
    res = CliRunner().invoke(main, ["validate", str(tmp_path)])
    assert res.exit_code == 1 and "'markdown' is not one of" in res.stdout


def _count(vm: VictoriaMetrics, query: str) -> str | None:
    q = urllib.parse.urlencode({"query": query, "time": END_S})
    result = json.load(urllib.request.urlopen(f"{vm.url}/api/v1/query?{q}", timeout=10))["data"]["result"]
    return result[0]["value"][1] if result else None


def test_a_rerun_leaves_the_written_back_samples_as_they_were(vm: VictoriaMetrics, tmp_path: Path) -> None:
    """VictoriaMetrics stores a repeated sample twice: what is stored already is not sent again."""
    target = VictoriaMetrics(str(tmp_path))
    try:
        text = (f"version: 1\ndatasource: {{url: '{vm.url}'}}\n"
                f"targets:\n  back: {{type: victoriametrics, url: '{target.url}', metric: again, labels: {{s: x}}}}\n"
                "rules:\n  - {name: cpu, query: 'cpu_usage{env=\"prod\"}', route: [{to: back}]}\n")
        counts = []
        for i in range(3):
            window = ["--from", str(END_S - 3600 - (600 if i == 2 else 0)), "--to", str(END_S)]
            code, stdout, stderr = apply(tmp_path, text, *window)
            assert code == 0, stderr
            urllib.request.urlopen(target.url + "/internal/force_flush").read()
            for _ in range(100):
                counts.append(_count(target, 'sum(count_over_time(again{s="x"}[2h]))'))
                if counts[-1] == str(6 * (61 if i < 2 else 71)):
                    break
                counts.pop()
                time.sleep(0.1)
            else:
                raise AssertionError(f"run {i}: {_count(target, 'sum(count_over_time(again[2h]))')}")
            assert f"back={6 * 61 if i == 0 else 0 if i == 1 else 60}" in stdout, stdout
        assert counts == [str(6 * 61), str(6 * 61), str(6 * 71)]      # a rerun adds nothing; a longer one the rest
    finally:
        target.stop()


def test_series_that_differ_only_in_their_name_are_refused(tmp_path: Path, receiver: FaultServer) -> None:
    path = tmp_path / "two.jsonl"
    ts = [(END_S - 60 * i) * 1000 for i in range(3)]
    path.write_text("".join(json.dumps({"metric": {"__name__": n, "job": "j"}, "values": [1.0] * 3,
                                        "timestamps": ts}) + "\n" for n in ("a", "b")))
    text = (f"version: 1\ndatasource: {{url: 'file:{path}'}}\n"
            f"targets:\n  back: {{type: victoriametrics, url: '{receiver.url}', skip_existing: false}}\n"
            "rules:\n  - {name: both, query: '{__name__=~\"a|b\"}', route: [{to: back}]}\n")
    code, _, stderr = apply(tmp_path, text, "--from", str(END_S - 600), "--to", str(END_S))
    assert code == 1 and receiver.seen == []
    assert 'the series a{job="j"} and b{job="j"} would both be written as both{job="j"}' in stderr


def test_write_back_that_cannot_read_back_says_what_to_do(tmp_path: Path, data: Path) -> None:
    server = FaultServer([Reply(404, b"404 page not found")])       # a vminsert: no /api/v1/export there
    try:
        text = (f"version: 1\ndatasource: {{url: 'file:{data}'}}\n"
                f"targets:\n  back: {{type: victoriametrics, url: '{server.url}/insert/0/prometheus'}}\n"
                "rules:\n  - {name: disk, query: disk_free, route: [{to: back}]}\n")
        code, _, stderr = apply(tmp_path, text, *WINDOW)
        assert code == 1 and [s.path for s in server.seen] == ["/insert/0/prometheus/api/v1/export"]
        assert "cannot read back what is stored" in stderr and "read_url" in stderr and "skip_existing" in stderr
    finally:
        server.stop()


@pytest.mark.parametrize("order", ["[db, bad]", "[bad, db]", "[ok, db, bad]", "[bad, ok, db, f]"])
def test_a_failed_rule_writes_nothing_whatever_the_route_order(tmp_path: Path, data: Path, receiver: FaultServer,
                                                               order: str) -> None:
    bad = FaultServer(lambda seen: Reply(400, b"no"))
    try:
        text = (f"version: 1\ndatasource: {{url: 'file:{data}'}}\ntargets:\n"
                f"  ok: {{type: webhook, url: '{receiver.url}/ok'}}\n  bad: {{type: webhook, url: '{bad.url}/bad'}}\n"
                "  db: {type: sqlite, path: s.db, table: t}\n  f: {type: csv, path: f.csv}\n"
                f"rules:\n  - {{name: disk, query: disk_free, route: [{{to: {order}}}]}}\n")
        for _ in range(2):                               # and again: still nothing
            code, _, stderr = apply(tmp_path, text, *WINDOW)
            assert code == 1 and "error: rule disk: target bad:" in stderr and "HTTP 400" in stderr
        out = tmp_path / "out"
        assert not (out / "f.csv").exists()
        if (out / "s.db").exists():
            con = sqlite3.connect(out / "s.db")
            tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            assert "t" not in tables or con.execute("SELECT count(*) FROM t").fetchone()[0] == 0
            con.close()
        names = order.strip("[]").split(", ")
        if "ok" in names and names.index("ok") < names.index("bad"):   # services go first, in route order
            assert f"already delivered: ok ({4 * 61})" in stderr       # and cannot take rows back: it says so
        else:
            assert "already delivered" not in stderr and not receiver.seen
    finally:
        bad.stop()
