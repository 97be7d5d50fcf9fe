"""Target `sqlite`: one transaction per rule and table; modes append, upsert, replace.

upsert keeps one row per (rule, labels, timestamp) through a unique index;
replace swaps the rule's previous rows for the new ones. Timestamps are stored
as RFC 3339 text (which SQLite's date functions read), alert as 0/1.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time

import pyarrow as pa
import pyarrow.compute as pc

from vmrules.model import Target
from vmrules.targets.text import timestamps

KIND = "sqlite"
KEY = ("rule", "labels", "timestamp")
BUSY_TIMEOUT_MS = 60_000
NOT_NULL = {"rule", "labels", "timestamp"}


def _sql_type(t: pa.DataType) -> str:
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_floating(t):
        return "REAL"
    if pa.types.is_boolean(t) or pa.types.is_integer(t):
        return "INTEGER"
    return "TEXT"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(db_path: str) -> threading.Lock:
    """One writer per database file within this process (other processes wait on SQLite's lock)."""
    key = os.path.realpath(db_path)
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def write(table: pa.Table, db_path: str, table_name: str, rule: str, target: Target) -> int:
    """Write the rows of one rule; returns the number of rows written."""
    with _lock(db_path):
        return _write(table, db_path, table_name, rule, target.options.get("mode", "append"))


def _wal(con: sqlite3.Connection) -> None:
    """Switch to WAL once; the switch needs a moment without other connections, so retry briefly."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        try:
            con.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _write(table: pa.Table, db_path: str, table_name: str, rule: str, mode: str) -> int:
    con = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        _wal(con)
        con.execute("BEGIN IMMEDIATE")
        try:
            _prepare(con, table_name, table.schema, mode)
            if mode == "replace" and "rule" in table.column_names:
                con.execute(f"DELETE FROM {_q(table_name)} WHERE rule = ?", (rule,))
            _insert(con, table_name, table, mode)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    finally:
        con.close()
    return table.num_rows


def _prepare(con: sqlite3.Connection, name: str, schema: pa.Schema, mode: str) -> None:
    cols = [f"{_q(f.name)} {_sql_type(f.type)}{' NOT NULL' if f.name in NOT_NULL else ''}" for f in schema]
    con.execute(f"CREATE TABLE IF NOT EXISTS {_q(name)} ({', '.join(cols)})")
    have = {row[1] for row in con.execute(f"PRAGMA table_info({_q(name)})")}
    for f in schema:
        if f.name not in have:
            default = " NOT NULL DEFAULT ''" if f.name in NOT_NULL else ""
            con.execute(f"ALTER TABLE {_q(name)} ADD COLUMN {_q(f.name)} {_sql_type(f.type)}{default}")
    if mode == "upsert":
        con.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {_q(name + '_key')} ON {_q(name)} "
                    f"({', '.join(_q(k) for k in KEY)})")


def _insert(con: sqlite3.Connection, name: str, table: pa.Table, mode: str) -> None:
    names = table.column_names
    sql = (f"INSERT INTO {_q(name)} ({', '.join(_q(n) for n in names)}) "
           f"VALUES ({', '.join('?' for _ in names)})")
    if mode == "upsert":
        updates = [f"{_q(n)} = excluded.{_q(n)}" for n in names if n not in KEY]
        sql += f" ON CONFLICT ({', '.join(_q(k) for k in KEY)}) DO " + (
            f"UPDATE SET {', '.join(updates)}" if updates else "NOTHING")
    for batch in table.to_batches(max_chunksize=100_000):
        columns = []
        for col in batch.columns:
            if pa.types.is_timestamp(col.type):
                col = timestamps(col)
            elif pa.types.is_dictionary(col.type):
                col = pc.cast(col, col.type.value_type)
            columns.append(col.to_pylist())
        con.executemany(sql, zip(*columns, strict=True))
