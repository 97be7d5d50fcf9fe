"""Answers of many batches reach every target type complete: a day of 300 series (432,000 samples).

Each batch (about 4 MiB of answer) has dictionaries of its own: other label
sets, and here other severities too (the first series never reach critical).
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from tests.support.servers import Alertmanager, FaultServer, Reply, VictoriaMetrics
from vmrules.cli import main

END_S = int(time.time()) // 60 * 60 - 60      # recent: Alertmanager is only sent what is current
SERIES, POINTS = 300, 1440
FROM_S = END_S - (POINTS - 1) * 60
WINDOW = ["--from", str(FROM_S), "--to", str(END_S)]
pytestmark = pytest.mark.usefixtures("fast_backoff")


def value(s: int, i: int) -> float:
    top = 85 if s < 120 else 99                 # the first 120 series (the first batch) are never critical
    return round(50 + (top - 50) * math.sin(i / 40 + s), 3)


def lines() -> list[dict[str, Any]]:
    ts = [(FROM_S + i * 60) * 1000 for i in range(POINTS)]
    return [{"metric": {"__name__": "load", "job": "node", "instance": f"host-{s:03d}:9100", "dc": f"dc{s % 3}"},
             "values": [value(s, i) for i in range(POINTS)], "timestamps": ts} for s in range(SERIES)]


def severity(v: float) -> str | None:
    return "critical" if v > 95 else "warning" if v > 70 else None


def oracle() -> Counter[tuple[str, int, float, str | None]]:
    return Counter((f"host-{s:03d}:9100", FROM_S + i * 60, value(s, i), severity(value(s, i)))
                   for s in range(SERIES) for i in range(POINTS))


@pytest.fixture(scope="module")
def big_vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    server = VictoriaMetrics(str(tmp_path_factory.mktemp("bigvm")))
    try:
        server.import_lines(lines())
        server.wait_for("load", SERIES, END_S)
        yield server
    finally:
        server.stop()


def apply(tmp_path: Path, text: str) -> tuple[int, str, str]:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    (folder / "r.yaml").write_text(text)
    res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(tmp_path / "out"), *WINDOW])
    return res.exit_code, res.stdout, res.stderr


RULE = """
rules:
  - name: load_day
    query: 'load{job="node"}'
    step: 1m
    thresholds:
      - {severity: critical, above: 95}
      - {severity: warning, above: 70}
    route: [{to: [%s]}]
"""


def arrow_rows(path: str, table: str | None) -> pa.Table:
    """An output read with Arrow's readers (a Python dict per row would take a minute here)."""
    if path.endswith(".csv"):
        return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            column_types={"severity": pa.string(), "timestamp": pa.string()}, strings_can_be_null=True))
    if path.endswith(".jsonl"):
        return pajson.read_json(path)
    if path.endswith(".json"):
        with open(path) as f:
            return pa.Table.from_pylist(json.load(f))
    if path.endswith(".parquet"):
        return pq.read_table(path)
    con = sqlite3.connect(path)
    try:
        cur = con.execute(f'SELECT labels, timestamp, value, severity FROM "{table}"')
        return pa.Table.from_arrays([pa.array(c) for c in zip(*cur.fetchall(), strict=True)],
                                    ["labels", "timestamp", "value", "severity"])
    finally:
        con.close()


def columns_key(t: pa.Table) -> pa.Table:
    """(instance, unix seconds, value, severity) of every row, sorted: comparable with `oracle_table()`."""
    ts = t.column("timestamp")
    if not pa.types.is_timestamp(ts.type):
        ts = pc.strptime(pc.utf8_slice_codeunits(ts, 0, 19), "%Y-%m-%dT%H:%M:%S", "s")
    labels = t.column("labels").cast(pa.string())
    distinct = pc.unique(labels)
    instance = pa.array([json.loads(lab)["instance"] for lab in distinct.to_pylist()])
    sev = t.column("severity").cast(pa.string())
    out = pa.table({"instance": instance.take(pc.index_in(labels, distinct)),
                    "t": pc.divide(ts.cast(pa.timestamp("ms")).cast(pa.int64()), 1000),
                    "v": pc.round(t.column("value").cast(pa.float64()), 3),
                    "s": pc.if_else(pc.equal(sev, ""), pa.scalar(None, pa.string()), sev)})
    return out.sort_by([("instance", "ascending"), ("t", "ascending")])


def oracle_table() -> pa.Table:
    rows = [(f"host-{s:03d}:9100", FROM_S + i * 60, value(s, i), severity(value(s, i)))
            for s in range(SERIES) for i in range(POINTS)]
    cols = list(zip(*rows, strict=True))
    return pa.table({"instance": pa.array(cols[0]), "t": pa.array(cols[1], pa.int64()),
                     "v": pa.array(cols[2], pa.float64()), "s": pa.array(cols[3], pa.string())})


def rows_key(rows: list[dict[str, Any]]) -> Counter[tuple[str, int, float, str | None]]:
    return Counter((r["instance"], r["timestamp"], round(r["value"], 3), r["severity"]) for r in rows)


