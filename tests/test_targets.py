"""File and SQLite writers: content, escaping, atomic replacement, confinement."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from vmrules.delivery.atomic import atomic_path
from vmrules.evaluate.rows import TIMESTAMP, dict_column
from vmrules.model import Location, Target
from vmrules.targets import csvfile, jsonfile, sqlite
from vmrules.templates import TemplateError, confine

LABELS = ['{"a":"x, \\"y\\"\\nz"}', '{"a":"=HYPERLINK(1)"}']


def table(n: int = 4) -> pa.Table:
    sid = np.arange(n, dtype=np.int32) % 2
    alert = np.arange(n) % 2 == 0
    return pa.table({
        "rule": dict_column(["r"], np.zeros(n, np.int32)),
        "metric": dict_column(["m", "m"], sid),
        "labels": dict_column(LABELS, sid),
        "timestamp": pa.array(np.arange(n, dtype=np.int64) * 60_000 + 1_793_491_200_000, TIMESTAMP),
        "value": pa.array([1.5, float("nan"), float("inf"), -2.0][:n] + [0.0] * max(0, n - 4)),
        "severity": pa.array(["warning" if a else None for a in alert]),
        "alert": pa.array(alert),
        "a": dict_column(['x, "y"\nz', "=HYPERLINK(1)"], sid),
    })


def target(type_: str, **options: object) -> Target:
    return Target("t", type_, options, Location("x.yaml"))


def test_csv_is_parseable_and_safe(tmp_path: Path) -> None:
    path = str(tmp_path / "o.csv")
    csvfile.write(table(), path, target("csv"))
    rows = list(csv.DictReader(io.StringIO(Path(path).read_text())))
    assert [r["a"] for r in rows[:2]] == ['x, "y"\nz', "'=HYPERLINK(1)"]
    assert json.loads(rows[0]["labels"]) == {"a": 'x, "y"\nz'}
    assert rows[0]["timestamp"] == "2026-11-01T00:00:00.000Z"
    assert [r["severity"] for r in rows] == ["warning", "", "warning", ""]
    assert [r["alert"] for r in rows] == ["true", "false", "true", "false"]


@pytest.mark.parametrize("kind", ["json", "jsonl"])
def test_json_is_valid_with_awkward_values(tmp_path: Path, kind: str) -> None:
    path = str(tmp_path / f"o.{kind}")
    write = jsonfile.write_json if kind == "json" else jsonfile.write_jsonl
    write(table(), path, target(kind))
    text = Path(path).read_text()
    rows = json.loads(text) if kind == "json" else [json.loads(line) for line in text.splitlines()]
    assert [r["value"] for r in rows] == [1.5, "NaN", "+Inf", -2.0]
    assert rows[0]["labels"] == LABELS[0] and rows[1]["a"] == "=HYPERLINK(1)"
    assert rows[1]["severity"] is None and rows[0]["alert"] is True
    assert rows[0]["timestamp"] == "2026-11-01T00:00:00.000Z"
    assert list(rows[0]) == ["rule", "metric", "labels", "timestamp", "value", "severity", "alert", "a"]


def test_json_of_no_rows_is_an_empty_array(tmp_path: Path) -> None:
    path = str(tmp_path / "o.json")
    jsonfile.write_json(table().slice(0, 0), path, target("json"))
    assert json.loads(Path(path).read_text()) == []


def test_json_in_several_pieces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vmrules.targets import text
    original = text.json_rows
    monkeypatch.setattr(jsonfile, "json_rows", lambda t, sep: original(t, sep, rows_per_piece=3))
    path = str(tmp_path / "o.json")
    jsonfile.write_json(table(10), path, target("json"))
    assert len(json.loads(Path(path).read_text())) == 10


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "keep.csv"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_path(str(path)) as tmp:
        Path(tmp).write_text("half")
        raise RuntimeError("disk full")
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["keep.csv"]


def test_atomic_write_sets_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "new.csv"
    with atomic_path(str(path)) as tmp:
        Path(tmp).write_text("new")
    assert path.read_text() == "new" and (path.stat().st_mode & 0o777) == 0o644


def test_sqlite_upsert_updates_in_place(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    t = table()
    sqlite.write(t, db, "tab", "r", target("sqlite", mode="upsert"))
    changed = t.set_column(4, "value", pa.array([9.0, 9.0, 9.0, 9.0]))
    sqlite.write(changed, db, "tab", "r", target("sqlite", mode="upsert"))
    con = sqlite3.connect(db)
    assert con.execute('SELECT count(*), sum(value) FROM "tab"').fetchone() == (4, 36.0)
    assert con.execute('SELECT "a" FROM "tab" LIMIT 1').fetchone() == ('x, "y"\nz',)


def test_sqlite_replace_keeps_other_rules(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    sqlite.write(table(), db, "tab", "r", target("sqlite", mode="replace"))
    other = table().set_column(0, "rule", dict_column(["other"], np.zeros(4, np.int32)))
    sqlite.write(other, db, "tab", "other", target("sqlite", mode="replace"))
    sqlite.write(table(2), db, "tab", "r", target("sqlite", mode="replace"))
    con = sqlite3.connect(db)
    assert dict(con.execute('SELECT rule, count(*) FROM "tab" GROUP BY rule').fetchall()) == {"r": 2, "other": 4}


def test_sqlite_concurrent_writers_all_land(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    errors: list[Exception] = []

    def writer() -> None:
        try:
            for _ in range(5):
                sqlite.write(table(), db, "tab", "r", target("sqlite", mode="append"))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sqlite3.connect(db).execute('SELECT count(*) FROM "tab"').fetchone() == (80,)


def test_confine_refuses_symlink_escape(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "link").symlink_to(tmp_path)
    assert confine(str(out), "a/b.csv") == str(out / "a" / "b.csv")
    with pytest.raises(TemplateError, match="resolves outside"):
        confine(str(out), "link/escape.csv")
    for bad in ("/etc/passwd", "../x.csv", "a/../../x.csv", "a\x00b.csv", "", "dir/"):
        with pytest.raises(TemplateError):
            confine(str(out), bad)


def test_sqlite_writers_in_several_processes_all_land(tmp_path: Path) -> None:
    """Other processes (a second cron run, say) wait on SQLite's own lock instead of failing."""
    import subprocess
    import sys
    db = str(tmp_path / "s.db")
    root = str(Path(__file__).parent.parent)
    code = (
        f"import sys; sys.path.insert(0, {root!r})\n"
        "from tests.test_targets import table, target\n"
        "from vmrules.targets import sqlite\n"
        "for _ in range(5):\n"
        f"    sqlite.write(table(), {db!r}, 'tab', 'r', target('sqlite', mode='append'))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    assert sqlite3.connect(db).execute('SELECT count(*) FROM "tab"').fetchone() == (60,)


@pytest.mark.parametrize("kind, codec", [("parquet", "none"), ("parquet", "zstd"), ("csv", None), ("json", None),
                                         ("jsonl", None)])
def test_parts_of_several_rules_merge_into_one_file(tmp_path: Path, kind: str, codec: str | None) -> None:
    from vmrules.targets.registry import get
    t = target(kind, **({"compression": codec} if codec else {}))
    ttype = get(kind)
    parts = []
    for i, n in enumerate((4, 0, 3)):
        part = str(tmp_path / f"part{i}")
        sink = ttype.sink(part, t)
        sink.write(table(n) if n else table(4).slice(0, 0))
        sink.close()
        parts.append(part)
    out = str(tmp_path / f"out.{kind}")
    ttype.merge(parts, out, t)
    if kind == "parquet":
        import pyarrow.parquet as pq
        assert pq.read_table(out).num_rows == 7
        expected = "UNCOMPRESSED" if codec == "none" else codec.upper()
        assert pq.ParquetFile(out).metadata.row_group(0).column(0).compression == expected
    elif kind == "csv":
        rows = list(csv.DictReader(io.StringIO(Path(out).read_text())))
        assert len(rows) == 7 and rows[0]["rule"] == "r"
    elif kind == "json":
        assert len(json.loads(Path(out).read_text())) == 7
    else:
        assert len([json.loads(x) for x in Path(out).read_text().splitlines()]) == 7


@pytest.mark.parametrize("mode", ["append", "upsert"])
def test_sqlite_columns_the_same_in_every_row_are_written_as_given(tmp_path: Path, mode: str) -> None:
    """Text and bool columns that hold one value in a batch go into the statement once: the rows read back
    as the table was, quotes, NUL and nulls included."""
    n = 5
    t = table(n).set_column(2, "labels", dict_column(['{"q":"it\'s"}'], np.zeros(n, np.int32)))
    t = t.set_column(5, "severity", dict_column(["crit'ical"], np.zeros(n, np.int32)))
    t = t.set_column(6, "alert", pa.array([True] * n))
    t = t.set_column(7, "a", dict_column(["nul\x00inside"], np.zeros(n, np.int32)))
    t = t.append_column("b", pa.array([None, "x", None, "x", "x"]).dictionary_encode())
    t = t.append_column("c", pa.array([False] * n))
    db = str(tmp_path / "s.db")
    sqlite.write(t, db, "tab", "r", target("sqlite", mode=mode))
    con = sqlite3.connect(db)
    got = con.execute('SELECT rule, metric, labels, severity, alert, "a", "b", "c" FROM "tab" ORDER BY timestamp')
    assert got.fetchall() == [("r", "m", '{"q":"it\'s"}', "crit'ical", 1, "nul\x00inside", b, 0)
                              for b in [None, "x", None, "x", "x"]]


def test_sqlite_many_rows_a_statement_keep_every_row_and_the_order_of_upserts(tmp_path: Path) -> None:
    """Rows go in statements of many rows (and the rest one by one): none is lost or doubled, a key given
    twice keeps its later row, and a table whose every column is the same in every row still gets its rows."""
    n = 1_234
    t = table(n).set_column(4, "value", pa.array(np.arange(n, dtype=float)))
    db = str(tmp_path / "s.db")
    sqlite.write(t, db, "app", "r", target("sqlite"))
    twice = pa.concat_tables([t, t.set_column(4, "value", pa.array(np.arange(n, dtype=float) + 0.5))])
    sqlite.write(twice.combine_chunks(), db, "ups", "r", target("sqlite", mode="upsert"))
    sqlite.write(t.select(["rule"]).slice(0, 3), db, "const", "r", target("sqlite"))
    con = sqlite3.connect(db)
    assert con.execute('SELECT count(*), sum(value), count(DISTINCT timestamp) FROM "app"').fetchone() == \
        (n, n * (n - 1) / 2, n)
    assert con.execute('SELECT count(*), sum(value) FROM "ups"').fetchone() == (n, n * (n - 1) / 2 + n / 2)
    assert con.execute('SELECT * FROM "const"').fetchall() == [("r",)] * 3


def test_csv_of_dictionary_columns_is_the_csv_of_their_values() -> None:
    """Dictionary columns go to Arrow's CSV writer encoded: the bytes are those of the decoded columns,
    formula cells quoted, nulls empty, quotes and commas escaped."""
    import pyarrow.csv as pacsv

    codes = np.arange(1000, dtype=np.int32) % 5
    table = pa.table({
        "metric": pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(["=a", "b,c", 'd"e', "+x", "ok"])),
        "severity": pa.DictionaryArray.from_arrays(pa.array(codes % 2, mask=codes % 2 == 0), pa.array(["w", "@c"])),
        "plain": pa.array(["-1", "x"] * 500),
    })
    decoded = pa.table({name: table.column(name).cast(pa.string()) for name in table.column_names})

    def csv_bytes(t: pa.Table) -> bytes:
        out, text = io.BytesIO(), csvfile._text(t)
        with pacsv.CSVWriter(out, text.schema) as writer:
            writer.write_table(text)
        return out.getvalue()

    written = csv_bytes(table)
    assert written == csv_bytes(decoded)
    assert written.splitlines()[1:3] == [b'"\'=a",,"\'-1"', b'"b,c","\'@c","x"']
