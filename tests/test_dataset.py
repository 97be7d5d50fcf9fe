"""Partitioned Parquet datasets (`partition_by`): read back as one table by DuckDB and pyarrow, every row
once through incremental runs and backfill chunks, no file of another run ever replaced, hostile label
values kept inside the dataset's folder, clear refusals."""

from __future__ import annotations

import json
import os
import sqlite3
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from tests.conftest import file_rules
from tests.support import read
from tests.support.data import END_S, export_jsonl
from vmrules import model
from vmrules.cli import main

TARGETS = """targets:
  d: {type: parquet, path: d, partition_by: [date, instance]}
  f: {type: parquet, path: 'f/{{ run.from }}.parquet'}
"""
RULE = """rules:
  - name: cpu
    query: cpu_usage
    range: 2h
    step: 1m
    thresholds: [{severity: hot, above: 90, for: 5m}, {severity: warm, above: 60}]
    route: [{to: [d, f]}]
"""


def apply(folder: Path, out: Path, *args: str) -> str:
    res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(out), "-q", *args])
    assert res.exit_code == 0, res.output
    return res.output


def files(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under root, hidden ones too, with its inode and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def rows(root: Path) -> Counter[tuple[str, int, float, str | None]]:
    return Counter((r["labels"], r["t"], r["value"], r["severity"]) for r in read.dataset(
        root, "labels, CAST(epoch(timestamp) AS BIGINT) AS t, value, severity"))


def file_rows(folder: Path) -> Counter[tuple[str, int, float, str | None]]:
    return Counter((r["labels"], int(r["timestamp"].timestamp()), r["value"], r["severity"])
                   for f in folder.glob("*.parquet") for r in pq.read_table(f).to_pylist())


def test_incremental_runs_add_files_and_every_row_is_there_once(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, TARGETS + RULE)
    whole = tmp_path / "whole"
    apply(folder, whole, "--from", str(END_S - 3 * 3600), "--to", str(END_S))
    want = file_rows(whole / "f")
    assert rows(whole / "d") == want and len(want) == 12 * 181
    dates = {r["date"].isoformat() for r in read.dataset(whole / "d", "date")}
    assert dates == {"2026-10-31", "2026-11-01"}       # the last point is at midnight

    out = tmp_path / "inc"
    seen: dict[str, tuple[int, int]] = {}
    runs = [*range(END_S - 3 * 3600 + 7200, END_S, 13 * 60), END_S]     # the first run takes the range: 2h
    for to in runs:
        apply(folder, out, "--incremental", "--lag", "0s", "--to", str(to))
        now = files(out / "d")
        assert all(now[name] == seen[name] for name in seen), "a file of an earlier run was replaced"
        seen = now
    assert not [name for name in seen if os.path.basename(name).startswith(".")]   # nothing left half-made
    assert rows(out / "d") == file_rows(out / "f") == want
    parts = [name for name in seen if "instance=host-03" in name and "date=2026-10-31" in name]
    assert len(parts) == len(runs)                       # a file per run in each partition


def test_backfill_chunks_never_replace_each_others_files(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, TARGETS + RULE)
    whole = tmp_path / "whole"
    apply(folder, whole, "--from", str(END_S - 3 * 3600), "--to", str(END_S))
    out = tmp_path / "chunked"
    apply(folder, out, "--from", str(END_S - 3 * 3600), "--to", str(END_S), "--chunk", "25m")
    assert rows(out / "d") == rows(whole / "d")
    host = sorted(p.name for p in (out / "d" / "date=2026-10-31" / "instance=host-00").iterdir())
    assert len(host) == 8 and len(set(host)) == 8        # one run, eight chunks: eight files, none replaced
    table = pads.dataset(out / "d", format="parquet", partitioning="hive").to_table()
    assert table.num_rows == sum(rows(whole / "d").values())
    assert set(table.column("instance").to_pylist()) == {f"host-{i:02d}" for i in range(12)}


HOSTILE = ["a/b", "..", ".", "50% off", "x=y", "é ü", "semi;colon", "-rf", "back\\slash", "a\nb", " "]


def hostile_data(tmp_path: Path) -> Path:
    data = tmp_path / "hostile.jsonl"
    ts = [(END_S - 60 * i) * 1000 for i in range(3)][::-1]
    data.write_text("".join(json.dumps({"metric": {"__name__": "m", "instance": v, "n": str(i)},
                                        "values": [1.0, 2.0, 3.0], "timestamps": ts}) + "\n"
                            for i, v in enumerate(HOSTILE)) + json.dumps(
        {"metric": {"__name__": "m", "n": "missing"}, "values": [4.0], "timestamps": ts[-1:]}) + "\n")
    return data


def test_hostile_label_values_stay_in_the_dataset_and_read_back_as_they_were(tmp_path: Path) -> None:
    data = hostile_data(tmp_path)
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "r.yaml").write_text(f"""version: 1
datasource: {{url: 'file:{data}'}}
targets:
  d: {{type: parquet, path: 'ds/{{{{ rule.name }}}}', partition_by: [instance, severity, rule]}}
rules:
  - {{name: m, query: m, step: 1m, range: 10m, route: [{{to: d}}]}}
""")
    out = tmp_path / "out"
    apply(folder, out, "--to", str(END_S))
    root = out / "ds" / "m"
    for p in root.rglob("*"):
        assert os.path.realpath(p).startswith(str(root.resolve()) + os.sep)
        assert len(p.relative_to(root).parts) <= 4
    got = read.dataset(root, "instance, labels, severity, rule")
    assert {(json.loads(r["labels"])["n"], r["instance"]) for r in got} == {
        (str(i), v) for i, v in enumerate(HOSTILE)} | {("missing", None)}
    assert {(r["severity"], r["rule"]) for r in got} == {(None, "m")}
    assert len(got) == 3 * len(HOSTILE) + 1
    keys = pa.schema([(k, pa.string()) for k in ("instance", "severity", "rule")])   # severity: all missing
    table = pads.dataset(root, format="parquet", partitioning=pads.partitioning(keys, flavor="hive")).to_table()
    assert sorted(x for x in table.column("instance").to_pylist() if x is not None) == sorted(HOSTILE * 3)


