"""Read what vmrules wrote, in any format, back as plain rows (labels expanded, unix seconds)."""

from __future__ import annotations

import csv
import json
import sqlite3
from datetime import datetime
from typing import Any

import pyarrow.parquet as pq


def _norm(r: dict[str, Any]) -> dict[str, Any]:
    r = dict(r)
    labels = r.get("labels")
    if isinstance(labels, str) and labels.startswith("{"):
        r.update(json.loads(labels))
    ts = r["timestamp"]
    if isinstance(ts, datetime):
        r["timestamp"] = int(ts.timestamp())
    else:
        r["timestamp"] = int(datetime.fromisoformat(str(ts).replace("Z", "+00:00")).timestamp())
    if "value" in r:
        r["value"] = float(r["value"])
    if r.get("severity") in ("", None):
        r["severity"] = None
    return r


def rows(path: str, table: str | None = None) -> list[dict[str, Any]]:
    if path.endswith(".parquet"):
        return [_norm(r) for r in pq.read_table(path).to_pylist()]
    if path.endswith(".csv"):
        with open(path, newline="") as f:
            return [_norm(r) for r in csv.DictReader(f)]
    if path.endswith(".jsonl"):
        with open(path) as f:
            return [_norm(json.loads(line)) for line in f if line.strip()]
    if path.endswith(".json"):
        with open(path) as f:
            return [_norm(r) for r in json.load(f)]
    con = sqlite3.connect(path)
    con.row_factory = sqlite3.Row
    try:
        return [_norm(dict(r)) for r in con.execute(f'SELECT * FROM "{table}"')]
    finally:
        con.close()


def dataset(root: Any, select: str = "*", then: str = "") -> list[dict[str, Any]]:
    """A partitioned dataset read as one table by DuckDB (hive partitioning), as a user would; `then`
    follows the FROM clause (GROUP BY ...)."""
    import duckdb

    con = duckdb.connect()
    try:
        rel = con.sql(f"SELECT {select} FROM read_parquet('{root}/**/*.parquet', hive_partitioning = true) {then}")
        return [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]
    finally:
        con.close()


def dataset_points(root: Any) -> list[tuple[str, int]]:
    """(labels, unix seconds) of every row of a dataset, sorted; a row twice is there twice."""
    return sorted((r["labels"], r["t"]) for r in dataset(root, "labels, CAST(epoch(timestamp) AS BIGINT) AS t"))
