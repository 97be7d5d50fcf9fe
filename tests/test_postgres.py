"""Target postgres against a real server: every mode and its reruns, answers of many batches, episodes,
incremental runs killed at random moments, hostile table names, refused logins, a table that does not fit."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.support import read
from tests.support.data import END_S, dataset
from tests.support.servers import Postgres, VictoriaMetrics
from vmrules.cli import main

ROOT = Path(__file__).parent.parent
NODE = f"file:{ROOT / 'examples' / 'data' / 'node.jsonl'}"
WINDOW = ["--to", "2026-11-01T00:00:00Z"]


def apply(folder: Path, out: Path, env: dict[str, str], *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(out), *args], env=env)
    return res.exit_code, res.output


def rules(tmp_path: Path, targets: str, route: str, datasource: str = "", rules_extra: str = "") -> Path:
    folder = tmp_path / "rules"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "r.yaml").write_text(f"""version: 1
{datasource}
defaults: {{range: 6h, step: 5m}}
targets:
{targets}
rules:
  - name: node_cpu
    query: 'instance:node_cpu_utilisation:rate5m{{job="node"}}'
    thresholds:
      - {{severity: critical, above: 0.9, for: 15m}}
      - {{severity: warning, above: 0.5}}
    route: [{{to: [{route}]}}]
{rules_extra}""")
    return folder


def pg_rows(pg: Postgres, dsn: str, table: str, order: str = "labels, timestamp") -> list[dict[str, Any]]:
    from adbc_driver_postgresql import dbapi

    with dbapi.connect(dsn) as con, con.cursor() as cur:
        cur.execute(f"SELECT * FROM {table} ORDER BY {order}")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def as_points(rows: list[dict[str, Any]]) -> list[tuple[str, int, float, str | None, bool]]:
    """(labels, timestamp s, value, severity, alert) of each row, sorted; labels JSON as vmrules writes it."""
    out = []
    for r in rows:
        labels = r["labels"] if isinstance(r["labels"], str) else json.dumps(r["labels"])
        labels = json.dumps(json.loads(labels), sort_keys=True, separators=(",", ":"))
        out.append((labels, seconds(r["timestamp"]), round(float(r["value"]), 9), r["severity"] or None,
                    bool(r["alert"])))
    return sorted(out)


def seconds(t: Any) -> int | None:
    """A timestamp as unix seconds, from a datetime, an RFC 3339 text or seconds already."""
    if t is None or isinstance(t, int):
        return t
    return int(read._norm({"timestamp": t})["timestamp"])


def env_for(dsn: str) -> dict[str, str]:
    return {"PG_DSN": dsn, "VMRULES_ALLOW_ENV": "PG_DSN"}


PG = '  {name}: {{type: postgres, dsn: "${{PG_DSN}}", table: "{table}"{extra}}}\n'


def test_every_mode_and_its_reruns_match_sqlite(postgres: Postgres, tmp_path: Path) -> None:
    """upsert is idempotent, append doubles, replace keeps only the rule's last rows; the rows are those
    the sqlite target gets, in typed columns (labels as jsonb)."""
    dsn = postgres.new_database()
    modes = ("append", "upsert", "replace")
    targets = "".join(PG.format(name=m, table=f"vm.{m}_t", extra=f", mode: {m}") for m in modes)
    targets += "  lite: {type: sqlite, path: s.db, table: t}\n"
    folder = rules(tmp_path, targets, "append, upsert, replace, lite")
    out = tmp_path / "out"
    code, text = apply(folder, out, env_for(dsn), "--datasource", NODE, *WINDOW, "-q")
    assert code == 0, text
    want = as_points(read.rows(str(out / "s.db"), "t"))
    assert len(want) == 2920
    for mode in ("append", "upsert", "replace"):
        assert as_points(pg_rows(postgres, dsn, f"vm.{mode}_t")) == want, mode
    postgres.execute("UPDATE vm.upsert_t SET value = -1 WHERE labels->>'instance' = 'node-00:9100'", dsn)
    versions = "SELECT xmin::text, count(*) FROM vm.upsert_t GROUP BY 1 ORDER BY 2"
    before = postgres.execute(versions, dsn)
    assert [n for _, n in before] == [73, 2920 - 73]
    code, text = apply(folder, out, env_for(dsn), "--datasource", NODE, *WINDOW, "-q")
    assert code == 0, text
    assert as_points(pg_rows(postgres, dsn, "vm.upsert_t")) == want
    after = postgres.execute(versions, dsn)       # the changed rows were set back; the others left alone
    assert after[1] == before[1] and after[0][1] == 73 and after[0][0] != before[0][0]
    assert as_points(pg_rows(postgres, dsn, "vm.replace_t")) == want
    assert as_points(pg_rows(postgres, dsn, "vm.append_t")) == sorted(want + want)
    types = dict(postgres.execute("SELECT column_name, data_type FROM information_schema.columns "
                                  "WHERE table_schema = 'vm' AND table_name = 'upsert_t'", dsn))
    assert types == {"rule": "text", "metric": "text", "labels": "jsonb", "timestamp": "timestamp with time zone",
                     "value": "double precision", "severity": "text", "alert": "boolean"}
    assert postgres.execute("SELECT count(*) FROM vm.upsert_t WHERE labels->>'instance' = 'node-00:9100'",
                            dsn) == [(73,)]
    # replace swaps one rule's rows only: another rule's rows in the same table stay
    postgres.execute("INSERT INTO vm.replace_t (rule, metric, labels, timestamp, value, alert) "
                     "VALUES ('other', 'm', '{}', now(), 1, false)", dsn)
    code, text = apply(folder, out, env_for(dsn), "--datasource", NODE, "--to", "2026-10-31T23:00:00Z", "-q")
    assert code == 0, text
    assert postgres.execute("SELECT rule, count(*) FROM vm.replace_t GROUP BY rule ORDER BY rule", dsn) == [
        ("node_cpu", 2920), ("other", 1)]
    assert postgres.execute("SELECT max(timestamp) FROM vm.replace_t WHERE rule = 'node_cpu'", dsn)[0][0].hour == 23


def test_answers_of_many_batches_and_episodes(postgres: Postgres, vm: VictoriaMetrics, tmp_path: Path) -> None:
    """max_points_per_series: 4 makes many batches with dictionaries of their own; rows and episodes (with
    open episodes updated by the next run) come out as in SQLite."""
    dsn = postgres.new_database()
    targets = (PG.format(name="rows", table="r", extra=", mode: upsert")
               + PG.format(name="eps", table="e", extra=", shape: episodes")
               + "  lite: {type: sqlite, path: s.db, table: r, mode: upsert}\n"
               + "  litee: {type: sqlite, path: s.db, table: e, shape: episodes}\n")
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "r.yaml").write_text(f"""version: 1
datasource: {{url: '{vm.url}', max_points_per_series: 4}}
targets:
{targets}
rules:
  - name: cpu
    query: cpu_usage
    thresholds: [{{severity: hot, above: 70, for: 3m}}, {{severity: warm, above: 50}}]
    route: [{{to: [rows, eps, lite, litee]}}]