def test_a_label_value_too_long_for_a_folder_name_fails_the_rule_clearly(tmp_path: Path) -> None:
    data = tmp_path / "long.jsonl"
    data.write_text(json.dumps({"metric": {"__name__": "m", "instance": "x" * 300}, "values": [1.0],
                                "timestamps": [END_S * 1000]}) + "\n")
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "r.yaml").write_text(f"""version: 1
datasource: {{url: 'file:{data}'}}
targets:
  d: {{type: parquet, path: ds, partition_by: [instance]}}
  c: {{type: csv, path: c.csv}}
rules:
  - {{name: m, query: m, step: 1m, range: 5m, route: [{{to: [d, c]}}]}}
""")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(out), "--to", str(END_S)])
    assert res.exit_code == 1
    assert "target d: partition_by instance: the value 'xxx" in res.output
    assert "is too long for a folder name (255 bytes, URI-encoded)" in res.output
    assert not [p for p in (out / "ds").rglob("*") if p.is_file()]
    assert not (out / ".vmrules-scratch").exists()


def test_more_partitions_than_the_bound_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model, "MAX_PARTITIONS", 5)
    monkeypatch.setattr("vmrules.targets.parquetfile.MAX_PARTITIONS", 5)
    folder = file_rules(tmp_path, TARGETS + RULE)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(out), "--to", str(END_S)])
    assert res.exit_code == 1
    assert "target d: the rows fall into more than 5 partitions of date, instance: partition by fewer or coarser " \
           "keys" in res.output
    assert not (out / "d").exists() or not [p for p in (out / "d").rglob("*") if p.is_file()]
    assert not (out / "f").exists()                       # the rule failed: none of its files


def test_a_dataset_path_that_is_a_file_fails_the_rule(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, TARGETS + RULE)
    out = tmp_path / "out"
    out.mkdir()
    (out / "d").write_text("mine")
    res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(out), "--to", str(END_S)])
    assert res.exit_code == 1
    assert "target d: cannot write the dataset" in res.output and "it is a file" in res.output
    assert (out / "d").read_text() == "mine"


def test_episodes_are_partitioned_by_their_start(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, """targets:
  e: {type: parquet, path: e, shape: episodes, partition_by: [date, severity]}
  s: {type: sqlite, path: s.db, table: e, shape: episodes}
""" + RULE.replace("to: [d, f]", "to: [e, s]"))
    out = tmp_path / "out"
    apply(folder, out, "--from", str(END_S - 4 * 3600), "--to", str(END_S))
    got = read.dataset(out / "e", "labels, severity, CAST(epoch(start) AS BIGINT) AS s, date")
    con = sqlite3.connect(out / "s.db")
    try:
        want = sorted((lab, sev) for lab, sev in con.execute("SELECT labels, severity FROM e"))
    finally:
        con.close()
    assert sorted((r["labels"], r["severity"]) for r in got) == want and len(want) > 3
    assert {r["severity"] for r in got} == {"hot", "warm"}
    assert all(r["date"].isoformat() == "2026-10-31" for r in got)


