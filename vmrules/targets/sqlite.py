"""Target `sqlite`: one transaction per rule and table; modes append, upsert, replace.

upsert keeps one row per (rule, labels, timestamp) through a unique index;
replace swaps the rule's previous rows for the new ones. Episodes (`shape:
episodes`) are always upserted by (rule, metric, labels, severity, start). Timestamps are stored
as RFC 3339 text (which SQLite's date functions read), alert as 0/1.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import threading
import time
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vmrules.model import WATERMARK_TABLE, Target, reserved_table
from vmrules.targets.registry import TargetType
from vmrules.targets.text import timestamps

KEY = ("rule", "labels", "timestamp")
EPISODE_KEY = ("rule", "metric", "labels", "severity", "start")   # shape: episodes; an open one is updated
BUSY_TIMEOUT_MS = 60_000
CACHE_KIB = 65_536     # page cache of a writing connection: a large transaction spills pages to the WAL less
#                        (2.1 M rows: 8.8 s at SQLite's default of 2 MiB, 6.4 s at 64 MiB, 4.9 s at 256 MiB)


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


class Sink:
    """One rule's rows for one table: a single transaction over every batch, committed at close.

    The database's lock is taken at the first batch (BEGIN IMMEDIATE) and held until
    commit, so other writers wait (busy_timeout) and never see half of a rule's rows.
    """

    def __init__(self, db_path: str, table_name: str, rule: str, target: Target, watermark_ms: int | None = None,
                 env: Mapping[str, str] | None = None):
        if why := reserved_table(table_name):
            raise ValueError(why)
        self.db_path, self.table_name, self.rule = db_path, table_name, rule
        self.watermark_ms = watermark_ms      # incremental runs: recorded with the rows, in their transaction
        episodes = target.shape == "episodes"
        self.mode = "upsert" if episodes else target.options.get("mode", "append")
        self.key = EPISODE_KEY if episodes else KEY
        self.con: sqlite3.Connection | None = None
        self.rows = 0
        self._held: threading.Lock | None = None

    def write(self, table: pa.Table) -> None:
        if self.con is None:
            self._begin(table.schema)
        assert self.con is not None
        _insert(self.con, self.table_name, table, self.mode, self.key)
        self.rows += table.num_rows

    def close(self) -> int:
        """Commit; returns the rows written. A failed commit leaves the table as it was."""
        try:
            if self.con is not None:
                if self.watermark_ms is not None:
                    record_watermark(self.con, self.table_name, self.rule, self.watermark_ms)
                self.con.execute("COMMIT")
        except BaseException:
            self.abort()
            raise
        self._release()
        return self.rows

    def abort(self) -> None:
        """Roll back, if SQLite has not done so itself (it does on a full disk or an I/O error), and
        never hide the error that brought us here."""
        try:
            if self.con is not None and self.con.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.con.execute("ROLLBACK")
        finally:
            self._release()

    def _begin(self, schema: pa.Schema) -> None:
        self._held = _lock(self.db_path)
        self._held.acquire()
        con = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                              check_same_thread=False)
        self.con = con
        con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        con.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        _wal(con)
        con.execute("BEGIN IMMEDIATE")
        _prepare(con, self.table_name, schema, self.mode, self.key)
        if self.mode == "replace":
            if "rule" not in schema.names:
                raise ValueError("mode replace swaps a rule's rows for new ones, which needs the rule column")
            con.execute(f"DELETE FROM {_q(self.table_name)} WHERE rule = ?", (self.rule,))

    def _release(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None
        if self._held is not None:
            self._held.release()
            self._held = None


def write(table: pa.Table, db_path: str, table_name: str, rule: str, target: Target,
          env: Mapping[str, str] | None = None) -> int:
    """Write the rows of one rule in one transaction; returns the number of rows written."""
    sink = Sink(db_path, table_name, rule, target)
    try:
        sink.write(table)
    except BaseException:
        sink.abort()
        raise
    return sink.close()


def _wal(con: sqlite3.Connection) -> None:
    """Switch to WAL once; the switch needs a moment without other connections, so retry briefly."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        try:
            con.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            busy = getattr(exc, "sqlite_errorname", "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
            if not busy or time.monotonic() > deadline:     # a full disk is not worth waiting on
                raise
            time.sleep(0.05)


def _prepare(con: sqlite3.Connection, name: str, schema: pa.Schema, mode: str, key: tuple[str, ...] = KEY) -> None:
    not_null = set(key)
    cols = [f"{_q(f.name)} {_sql_type(f.type)}{' NOT NULL' if f.name in not_null else ''}" for f in schema]
    con.execute(f"CREATE TABLE IF NOT EXISTS {_q(name)} ({', '.join(cols)})")
    have = {row[1] for row in con.execute(f"PRAGMA table_info({_q(name)})")}
    for f in schema:
        if f.name not in have:
            default = " NOT NULL DEFAULT ''" if f.name in not_null else ""
            con.execute(f"ALTER TABLE {_q(name)} ADD COLUMN {_q(f.name)} {_sql_type(f.type)}{default}")
    if mode == "upsert":
        con.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {_q(name + '_key')} ON {_q(name)} "
                    f"({', '.join(_q(k) for k in key)})")