""")
    out = tmp_path / "out"
    for to in (END_S - 3 * 3600, END_S - 2 * 3600):
        code, text = apply(folder, out, env_for(dsn), "--from", str(END_S - 4 * 3600), "--to", str(to), "-q")
        assert code == 0, text
    want = as_points(read.rows(str(out / "s.db"), "r"))
    assert len(want) >= 12 * 100
    assert as_points(pg_rows(postgres, dsn, "r")) == want

    def episodes(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted(((json.loads(r["labels"]) if isinstance(r["labels"], str) else r["labels"])["instance"],
                       r["severity"], seconds(r["start"]), seconds(r["end"]), r["samples"], r["peak"]) for r in rows)
    con = sqlite3.connect(out / "s.db")
    con.row_factory = sqlite3.Row
    want_eps = episodes([dict(r) for r in con.execute("SELECT * FROM e")])
    con.close()
    got = episodes(pg_rows(postgres, dsn, "e", "labels, start"))
    assert got and got == want_eps


def test_incremental_runs_killed_at_random_moments_hold_each_point_once(postgres: Postgres, vm: VictoriaMetrics,
                                                                       tmp_path: Path) -> None:
    """About half the runs are SIGKILLed; the rows and the watermark are committed together, so the appended
    table and the upserted one both hold each point exactly once."""
    dsn = postgres.new_database()
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "r.yaml").write_text(f"""version: 1
datasource: {{url: '{vm.url}', max_points_per_series: 4}}
targets:
{PG.format(name="a", table="inc.appended", extra="")}{PG.format(name="u", table="inc.upserted", extra=", mode: upsert")}
rules:
  - name: cpu
    query: cpu_usage
    range: 20m
    step: 1m
    route: [{{to: [a, u]}}]