@pytest.mark.parametrize(("options", "problem"), [
    ("partition_by: [value]", "partition_by: value cannot name a folder: partition by date, hour, rule, metric, "
                              "severity, alert or a label"),
    ("partition_by: [date], columns: [rule, value]", "partition_by: date is taken from the timestamp column: add "
                                                      "it to columns"),
    ("partition_by: [rule, instance], columns: [rule, timestamp, value]",
     "partition_by: label instance is taken from the labels column or a column of its own: add one to columns"),
    ("partition_by: [severity], columns: [rule, timestamp, value]",
     "partition_by: severity is not a column of this target: add it to columns"),
    ("partition_by: [date, date]", "partition_by: lists an item twice"),
    ("partition_by: ['a-b']", "is not a valid name"),
    ("partition_by: []", "partition_by: must not be empty"),
])
def test_partition_keys_are_checked_offline(tmp_path: Path, options: str, problem: str) -> None:
    (tmp_path / "r.yaml").write_text(f"version: 1\ntargets:\n  d: {{type: parquet, path: d, {options}}}\n")
    res = CliRunner().invoke(main, ["validate", str(tmp_path)])
    assert res.exit_code == 1
    assert "r.yaml:3:" in res.output and problem in res.output, res.output


def test_columns_with_labels_allow_any_label_key(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("version: 1\ntargets:\n  d: {type: parquet, path: d, partition_by: [hour, job],"
                                     " columns: [timestamp, value, labels]}\n"
                                     "  e: {type: parquet, path: e, partition_by: [instance], columns: [instance]}\n")
    res = CliRunner().invoke(main, ["validate", str(tmp_path)])
    assert res.exit_code == 0, res.output


def test_query_adds_its_rows_to_a_dataset(tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text(export_jsonl())
    root = tmp_path / "q"
    args = ["query", "cpu_usage", "--datasource", f"file:{data}", "--to", str(END_S), "--since", "30m",
            "--format", "parquet", "-o", str(root), "--partition-by", "hour", "--partition-by", "env"]
    for _ in range(2):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0, res.output
    got = read.dataset(root, "env, hour, count(*) AS c", "GROUP BY ALL")
    assert {(r["env"], r["hour"]): r["c"] for r in got} == {
        ("prod", 23): 2 * 6 * 30, ("staging", 23): 2 * 6 * 30, ("prod", 0): 2 * 6, ("staging", 0): 2 * 6}
    assert len([p for p in root.rglob("*.parquet")]) == 8           # each query added its own files
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    bad = CliRunner().invoke(main, [*args[:-4], "--partition-by", "value"])
    assert bad.exit_code == 2 and "--partition-by value: value cannot name a folder" in bad.output
    csv = CliRunner().invoke(main, [*args[:7], "--format", "csv", "-o", str(root), "--partition-by", "env"])
    assert csv.exit_code == 2 and "--partition-by writes a Parquet dataset: add --format parquet" in csv.output
    folder = CliRunner().invoke(main, [*args[:12]])
    assert folder.exit_code == 2 and "is a folder; a folder takes a dataset: add --partition-by" in folder.output


def test_shards_may_share_a_dataset(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, """targets:
  d: {type: parquet, path: d, partition_by: [rule]}
rules:
""" + "".join(f"  - {{name: r{i}, query: cpu_usage, step: 1m, range: 10m, route: [{{to: d}}]}}\n" for i in range(6)))
    out = tmp_path / "out"
    for i in range(2):
        apply(folder, out, "--to", str(END_S), "--shard", f"{i}/2")
    got = read.dataset(out / "d", "rule, count(*) AS c", "GROUP BY ALL")
    assert {r["rule"]: r["c"] for r in got} == {f"r{i}": 12 * 11 for i in range(6)}


def test_the_readme_duckdb_query_reads_the_demo_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's SQL, as written, on what `make demo` writes (rules/ on the bundled data)."""
    import duckdb

    root = Path(__file__).parent.parent
    readme = (root / "README.md").read_text()
    sql = next(block for block in readme.split("```sql\n")[1:] if "exports/demo/history" in block).split("```")[0]
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["apply", str(root / "rules"), "--datasource",
                                    f"file:{root / 'examples' / 'data' / 'node.jsonl'}", "--to",
                                    "2026-11-01T00:00:00Z", "--output-dir", "exports/demo", "-q"])
    assert res.exit_code == 0, res.output
    got = duckdb.sql(sql).fetchall()
    assert [(r[0], r[1].isoformat()) for r in got] == [("node_cpu", "2026-10-31"), ("node_cpu", "2026-11-01"),
                                                         ("node_memory", "2026-10-31"), ("node_memory", "2026-11-01")]
    assert sum(r[2] for r in got) == 2 * 40 * 73 and all(r[3] <= r[2] for r in got) and sum(r[3] for r in got) > 0


@pytest.mark.parametrize("inside", ["d/x.parquet", "d/rule=cpu/x.csv", "d/sub"])
def test_a_file_inside_a_datasets_folder_is_refused(tmp_path: Path, inside: str) -> None:
    kind = "csv" if inside.endswith(".csv") else "parquet"
    extra = ", partition_by: [date]" if inside.endswith("sub") else ""
    folder = file_rules(tmp_path, f"""targets:
  d: {{type: parquet, path: d, partition_by: [rule]}}
  e: {{type: {kind}, path: '{inside}'{extra}}}
""" + RULE.replace("to: [d, f]", "to: [d, e]"))
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(out), "--to", str(END_S)])
    assert res.exit_code == 2, res.output
    assert f"target e writes {out / inside}, inside the folder of target d's dataset ({out / 'd'})" in res.output
    assert not (out / "d").exists()