def test_every_file_and_table_target(big_vm: VictoriaMetrics, tmp_path: Path) -> None:
    text = (f"version: 1\ndatasource: {{url: '{big_vm.url}'}}\ntargets:\n"
            "  c: {type: csv, path: all.csv}\n  j: {type: json, path: all.json}\n"
            "  l: {type: jsonl, path: all.jsonl}\n  p: {type: parquet, path: all.parquet}\n"
            "  a: {type: sqlite, path: all.db, table: appended, mode: append}\n"
            "  u: {type: sqlite, path: all.db, table: upserted, mode: upsert}\n"
            "  r: {type: sqlite, path: all.db, table: replaced, mode: replace}\n" + RULE % "c, j, l, p, a, u, r")
    code, stdout, stderr = apply(tmp_path, text)
    assert code == 0, stderr
    want = oracle_table()
    out = tmp_path / "out"
    for name, table in (("all.csv", None), ("all.json", None), ("all.jsonl", None), ("all.parquet", None),
                        ("all.db", "appended"), ("all.db", "upserted"), ("all.db", "replaced")):
        got = columns_key(arrow_rows(str(out / name), table))
        assert got.num_rows == want.num_rows and got.equals(want), f"{name} {table}"
    assert f"(sqlite, {SERIES * POINTS} rows, target r)" in stdout, stdout


def test_webhook_gets_every_row(big_vm: VictoriaMetrics, tmp_path: Path) -> None:
    hook = FaultServer(lambda seen: Reply(200, b"ok"))
    try:
        text = (f"version: 1\ndatasource: {{url: '{big_vm.url}'}}\ntargets:\n"
                f"  h: {{type: webhook, url: '{hook.url}/h', batch_size: 20000}}\n" + RULE % "h")
        code, _, stderr = apply(tmp_path, text)
        assert code == 0, stderr
        got = [r for s in hook.seen for r in json.loads(s.body)["rows"]]
        for r in got:
            r["timestamp"] = int(time.mktime(time.strptime(r["timestamp"][:19], "%Y-%m-%dT%H:%M:%S"))
                                 - time.timezone)
            r["instance"] = json.loads(r["labels"])["instance"]
            r["value"] = float(r["value"])
        assert rows_key(got) == oracle()
    finally:
        hook.stop()


def test_alertmanager_gets_one_alert_per_series_and_severity(big_vm: VictoriaMetrics, tmp_path: Path) -> None:
    am, hook = Alertmanager(str(tmp_path)), FaultServer(lambda seen: Reply(200, b"ok"))
    try:
        text = (f"version: 1\ndatasource: {{url: '{big_vm.url}'}}\ntargets:\n"
                f"  am: {{type: alertmanager, url: '{am.url}', renew_within: 2d}}\n"
                f"  rec: {{type: alertmanager, url: '{hook.url}', renew_within: 2d}}\n"
                + RULE % "am, rec")
        code, _, stderr = apply(tmp_path, text)
        assert code == 0, stderr
        sent = Counter((a["labels"]["instance"], a["labels"]["severity"])
                       for s in hook.seen for a in json.loads(s.body))
        want = {(f"host-{s:03d}:9100", sev) for s in range(SERIES) for i in range(POINTS)
                if (sev := severity(value(s, i))) is not None}
        assert set(sent) == want and set(sent.values()) <= {1, 2}   # its last ended episode, and an open one
        assert {s for _, s in want} == {"warning", "critical"}
        active = {(f"host-{s:03d}:9100", sev) for s in range(SERIES)
                  if (sev := severity(value(s, POINTS - 1))) is not None}   # alerting at the window's end
        got: set[tuple[str, str]] = set()
        for _ in range(100):
            got = {(a["labels"]["instance"], a["labels"]["severity"]) for a in am.alerts()}
            if got == active:
                break
            time.sleep(0.1)
        assert got == active and active
    finally:
        am.stop()
        hook.stop()


def test_write_back_stores_every_sample(big_vm: VictoriaMetrics, tmp_path: Path) -> None:
    target = VictoriaMetrics(str(tmp_path))
    try:
        text = (f"version: 1\ndatasource: {{url: '{big_vm.url}'}}\ntargets:\n"
                f"  back: {{type: victoriametrics, url: '{target.url}', metric: copy}}\n" + RULE % "back")
        code, _, stderr = apply(tmp_path, text)
        assert code == 0, stderr
        urllib.request.urlopen(target.url + "/internal/force_flush").read()
        q = urllib.parse.urlencode({"query": "sum(count_over_time(copy[1d]))", "time": END_S})
        total = None
        for _ in range(100):
            doc = json.load(urllib.request.urlopen(f"{target.url}/api/v1/query?{q}", timeout=10))
            result = doc["data"]["result"]
            total = result[0]["value"][1] if result else None
            if total == str(SERIES * POINTS):
                break
            time.sleep(0.2)
        assert total == str(SERIES * POINTS)
        code, stdout, stderr = apply(tmp_path, text)              # again: what is stored (~10 MB) is read back
        assert code == 0, stderr
        assert "(victoriametrics, 0 samples, target back)" in stdout
        urllib.request.urlopen(target.url + "/internal/force_flush").read()
        doc = json.load(urllib.request.urlopen(f"{target.url}/api/v1/query?{q}", timeout=10))
        assert doc["data"]["result"][0]["value"][1] == str(SERIES * POINTS)
    finally:
        target.stop()


def test_sqlite_upsert_rerun_keeps_one_row_per_sample(big_vm: VictoriaMetrics, tmp_path: Path) -> None:
    text = (f"version: 1\ndatasource: {{url: '{big_vm.url}'}}\ntargets:\n"
            "  u: {type: sqlite, path: all.db, table: upserted, mode: upsert}\n" + RULE % "u")
    for _ in range(2):
        code, _, stderr = apply(tmp_path, text)
        assert code == 0, stderr
    con = sqlite3.connect(tmp_path / "out" / "all.db")
    try:
        assert con.execute("SELECT count(*) FROM upserted").fetchone()[0] == SERIES * POINTS
        sev = dict(con.execute("SELECT coalesce(severity, '-'), count(*) FROM upserted GROUP BY 1").fetchall())
    finally:
        con.close()
    want = Counter(severity(value(s, i)) or "-" for s in range(SERIES) for i in range(POINTS))
    assert sev == dict(want)