""")
    out = tmp_path / "out"
    env = {**__import__("os").environ, **env_for(dsn)}
    cmd = [sys.executable, "-m", "vmrules", "apply", str(folder), "--output-dir", str(out), "-q", "--incremental",
           "--lag", "0s", "--to"]
    rnd = random.Random(7)
    to, last, killed, took = END_S - 3 * 3600, END_S - 3600, 0, 0.0
    first = to - 20 * 60
    for i in range(14):
        started = time.monotonic()
        proc = subprocess.Popen([*cmd, str(to)], cwd=ROOT, stderr=subprocess.PIPE, text=True, env=env)
        if i % 2:
            time.sleep(rnd.uniform(0.3, 1.0) * took)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                killed += 1
        _, err = proc.communicate(timeout=120)
        assert proc.returncode in (0, -signal.SIGKILL), err
        if not i % 2:
            took = time.monotonic() - started
        to = min(last, to + rnd.randint(4, 15) * 60)
    subprocess.run([*cmd, str(last)], cwd=ROOT, check=True, timeout=120, env=env)
    assert killed >= 3
    want = sorted((lab, t) for lab in {json.dumps({k: v for k, v in line["metric"].items() if k != "__name__"},
                                                  sort_keys=True, separators=(",", ":")) for line in dataset()
                                       if line["metric"]["__name__"] == "cpu_usage"}
                  for t in range(first, last + 1, 60))
    for table in ("inc.appended", "inc.upserted"):
        got = sorted((p[0], p[1]) for p in as_points(pg_rows(postgres, dsn, table)))
        assert got == want, table
    marks = postgres.execute('SELECT "table", watermark_ms FROM inc.vmrules_watermarks ORDER BY 1', dsn)
    assert marks == [("inc.appended", last * 1000), ("inc.upserted", last * 1000)]


@pytest.mark.parametrize("table", ['x"; DROP TABLE t; --', "a.b.c", "pg_catalog.t", "information_schema.t",
                                   "vmrules_watermarks", "s.VMRULES_WATERMARKS", "1abc", "s.", ".t", "a" * 64])
def test_hostile_table_names_are_refused(tmp_path: Path, table: str) -> None:
    folder = rules(tmp_path, PG.format(name="pg", table=table.replace('"', '\\"'), extra=""), "pg")
    res = CliRunner().invoke(main, ["validate", str(folder)])
    assert res.exit_code == 1, res.output
    assert "table" in res.output or "schema" in res.output


def test_options_are_checked_offline(tmp_path: Path) -> None:
    bad = ('  a: {type: postgres, dsn: "mysql://h/db", table: t}\n'
           '  b: {type: postgres, dsn: "postgresql://app:hunter22@h/db", table: t}\n'
           '  c: {type: postgres, dsn: "${PG_DSN}", table: t, mode: merge}\n'
           '  d: {type: postgres, table: t}\n')
    folder = rules(tmp_path, bad, "a, b, c, d")
    res = CliRunner().invoke(main, ["validate", str(folder)])
    assert res.exit_code == 1
    assert "target 'a': dsn must be a URI postgresql://" in res.output
    assert "target 'b': dsn: write the password as ${VAR}" in res.output
    assert "hunter22" not in res.output
    assert "targets.c.mode: 'merge' is not one of: append, upsert, replace" in res.output
    assert "targets.d: missing required key 'dsn'" in res.output
    good = ('  a: {type: postgres, dsn: "postgresql://app:${PG_PASSWORD}@db:5432/metrics", '
            'table: "vm.{{ rule.name }}"}\n')
    res = CliRunner().invoke(main, ["validate", str(rules(tmp_path / "g", good, "a"))])
    assert res.exit_code == 0, res.output


def test_dry_run_shows_the_table_and_the_dsn_without_password(tmp_path: Path) -> None:
    folder = rules(tmp_path, '  a: {type: postgres, dsn: "postgresql://app:${PG_PASSWORD}@db:5432/metrics", '
                             'table: "vm.{{ rule.name }}"}\n', "a")
    code, text = apply(folder, tmp_path / "out", {}, "--datasource", NODE, *WINDOW, "--dry-run")
    assert code == 0, text
    assert "-> a (postgres): postgresql://app@db:5432/metrics table vm.node_cpu" in text


def test_a_refused_login_fails_its_rule_clearly_and_the_others_still_run(postgres: Postgres, tmp_path: Path) -> None:
    good = postgres.new_database()
    wrong = good.replace(postgres.password, "not-the-password-42")
    extra = """  - name: other
    query: 'instance:node_cpu_utilisation:rate5m{job="node"}'
    route: [{to: [f]}]
