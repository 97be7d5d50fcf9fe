"""`vmrules apply` against a real VictoriaMetrics, compared with rows computed from the raw data."""

from __future__ import annotations

import glob
import os
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from tests.support import read
from tests.support.data import END_S, dataset, expected, key
from tests.support.servers import VictoriaMetrics, VmAuth
from vmrules import load_ruleset
from vmrules.cli import main
from vmrules.commands.apply import ApplyOptions, apply

FROM_S, TO_S = END_S - 3 * 3600, END_S
WINDOW = ["--from", str(FROM_S), "--to", str(TO_S)]


def is_cpu(m: dict[str, str]) -> bool:
    return m["__name__"] == "cpu_usage"


def write(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / name).write_text(text)
    return rules


def cli(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.stdout, res.stderr


def same(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    assert sorted(map(key, got)) == sorted(map(key, want))


def test_every_format_gets_the_same_rows(vm: VictoriaMetrics, tmp_path: Path) -> None:
    rules = write(tmp_path, """
version: 1
targets:
  c: {type: csv, path: "out/{{ rule.name }}.csv"}
  j: {type: json, path: "out/{{ rule.name }}.json"}
  l: {type: jsonl, path: "out/{{ rule.name }}.jsonl"}
  p: {type: parquet, path: "out/{{ rule.name }}.parquet"}
  s: {type: sqlite, path: out/all.db, table: "{{ rule.name }}"}
rules:
  - name: cpu
    query: 'cpu_usage{job="node"}'
    step: 1m
    valid: {min: 0, max: 100}
    thresholds:
      - {severity: critical, above: 95, for: 5m}
      - {severity: warning, at_least: 70}
    route: [{to: [c, j, l, p, s]}]
""")
    out = tmp_path / "exports"
    code, stdout, stderr = cli("apply", str(rules), "--datasource", vm.url, "--output-dir", str(out), *WINDOW)
    assert code == 0, stderr
    want = expected("cpu", is_cpu, FROM_S, TO_S, valid=(0, 100), thresholds=(
        ("critical", lambda v: v > 95, 300), ("warning", lambda v: v >= 70, 0)))
    assert any(r["severity"] == "critical" for r in want) and any(r["severity"] == "warning" for r in want)
    for ext in ("csv", "json", "jsonl", "parquet"):
        same(read.rows(str(out / "out" / f"cpu.{ext}")), want)
    same(read.rows(str(out / "out" / "all.db"), "cpu"), want)
    assert "cpu" in stdout and "ok" in stdout


def test_parquet_types_follow_the_contract(vm: VictoriaMetrics, tmp_path: Path) -> None:
    rules = write(tmp_path, """
version: 1
targets:
  p: {type: parquet, path: t.parquet}
rules:
  - {name: disk, query: disk_free, labels: {team: infra}, route: [{to: p}]}
""")
    code, _, stderr = cli("apply", str(rules), "--datasource", vm.url, "--output-dir", str(tmp_path / "o"), *WINDOW)
    assert code == 0, stderr
    table = pq.read_table(tmp_path / "o" / "t.parquet")
    types = {f.name: str(f.type) for f in table.schema}
    assert list(types) == ["rule", "metric", "labels", "timestamp", "value", "severity", "alert"]
    assert types["timestamp"] == "timestamp[ms, tz=UTC]" and types["value"] == "double"
    assert types["alert"] == "bool"
    row = table.slice(0, 1).to_pylist()[0]
    assert row["labels"] == '{"instance":"host-00","job":"node","mount":"/","team":"infra"}'
    assert row["metric"] == "disk_free" and row["severity"] is None and row["alert"] is False
    assert table.num_rows == 4 * 181


def test_where_columns_and_label_expansion(vm: VictoriaMetrics, tmp_path: Path) -> None:
    rules = write(tmp_path, """
version: 1
targets:
  c: {type: csv, path: sel.csv, columns: [timestamp, instance, value, severity, zone]}
rules:
  - name: prod
    query: cpu_usage
    where: 'env == "prod" and instance =~ "host-0[0-4]" and value > 30'
    thresholds: [{above: 60}]
    route: [{when: alert, to: c}]
""")
    code, _, stderr = cli("apply", str(rules), "--datasource", vm.url, "--output-dir", str(tmp_path / "o"), *WINDOW)
    assert code == 0, stderr
    import re
    want = expected("prod", is_cpu, FROM_S, TO_S, thresholds=(("alert", lambda v: v > 60, 0),),
                    where=lambda r: r["env"] == "prod" and bool(re.fullmatch("host-0[0-4]", r["instance"]))
                    and r["value"] > 30, route=lambda r: r["alert"])
    text = (tmp_path / "o" / "sel.csv").read_text().splitlines()
    assert text[0] == '"timestamp","instance","value","severity","zone"'
    got = read.rows(str(tmp_path / "o" / "sel.csv"))
    assert sorted((r["instance"], r["timestamp"], r["value"]) for r in got) == \
        sorted((r["instance"], r["timestamp"], r["value"]) for r in want)
    assert {r["zone"] for r in got} == {""}


@pytest.mark.parametrize("max_points", [7, 60, 11000])
def test_chunked_windows_join_without_duplicates(vm: VictoriaMetrics, tmp_path: Path, max_points: int) -> None:
    rules = write(tmp_path, f"""
version: 1
datasource: {{url: "{vm.url}", max_points_per_series: {max_points}}}
targets:
  p: {{type: parquet, path: c.parquet}}
rules:
  - name: cpu
    query: cpu_usage
    step: 2m
    valid: {{max: 100}}
    thresholds: [{{severity: hot, above: 60, for: 10m}}, {{severity: warm, above: 40, for: 4m}}]
    route: [{{to: p}}]
""")
    report = apply(load_ruleset([str(rules)]), ApplyOptions(output_dir=str(tmp_path / "o"), from_ms=FROM_S * 1000,
                                                           to_ms=TO_S * 1000))
    assert report.ok, report.failed
    points = (TO_S - FROM_S) // 120 + 1 + 5          # and the 10m lookback of the longest `for`
    assert report.rules[0].requests == -(-points // max_points)
    want = expected("cpu", is_cpu, FROM_S, TO_S, 120, valid=(None, 100), thresholds=(
        ("hot", lambda v: v > 60, 600), ("warm", lambda v: v > 40, 240)))
    assert {r["severity"] for r in want} == {"hot", "warm", None}
    same(read.rows(str(tmp_path / "o" / "c.parquet")), want)   # `for` runs go on across request boundaries
    assert report.rules[0].counts.series == 12


def test_window_ends_align_to_the_step(vm: VictoriaMetrics, tmp_path: Path) -> None:
    rules = write(tmp_path, f"""
version: 1
datasource: {{url: "{vm.url}"}}
targets: {{p: {{type: jsonl, path: a.jsonl}}}}
rules: [{{name: cpu, query: 'cpu_usage{{instance="host-01"}}', step: 5m, route: [{{to: p}}]}}]
""")
    start, end = FROM_S + 17, TO_S - 250
    code, _, stderr = cli("apply", str(rules), "--output-dir", str(tmp_path / "o"), "--from", str(start),
                          "--to", str(end))
    assert code == 0, stderr
    ts = sorted(r["timestamp"] for r in read.rows(str(tmp_path / "o" / "a.jsonl")))
    assert ts[0] == -(-start // 300) * 300 and ts[-1] == end // 300 * 300
    assert all(b - a == 300 for a, b in zip(ts, ts[1:], strict=False))


def test_instant_query(vm: VictoriaMetrics, tmp_path: Path) -> None:
    rules = write(tmp_path, """
version: 1
targets: {j: {type: json, path: now.json}}
rules: [{name: now, query: 'cpu_usage > 50', instant: true, route: [{to: j}]}]
""")
    code, _, stderr = cli("apply", str(rules), "--datasource", vm.url, "--output-dir", str(tmp_path / "o"),
                          "--to", str(TO_S))
    assert code == 0, stderr
    got = read.rows(str(tmp_path / "o" / "now.json"))
    want = [line for line in dataset() if line["metric"]["__name__"] == "cpu_usage" and line["values"][-1] > 50]
    assert sorted(r["instance"] for r in got) == sorted(w["metric"]["instance"] for w in want)
    assert {r["timestamp"] for r in got} == {TO_S}


def test_infinities_survive_to_json(vm: VictoriaMetrics, tmp_path: Path) -> None:
    rules = write(tmp_path, """
version: 1
targets: {j: {type: json, path: inf.json}, k: {type: jsonl, path: valid.jsonl}}
rules:
  - {name: raw, query: 'cpu_usage{instance="host-11"}', route: [{to: j}]}
  - {name: checked, query: 'cpu_usage{instance="host-11"}', valid: {max: 100}, route: [{to: k}]}
""")
    code, stdout, stderr = cli("apply", str(rules), "--datasource", vm.url, "--output-dir", str(tmp_path / "o"),
                               *WINDOW)
    assert code == 0, stderr
    assert '"value":"+Inf"' in (tmp_path / "o" / "inf.json").read_text()
    assert len(read.rows(str(tmp_path / "o" / "valid.jsonl"))) == 180
    assert " 1 " in stdout.splitlines()[2]   # the invalid column of rule `checked`


def test_sqlite_modes_across_reruns(vm: VictoriaMetrics, tmp_path: Path) -> None:
    rules = write(tmp_path, """
version: 1
targets:
  up: {type: sqlite, path: s.db, table: up, mode: upsert}
  ap: {type: sqlite, path: s.db, table: ap, mode: append}
  re: {type: sqlite, path: s.db, table: re, mode: replace}
rules:
  - {name: a, query: 'cpu_usage{env="prod"}', thresholds: [{above: 60}], route: [{when: alert, to: [up, ap, re]}]}
  - {name: b, query: 'cpu_usage{env="staging"}', thresholds: [{above: 60}], route: [{when: alert, to: [up, ap, re]}]}
""")
    out = tmp_path / "o"
    for _ in range(2):
        code, _, stderr = cli("apply", str(rules), "--datasource", vm.url, "--output-dir", str(out), *WINDOW)
        assert code == 0, stderr
    want = expected("x", is_cpu, FROM_S, TO_S, thresholds=(("alert", lambda v: v > 60, 0),),
                    route=lambda r: r["alert"])
    db = str(out / "s.db")
    same(read.rows(db, "up"), want)
    same(read.rows(db, "re"), want)
    assert len(read.rows(db, "ap")) == 2 * len(want)
    con = sqlite3.connect(db)
    notnull = {r[1]: r[3] for r in con.execute('PRAGMA table_info("up")')}
    assert notnull["rule"] == notnull["labels"] == notnull["timestamp"] == 1


def test_shared_file_target_holds_every_rule(vm: VictoriaMetrics, tmp_path: Path) -> None:
    rules = write(tmp_path, """
version: 1
targets: {all: {type: csv, path: "all_{{ run.stamp }}.csv"}}
rules:
  - {name: cpu, query: cpu_usage, route: [{to: all}]}
  - {name: disk, query: disk_free, route: [{to: all}]}
""")
    code, _, stderr = cli("apply", str(rules), "--datasource", vm.url, "--output-dir", str(tmp_path / "o"), *WINDOW)
    assert code == 0, stderr
    files = glob.glob(str(tmp_path / "o" / "all_*.csv"))
    assert len(files) == 1
    got = read.rows(files[0])
    assert {r["rule"] for r in got} == {"cpu", "disk"} and len(got) == 16 * 181
    assert not [f for f in os.listdir(tmp_path / "o") if f.endswith(".tmp")]


def test_failing_rule_is_isolated_and_named(vm: VictoriaMetrics, tmp_path: Path) -> None:
    rules = write(tmp_path, f"""
version: 1
targets: {{o: {{type: csv, path: "{{{{ rule.name }}}}.csv"}}}}
rules:
  - name: broken                # valid MetricsQL the server is too old for: it fails at run time, not in validate
    query: 'count_values_over_time("v", cpu_usage[5m])'
    datasource: {{url: "{vm.url}"}}
    route: [{{to: o}}]
  - name: fine
    query: disk_free
    datasource: {{url: "{vm.url}"}}
    route: [{{to: o}}]
""")
    code, stdout, stderr = cli("apply", str(rules), "--output-dir", str(tmp_path / "o"), *WINDOW)
    assert code == 1
    assert "error: rule broken: datasource http://127.0.0.1:" in stderr
    assert "HTTP 4" in stderr or "422" in stderr or "400" in stderr
    assert (tmp_path / "o" / "fine.csv").exists() and not (tmp_path / "o" / "broken.csv").exists()


def test_dry_run_writes_nothing(vm: VictoriaMetrics, tmp_path: Path) -> None:
    rules = write(tmp_path, """
version: 1
targets: {p: {type: parquet, path: "{{ rule.name }}/{{ run.from }}.parquet"}}
rules: [{name: cpu, query: cpu_usage, step: 5m, route: [{to: p}]}]
""")
    code, stdout, _ = cli("apply", str(rules), "--datasource", vm.url, "--output-dir", str(tmp_path / "o"),
                          "--dry-run", *WINDOW)
    assert code == 0
    assert "rule cpu: 2026-10-31T21:00:00Z .. 2026-11-01T00:00:00Z step 5m, 37 points" in stdout
    assert "-> p (parquet): cpu/2026-10-31T21:00:00Z.parquet" in stdout
    assert not (tmp_path / "o").exists()


def test_cluster_prefix_behind_vmauth_with_bearer_token(vm: VictoriaMetrics, tmp_path: Path) -> None:
    prefixed = VictoriaMetrics(str(tmp_path), path_prefix="/select/0/prometheus")
    auth = VmAuth(str(tmp_path), f"http://127.0.0.1:{prefixed.port}", token="s3cret-token")
    try:
        prefixed.import_lines(dataset())
        prefixed.wait_for("cpu_usage", 12, END_S)
        rules = write(tmp_path, f"""
version: 1
datasource:
  url: {auth.url}/select/0/prometheus
  bearer_token: "${{VM_TOKEN}}"
targets: {{p: {{type: parquet, path: c.parquet}}}}
rules: [{{name: cpu, query: cpu_usage, route: [{{to: p}}]}}]
""")
        ok = CliRunner(env={"VM_TOKEN": "s3cret-token", "VMRULES_ALLOW_ENV": "VM_TOKEN"}).invoke(
            main, ["apply", str(rules), "--output-dir", str(tmp_path / "o"), *WINDOW])
        assert ok.exit_code == 0, ok.stderr
        same(read.rows(str(tmp_path / "o" / "c.parquet")), expected("cpu", is_cpu, FROM_S, TO_S))
        bad = CliRunner(env={"VM_TOKEN": "wrong", "VMRULES_ALLOW_ENV": "VM_TOKEN"}).invoke(
            main, ["apply", str(rules), "--output-dir", str(tmp_path / "o2"), *WINDOW, "-v"])
        assert bad.exit_code == 1
        # vmauth 1.79 answers 400 and echoes the token it was given: the token must not reach us
        assert "HTTP 40" in bad.stderr and "check the credentials" in bad.stderr
        assert "wrong" not in bad.stderr and "s3cret" not in bad.stderr + ok.stderr + ok.stdout
        unset = CliRunner(env={"VM_TOKEN": None, "VMRULES_ALLOW_ENV": "VM_TOKEN"}).invoke(
            main, ["apply", str(rules), "--output-dir", str(tmp_path / "o3"), *WINDOW])
        assert unset.exit_code == 2          # one usage error before any request, not one failure per rule
        assert f"Error: environment variable VM_TOKEN is not set; used in the datasource at {rules}" in unset.stderr
        assert not (tmp_path / "o3").exists()
    finally:
        auth.stop()
        prefixed.stop()
