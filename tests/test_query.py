"""`vmrules query`: ad-hoc queries against a real VictoriaMetrics, in every format."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from click.testing import CliRunner

from tests.support.data import END_S
from tests.support.servers import FaultServer, Reply, Seen, VictoriaMetrics, free_port, matrix
from vmrules.cli import main

WINDOW = ["--from", str(END_S - 540), "--to", str(END_S)]     # 10 points at 1m


def query(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    res = CliRunner(env=env).invoke(main, ["query", *args])
    return res.exit_code, res.stdout, res.stderr


def test_table_preview(vm: VictoriaMetrics) -> None:
    code, out, err = query('cpu_usage{instance=~"host-0[01]"}', "disk_free", "--datasource", vm.url, *WINDOW)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["timestamp", "series", "value"]
    assert lines[1].startswith("2026-10-31T23:51:00Z") and "cpu_usage{" in lines[1]
    assert lines[-2] == "... 40 more"
    assert lines[-1] == "60 rows, 6 series"


def test_csv_to_stdout_and_jsonl_to_a_file(vm: VictoriaMetrics, tmp_path: Path) -> None:
    code, out, err = query("disk_free", "--datasource", vm.url, *WINDOW, "--format", "csv")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == '"rule","metric","labels","timestamp","value","severity","alert"'
    assert len(lines) == 1 + 4 * 10 and lines[1].startswith('"disk_free","disk_free","{')
    target = tmp_path / "q.jsonl"
    code, out, _ = query("disk_free", "cpu_usage", "--datasource", vm.url, *WINDOW, "--format", "jsonl",
                         "-o", str(target))
    assert code == 0 and out == ""
    rows = [json.loads(x) for x in target.read_text().splitlines()]
    assert len(rows) == (4 + 12) * 10
    assert {r["rule"] for r in rows} == {"disk_free", "cpu_usage"}
    assert rows[0]["timestamp"] == "2026-10-31T23:51:00.000Z" and rows[0]["severity"] is None


def test_parquet_needs_a_file_and_matches_csv(vm: VictoriaMetrics, tmp_path: Path) -> None:
    assert query("disk_free", "--datasource", vm.url, "--format", "parquet")[0] == 2
    code, _, err = query("disk_free", "--datasource", vm.url, *WINDOW, "--format", "parquet",
                         "-o", str(tmp_path / "q.parquet"), "--step", "5m")
    assert code == 0, err
    table = pq.read_table(tmp_path / "q.parquet")
    assert table.num_rows == 4 * 2 and table.column_names[:5] == ["rule", "metric", "labels", "timestamp", "value"]
    assert 1e9 - 239e6 in table.column("value").to_pylist()          # host-00 at the window's end


def test_instant_query_and_env_datasource(vm: VictoriaMetrics) -> None:
    code, out, _ = query("disk_free", "--instant", "--to", str(END_S), env={"VMRULES_DATASOURCE": vm.url})
    assert code == 0
    assert out.splitlines()[-1] == "4 rows, 4 series"


def test_headers_expand_variables_and_errors_are_named(server: FaultServer, tmp_path: Path) -> None:
    seen: list[Seen] = []

    def reply(s: Seen) -> Reply:
        seen.append(s)
        return Reply(200, matrix([({"__name__": "m"}, [(END_S, "1")])]))

    server.script = reply
    code, out, err = query("m", "--datasource", server.url, *WINDOW, "-H", "Authorization: Bearer ${TOKEN}",
                           env={"TOKEN": "tok-123"})
    assert code == 0, err
    assert seen[0].headers["Authorization"] == "Bearer tok-123"
    code, _, err = query("m", "--datasource", f"http://127.0.0.1:{free_port()}", *WINDOW)
    assert code == 1
    assert "error: query 'm': " in err and "connection refused" in err
    assert query("m", "--datasource", server.url, "-H", "no colon")[0] == 2


def test_no_series_says_so(vm: VictoriaMetrics) -> None:
    code, out, _ = query("cpu_usgae", "--datasource", vm.url, *WINDOW)
    assert code == 0
    assert out.strip() == "no series in the window (check the metric and label names)"