ROWS_PER_STATEMENT = 100      # rows per INSERT: one statement for many rows binds and steps half as long


def _insert(con: sqlite3.Connection, name: str, table: pa.Table, mode: str, key: tuple[str, ...] = KEY) -> None:
    names = table.column_names
    for batch in table.to_batches(max_chunksize=100_000):
        values, params = [], []
        for col in batch.columns:
            literal = _constant(col)
            if literal is not None:       # the same in every row (rule, often metric and severity): not bound per row
                values.append(literal)
                continue
            values.append("?")
            if pa.types.is_timestamp(col.type):
                params.append(timestamps(col).to_pylist())
            elif pa.types.is_dictionary(col.type):
                params.append(_decoded(col))
            else:
                params.append(col.to_pylist())
        row = f"({', '.join(values)})"
        if not params:                    # every column the same in every row
            con.executemany(_statement(name, names, row, mode, key), [()] * batch.num_rows)
            continue
        rows = np.empty((batch.num_rows, len(params)), dtype=object)
        for i, column in enumerate(params):
            rows[:, i] = column
        k = min(ROWS_PER_STATEMENT, max(1, 999 // len(params)))   # at most 999 parameters a statement
        whole = batch.num_rows // k * k
        for count, group in ((k, rows[:whole].reshape(-1, k * len(params))), (1, rows[whole:])):
            if len(group):
                con.executemany(_statement(name, names, ", ".join([row] * count), mode, key), group.tolist())


def _statement(name: str, names: list[str], rows: str, mode: str, key: tuple[str, ...]) -> str:
    sql = f"INSERT INTO {_q(name)} ({', '.join(_q(n) for n in names)}) VALUES {rows}"
    if mode == "upsert":                  # rows of one statement that share a key: the later one stays, as in order
        updates = [f"{_q(n)} = excluded.{_q(n)}" for n in names if n not in key]
        sql += f" ON CONFLICT ({', '.join(_q(k) for k in key)}) DO " + (
            f"UPDATE SET {', '.join(updates)}" if updates else "NOTHING")
    return sql


def _constant(col: pa.Array) -> str | None:
    """A text or bool column holding one value in every row, as an SQL literal (None: it varies, or is not
    text or bool). Binding millions of copies of it costs more than the rest of the row."""
    if not len(col) or col.null_count:
        return None
    if pa.types.is_boolean(col.type):
        both = pc.min_max(col)
        low, high = both["min"].as_py(), both["max"].as_py()
        return None if low != high else str(int(low))
    if pa.types.is_dictionary(col.type) and pa.types.is_string(col.type.value_type) and len(col.dictionary) == 1:
        text = col.dictionary[0].as_py()
        return None if "\x00" in text else "'" + text.replace("'", "''") + "'"
    return None


def _decoded(col: pa.DictionaryArray) -> list[object]:
    """A dictionary column's values per row, each distinct value one Python object (no copy per row)."""
    values = np.array([*col.dictionary.to_pylist(), None], dtype=object)
    return values[pc.fill_null(col.indices, len(values) - 1).to_numpy(zero_copy_only=False)].tolist()  # type: ignore[no-any-return]


def describe(exc: sqlite3.Error, path: str) -> str:
    """What a SQLite error means, said plainly: a full disk is ENOSPC, not the rollback that followed."""
    name = getattr(exc, "sqlite_errorname", "")
    if name == "SQLITE_FULL":
        return f"no space left on device ({errno.errorcode[errno.ENOSPC]}) for {path}: SQLite says {exc}"
    return f"{path}: {exc} ({name})" if name else f"{path}: {exc}"


def table_watermark(db_path: str, table: str, rule: str) -> int | None:
    """The last point of `rule` that the SQLite table committed in an incremental run (None: none yet)."""
    if not os.path.exists(db_path):
        return None
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=60)
    try:
        row = con.execute(f'SELECT watermark_ms FROM {WATERMARK_TABLE} WHERE rule = ? AND "table" = ?',
                          (rule, table)).fetchone()
    except sqlite3.OperationalError:     # no such table: never written incrementally
        return None
    finally:
        con.close()
    return None if row is None else int(row[0])


def record_watermark(con: sqlite3.Connection, table: str, rule: str, watermark_ms: int) -> None:
    """Inside the rows' transaction: the table now holds the rule's points up to `watermark_ms`."""
    con.execute(f'CREATE TABLE IF NOT EXISTS {WATERMARK_TABLE} (rule TEXT NOT NULL, "table" TEXT NOT NULL, '
                'watermark_ms INTEGER NOT NULL, PRIMARY KEY (rule, "table"))')
    con.execute(f'INSERT INTO {WATERMARK_TABLE} (rule, "table", watermark_ms) VALUES (?, ?, ?) '
                'ON CONFLICT (rule, "table") DO UPDATE SET watermark_ms = max(watermark_ms, excluded.watermark_ms)',
                (rule, table, watermark_ms))


def _watermark(db_path: str, table: str, rule: str, target: Target, env: Mapping[str, str] | None = None) -> int | None:
    return table_watermark(db_path, table, rule)


TYPE = TargetType("sqlite", "database", write, description="table in a SQLite database", sink=Sink,
                  watermark=_watermark)