def test_a_time_key_may_not_hide_a_label_column_of_that_name(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("version: 1\ntargets:\n  d: {type: parquet, path: d, partition_by: [date],"
                                     " columns: [timestamp, value, date]}\n")
    res = CliRunner().invoke(main, ["validate", str(tmp_path)])
    assert res.exit_code == 1 and "partition_by: date is the date of the timestamp column, and its folder name " \
                                  "would hide the label column date" in res.output


@pytest.mark.parametrize(("key", "problem"), [("../esc", "'../esc' is not a valid name"),
                                              ("a/b", "'a/b' is not a valid name"),
                                              ("date --partition-by date", "date is listed twice")])
def test_query_partition_keys_are_checked_before_anything_is_fetched(tmp_path: Path, key: str, problem: str) -> None:
    args = ["query", "cpu_usage", "--datasource", "file:/no/such/file", "--format", "parquet", "-o",
            str(tmp_path / "ds")]
    for k in key.split(" --partition-by "):
        args += ["--partition-by", k]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and problem in res.output, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_query_with_too_many_partitions_fails_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("vmrules.targets.parquetfile.MAX_PARTITIONS", 3)
    data = tmp_path / "data.jsonl"
    data.write_text(export_jsonl())
    res = CliRunner().invoke(main, ["query", "cpu_usage", "--datasource", f"file:{data}", "--to", str(END_S),
                                    "--format", "parquet", "-o", str(tmp_path / "ds"), "--partition-by", "instance"])
    assert res.exit_code == 1 and "more than 3 partitions of instance" in res.output and "nothing written" in res.output
    assert not (tmp_path / "ds").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_queries_at_once_into_one_dataset_keep_every_row(tmp_path: Path) -> None:
    import subprocess
    import sys

    data = tmp_path / "data.jsonl"
    data.write_text(export_jsonl())
    cmd = [sys.executable, "-m", "vmrules", "query", "cpu_usage", "--datasource", f"file:{data}", "--to", str(END_S),
           "--since", "10m", "--format", "parquet", "-o", str(tmp_path / "ds"), "--partition-by", "env"]
    for _ in range(2):                                   # bounded: two rounds of three at once
        procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True) for _ in range(3)]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
    assert len(read.dataset(tmp_path / "ds", "value")) == 6 * 12 * 11


def test_a_symlinked_partition_folder_is_refused_and_nothing_is_made_through_it(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, TARGETS.replace("partition_by: [date, instance]", "partition_by: [instance, date]")
                        + RULE)
    out = tmp_path / "out"
    outside = tmp_path / "outside"
    outside.mkdir()
    (out / "d").mkdir(parents=True)
    (out / "d" / "instance=host-00").symlink_to(outside)
    res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(out), "--to", str(END_S)])
    assert res.exit_code == 1 and "is a symbolic link: a dataset's folders are its own; refused" in res.output
    assert list(outside.iterdir()) == []


def test_dry_run_names_the_dataset_and_its_folders(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, TARGETS + RULE)
    res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(tmp_path / "out"), "--to", str(END_S),
                                    "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "-> d (parquet): d/ (a dataset: date=.../instance=.../part-RUN_ID.parquet)" in res.output
    assert not (tmp_path / "out" / "d").exists()