"""
    folder = rules(tmp_path, PG.format(name="pg", table="t", extra="") + "  f: {type: csv, path: other.csv}\n",
                   "pg", rules_extra=extra)
    code, text = apply(folder, tmp_path / "out", env_for(wrong), "--datasource", NODE, *WINDOW)
    assert code == 1
    assert "node_cpu  failed" in text and "other     ok" in text
    assert "password authentication failed" in text
    assert f"postgresql://vmrules@127.0.0.1:{postgres.port}/" in text
    assert "not-the-password-42" not in text and postgres.password not in text
    assert (tmp_path / "out" / "other.csv").exists()
    # a database that does not exist, a server that is not there: one line each, no password
    for dsn, says in ((postgres.dsn("nosuch"), 'database "nosuch" does not exist'),
                      (f"postgresql://vmrules:{postgres.password}@127.0.0.1:1/x", "Connection refused")):
        code, text = apply(folder, tmp_path / "out", env_for(dsn), "--datasource", NODE, *WINDOW)
        assert code == 1 and says in text and postgres.password not in text, text


def test_a_dsn_variable_must_be_allowed(tmp_path: Path) -> None:
    folder = rules(tmp_path, PG.format(name="pg", table="t", extra=""), "pg")
    code, text = apply(folder, tmp_path / "out", {"PG_DSN": "postgresql://u:secretpw1@127.0.0.1:1/x"},
                       "--datasource", NODE, *WINDOW)
    assert code == 1
    assert "environment variable PG_DSN may not be read by rule files" in text
    assert "secretpw1" not in text


def test_a_table_that_does_not_fit_is_named_and_left_alone(postgres: Postgres, tmp_path: Path) -> None:
    dsn = postgres.new_database()
    postgres.execute("CREATE TABLE t (rule text, metric text, labels text, timestamp timestamptz, value real)", dsn)
    folder = rules(tmp_path, PG.format(name="pg", table="t", extra=", mode: upsert"), "pg")
    code, text = apply(folder, tmp_path / "out", env_for(dsn), "--datasource", NODE, *WINDOW)
    assert code == 1
    assert "its column 'labels' is text, the rows need jsonb" in text
    assert "its column 'value' is real, the rows need double precision" in text
    assert "it has no column 'severity' (text)" in text
    assert "nothing of this rule was written" in text
    assert postgres.execute("SELECT count(*) FROM t", dsn) == [(0,)]
    assert postgres.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 't'", dsn) == [(0,)]


def test_an_existing_table_with_its_columns_in_another_order_gets_each_value_in_its_column(
        postgres: Postgres, tmp_path: Path) -> None:
    dsn = postgres.new_database()
    postgres.execute("CREATE TABLE t (value double precision, alert boolean, severity text, timestamp timestamptz, "
                     "labels jsonb, metric text, rule text, note text)", dsn)
    targets = PG.format(name="pg", table="t", extra="") + "  lite: {type: sqlite, path: s.db, table: t}\n"
    folder = rules(tmp_path, targets, "pg, lite")
    code, text = apply(folder, tmp_path / "out", env_for(dsn), "--datasource", NODE, *WINDOW, "-q")
    assert code == 0, text
    assert as_points(pg_rows(postgres, dsn, "t")) == as_points(read.rows(str(tmp_path / "out" / "s.db"), "t"))


def test_a_key_held_twice_keeps_its_last_row_in_a_new_table_and_an_existing_one(postgres: Postgres,
                                                                                tmp_path: Path) -> None:
    """Series that differ only in __name__ give rows with one key: the upsert keeps the last, as SQLite
    does, whether the table is made by the run (rows COPYed in, the index built at the end) or exists."""
    dsn = postgres.new_database()
    data = tmp_path / "twins.jsonl"
    ts = [(END_S - 60 * i) * 1000 for i in range(5)][::-1]
    data.write_text("".join(json.dumps({"metric": {"__name__": name, "instance": f"h{i}"},
                                        "values": [float(i * 10 + k + (100 if name == "b" else 0)) for k in range(5)],
                                        "timestamps": ts}) + "\n" for i in range(3) for name in ("a", "b")))
    folder = tmp_path / "rules"
    folder.mkdir()
    LITE = "  lite: {type: sqlite, path: s.db, table: t, mode: upsert}"  # noqa: N806
    (folder / "r.yaml").write_text(f"""version: 1
datasource: {{url: 'file:{data}'}}
targets:
{PG.format(name="pg", table="twins", extra=", mode: upsert")}{LITE}
rules:
  - {{name: r, query: '{{__name__=~"a|b"}}', step: 1m, range: 10m, route: [{{to: [pg, lite]}}]}}
""")
    out = tmp_path / "out"
    for _ in range(2):
        code, text = apply(folder, out, env_for(dsn), "--to", str(END_S), "-q")
        assert code == 0, text
        want = as_points(read.rows(str(out / "s.db"), "t"))
        assert len(want) == 3 * 5 and as_points(pg_rows(postgres, dsn, "twins")) == want
    assert postgres.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'twins'", dsn) == [(1,)]


@pytest.mark.parametrize("taken", ["long", "other_relation"])
def test_the_unique_index_is_made_when_its_usual_name_is_taken(postgres: Postgres, tmp_path: Path,
                                                                taken: str) -> None:
    """TABLE_key may be the table itself (a 63-character name) or another relation: the index gets
    another name instead of being skipped, and later upserts work."""
    dsn = postgres.new_database()
    table = "t" * 63 if taken == "long" else "foo"
    if taken == "other_relation":
        postgres.execute("CREATE TABLE foo_key (x int)", dsn)
    folder = rules(tmp_path, PG.format(name="pg", table=table, extra=", mode: upsert"), "pg")
    for _ in range(2):
        code, text = apply(folder, tmp_path / "out", env_for(dsn), "--datasource", NODE, *WINDOW, "-q")
        assert code == 0, text
    assert postgres.execute(f"SELECT count(*) FROM pg_indexes WHERE tablename = '{table}' "
                            "AND indexdef LIKE 'CREATE UNIQUE INDEX%'", dsn) == [(1,)]
    assert postgres.execute(f'SELECT count(*) FROM "{table}"', dsn) == [(2920,)]


def test_rules_making_tables_in_a_new_schema_at_once_do_not_trip_over_it(postgres: Postgres, tmp_path: Path) -> None:
    dsn = postgres.new_database()
    folder = rules(tmp_path, PG.format(name="pg", table="fresh.{{ rule.name }}", extra=", mode: upsert"), "pg",
                   rules_extra="".join(f"  - {{name: r{i}, query: 'instance:node_cpu_utilisation:rate5m', "
                                       f"route: [{{to: pg}}]}}\n" for i in range(7)))
    code, text = apply(folder, tmp_path / "out", env_for(dsn), "--datasource", NODE, *WINDOW, "-q",
                       "--concurrency", "8")
    assert code == 0, text
    assert postgres.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'fresh'", dsn) == [(8,)]
