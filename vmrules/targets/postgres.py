"""Target `postgres`: a table on a PostgreSQL server, written Arrow-native with COPY (adbc-driver-postgresql).

The same modes and guarantees as the sqlite target: one transaction per rule and table (the
incremental watermark in it, in `vmrules_watermarks` beside the table), append / upsert keyed by
(rule, labels, timestamp) / replace of the rule's rows; episodes are upserted by (rule, metric,
labels, severity, start). Columns are typed: timestamptz, double precision, boolean, bigint, text, and
`labels` as jsonb. append COPYs straight into the table; upsert COPYs into a temporary table and
moves the rows with one INSERT ... ON CONFLICT per batch, except into a table the transaction made:
there the rows are COPYed straight in and the unique index is built once, at the end (a key held
twice keeps its last row). The driver loads at the first write.
"""

from __future__ import annotations

import re
import urllib.parse
import zlib
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from vmrules.errors import VmrulesError
from vmrules.model import WATERMARK_TABLE, Target, reserved_table
from vmrules.net.http import DSN_SCHEMES as SCHEMES
from vmrules.net.http import HttpError, Secrets, redact_dsn, rule_env
from vmrules.targets.registry import TargetType
from vmrules.targets.sqlite import EPISODE_KEY, KEY

STAGE = "vmrules_stage"
_JSONB_VERSION = b"\x01"      # jsonb's binary COPY format: a version byte, then the JSON text


class PostgresError(VmrulesError):
    """The server refused, or could not be reached; the message names the DSN without its password."""


def split_table(name: str) -> tuple[str | None, str]:
    """`schema.table` -> (schema, table); a plain name has no schema (the server's search_path picks it)."""
    schema, dot, table = name.rpartition(".")
    return (schema if dot else None), table


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _qualified(schema: str, table: str) -> str:
    return f"{_q(schema)}.{_q(table)}"


def pg_type(name: str, t: pa.DataType) -> str:
    """The column type a row column gets."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if name == "labels":
        return "jsonb"
    if pa.types.is_timestamp(t):
        return "timestamp with time zone"
    if pa.types.is_floating(t):
        return "double precision"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t):
        return "bigint"
    return "text"


def _index_part(name: str, t: pa.DataType) -> str:
    """A key column in the unique index: text compared bytewise (COLLATE "C": exact and several times faster
    than a locale's collation), labels by their canonical jsonb text."""
    kind = pg_type(name, t)
    if kind == "jsonb":
        return f'(({_q(name)})::text) COLLATE "C"'
    if kind == "text":
        return f'{_q(name)} COLLATE "C"'
    return _q(name)


def _key_parts(schema: pa.Schema, key: tuple[str, ...]) -> str:
    """The unique key, its time column first: comparing it settles most index comparisons cheaply."""
    ordered = sorted(key, key=lambda k: not pa.types.is_timestamp(schema.field(k).type))
    return ", ".join(_index_part(k, schema.field(k).type) for k in ordered)


def _arrow(table: pa.Table) -> pa.Table:
    """The rows as COPY takes them: dictionaries decoded, labels in jsonb's binary form."""
    cols = []
    for f, col in zip(table.schema, table.columns, strict=True):
        if pa.types.is_dictionary(f.type):
            col = pc.cast(col, f.type.value_type)
        if pa.types.is_large_string(col.type):
            col = pc.cast(col, pa.string())
        if f.name == "labels":
            col = pc.binary_join_element_wise(pa.scalar(_JSONB_VERSION, pa.binary()), pc.cast(col, pa.binary()),
                                              pa.scalar(b"", pa.binary()))
        cols.append(col)
    return pa.table(cols, names=table.column_names)


class Sink:
    """One rule's rows for one table: a single transaction over every batch, committed at close.

    A transaction-scoped advisory lock on the table's name makes writers of the same table (other
    rules, other runs) wait for each other, as SQLite's database lock does.
    """

    def __init__(self, dsn: str, table_name: str, rule: str, target: Target, watermark_ms: int | None = None,
                 env: Mapping[str, str] | None = None):
        if why := reserved_table(table_name):
            raise ValueError(why)
        self.dsn_text = str(target.options.get("dsn", dsn))
        self.env = env
        self.schema, self.table_name = split_table(table_name)
        self.full_name, self.rule = table_name, rule
        self.watermark_ms = watermark_ms
        episodes = target.shape == "episodes"
        self.mode = "upsert" if episodes else target.options.get("mode", "append")
        self.key = EPISODE_KEY if episodes else KEY
        self.con: Any = None
        self.cur: Any = None
        self.rows = 0
        self._secrets: Secrets | None = None
        self._conflict = ""
        self._index = ""          # upsert into a table this transaction made: its unique index, built at the end
        self._key = ""
        self._twins = _Twins()

    def write(self, table: pa.Table) -> None:
        with self._errors():
            if self.con is None:
                self._begin(table.schema)
            if table.num_rows:
                self._insert(_arrow(table))
        self.rows += table.num_rows

    def close(self) -> int:
        """Commit; returns the rows written. A failed commit leaves the table as it was."""
        try:
            with self._errors():
                if self.con is not None:
                    if self._index:
                        self._build_index()
                    if self.watermark_ms is not None:
                        self._record_watermark()
                    self.con.commit()
        except BaseException:
            self.abort()
            raise
        self._release()
        return self.rows

    def abort(self) -> None:
        """Roll back (closing the connection does it too) without hiding the error that brought us here."""
        try:
            if self.con is not None:
                try:
                    self.con.rollback()
                except Exception:  # noqa: BLE001, S110 - the connection may be gone already
                    pass
        finally:
            self._release()

    # -- the transaction ----------------------------------------------------------------------------
    def _begin(self, schema: pa.Schema) -> None:
        self.con = connect(self.dsn_text, self.env, self._remember)
        self.cur = self.con.cursor()
        if self.schema is None:
            self.schema = str(self._one("SELECT current_schema()"))
        self._one("SELECT pg_advisory_xact_lock(hashtext($1))", (f"vmrules:{self.schema}.{self.table_name}",))
        self._prepare(schema)
        if self.mode == "upsert" and not self._index:
            cols = ", ".join(f"{_q(f.name)} {pg_type(f.name, f.type)}" for f in schema)
            self.cur.execute(f"CREATE TEMPORARY TABLE {STAGE} ({cols}) ON COMMIT DROP")
            names = [f.name for f in schema]
            rest = [_q(n) for n in names if n not in self.key]
            updates = ", ".join(f"{n} = excluded.{n}" for n in rest)
            # a row that is already as given is left alone: a rerun of a window writes (and bloats) nothing
            changed = f"(old.{', old.'.join(rest)}) IS DISTINCT FROM (excluded.{', excluded.'.join(rest)})"
            self._conflict = (f"INSERT INTO {self._target} AS old ({', '.join(map(_q, names))}) "
                              f"SELECT {', '.join(map(_q, names))} FROM {STAGE} "
                              f"ON CONFLICT ({_key_parts(schema, self.key)}) DO "
                              + (f"UPDATE SET {updates} WHERE {changed}" if rest else "NOTHING"))
        if self.mode == "replace":
            if "rule" not in schema.names:
                raise ValueError("mode replace swaps a rule's rows for new ones, which needs the rule column")
            self.cur.execute(f"DELETE FROM {self._target} WHERE rule = $1", (self.rule,))

    @property
    def _target(self) -> str:
        assert self.schema is not None
        return _qualified(self.schema, self.table_name)

    def _prepare(self, schema: pa.Schema) -> None:
        """The table (and its schema) when missing, else its columns checked; the unique index for upsert."""
        assert self.schema is not None
        exists = "SELECT count(*) FROM pg_namespace WHERE nspname = $1"
        if self._one(exists, (self.schema,)) == 0:
            # IF NOT EXISTS does not hold against another transaction making it at the same moment (other
            # rules of the run, writing other tables of the schema): they take turns, and look again
            self._one("SELECT pg_advisory_xact_lock(hashtext($1))", (f"vmrules-schema:{self.schema}",))
            if self._one(exists, (self.schema,)) == 0:
                self.cur.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(self.schema)}")
        have = self._columns()
        if not have:
            not_null = set(self.key)
            cols = [f"{_q(f.name)} {pg_type(f.name, f.type)}{' NOT NULL' if f.name in not_null else ''}"
                    for f in schema]
            self.cur.execute(f"CREATE TABLE IF NOT EXISTS {self._target} ({', '.join(cols)})")
        else:
            problems = [f"it has no column {f.name!r} ({pg_type(f.name, f.type)})" if f.name not in have else
                        f"its column {f.name!r} is {have[f.name]}, the rows need {pg_type(f.name, f.type)}"
                        for f in schema if have.get(f.name) != pg_type(f.name, f.type)]
            if problems:
                raise PostgresError(f"the existing table does not fit the rows: {'; '.join(problems)}; "
                                    "change the target's columns or table, or alter the table")
        if self.mode == "upsert":
            index = (f"CREATE UNIQUE INDEX IF NOT EXISTS {_q(self._index_name())} "
                     f"ON {self._target} ({_key_parts(schema, self.key)})")
            if have:
                self.cur.execute(index)
            else:       # a new table, seen by no one until the commit: rows COPYed straight in, indexed once
                self._index = index
                self._key = _key_parts(schema, self.key)

    def _index_name(self) -> str:
        """TABLE_key, or a name made unique with a hash of the table's when another relation of the schema
        has that name (the table itself, when its name is 63 characters long): IF NOT EXISTS would
        otherwise skip the index and every later upsert fail."""
        short = f"{self.table_name[:40]}_{zlib.crc32(self.table_name.encode()):08x}_key"
        for name in ((self.table_name + "_key")[:63], short):
            owner = self._one("SELECT coalesce(i.indrelid = to_regclass($3), false) FROM pg_class c "
                              "JOIN pg_namespace n ON n.oid = c.relnamespace "
                              "LEFT JOIN pg_index i ON i.indexrelid = c.oid "
                              "WHERE n.nspname = $1 AND c.relname = $2", (self.schema, name, self._target))
            if owner is None or owner is True:        # free, or this table's index already
                return name
        raise PostgresError(f"cannot name the unique index of {self.full_name}: {short} is taken as well")

    def _columns(self) -> dict[str, str]:
        self.cur.execute("SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                         "WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
                         (self._target,))
        return {str(name): str(kind) for name, kind in self.cur.fetchall()}

    def _build_index(self) -> None:
        """The unique index of a table made in this transaction; a key the rows hold twice (series that
        differ only in __name__) keeps its last row first, as the upsert of an existing table does."""
        if self._twins.anywhere:
            self.cur.execute(f"DELETE FROM {self._target} WHERE ctid IN (SELECT ctid FROM (SELECT ctid, "
                             f"row_number() OVER (PARTITION BY {self._key} ORDER BY ctid DESC) AS n "
                             f"FROM {self._target}) AS numbered WHERE n > 1)")
        self.cur.execute(self._index)

    def _insert(self, table: pa.Table) -> None:
        if self.mode != "upsert":
            self.cur.adbc_ingest(self.table_name, table, mode="append", db_schema_name=self.schema)
            return
        twins = self._twins.seen(table) if "metric" not in self.key else False
        if self._index:             # a new table: a key held twice is settled when the index is built
            self.cur.adbc_ingest(self.table_name, table, mode="append", db_schema_name=self.schema)
            return
        if twins:                   # INSERT ... ON CONFLICT refuses to touch a row twice: the last row wins
            table = last_per_key(table, self.key)
        self.cur.execute(f"TRUNCATE {STAGE}")
        self.cur.adbc_ingest(STAGE, table, mode="append", temporary=True)
        self.cur.execute(self._conflict)

    def _record_watermark(self) -> None:
        """Inside the rows' transaction: the table now holds the rule's points up to the watermark."""
        assert self.schema is not None
        marks = _qualified(self.schema, WATERMARK_TABLE)
        self.cur.execute(f'CREATE TABLE IF NOT EXISTS {marks} (rule text NOT NULL, "table" text NOT NULL, '
                         'watermark_ms bigint NOT NULL, PRIMARY KEY (rule, "table"))')
        self.cur.execute(f'INSERT INTO {marks} AS w (rule, "table", watermark_ms) VALUES ($1, $2, $3) '
                         'ON CONFLICT (rule, "table") DO UPDATE SET '
                         'watermark_ms = greatest(w.watermark_ms, excluded.watermark_ms)',
                         (self.rule, self.full_name, self.watermark_ms))

    def _one(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        self.cur.execute(sql, params)
        row = self.cur.fetchone()
        return None if row is None else row[0]

    def _remember(self, secrets: Secrets) -> None:
        self._secrets = secrets

    def _errors(self) -> _Translate:
        return _Translate(self.dsn_text, lambda: self._secrets)

    def _release(self) -> None:
        for handle in (self.cur, self.con):
            if handle is not None:
                try:
                    handle.close()
                except Exception:  # noqa: BLE001, S110 - closing a broken connection
                    pass
        self.cur = self.con = None


class _Twins:
    """Series whose rows share the key (rule, labels, timestamp): their labels are the same and only
    __name__ differs. `seen` says whether a batch holds such series; `anywhere`, whether the run did, in
    one batch or across batches."""

    def __init__(self) -> None:
        self.metric_of: dict[Any, Any] = {}
        self.anywhere = False

    def seen(self, table: pa.Table) -> bool:
        if "metric" not in table.column_names:      # series cannot be told apart: assume they may share keys
            self.anywhere = True
            return True
        pairs = table.select(["metric", "labels"]).group_by(["metric", "labels"], use_threads=False).aggregate([])
        labels = pairs.column("labels").to_pylist()
        within = len(set(labels)) < len(labels)
        for metric, text in zip(pairs.column("metric").to_pylist(), labels, strict=True):
            if self.metric_of.setdefault(text, metric) != metric:
                self.anywhere = True
        return within


def last_per_key(table: pa.Table, key: tuple[str, ...]) -> pa.Table:
    """The last row of each key (the order rows came in)."""
    keyed = table.append_column("__row", pa.array(range(table.num_rows), pa.int64()))
    last = keyed.group_by(list(key), use_threads=False).aggregate([("__row", "max")])
    rows = last.column("__row_max")
    return table.take(rows.take(pc.sort_indices(rows)))


class _Translate:
    """Driver errors become one PostgresError naming the server without its password; the rest pass."""

    def __init__(self, dsn_text: str, secrets: Any):
        self.dsn_text, self.secrets = dsn_text, secrets

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None or isinstance(exc, PostgresError) or not _is_driver_error(exc):
            return
        s = self.secrets()
        message = _plain(str(exc))
        if s is not None:
            message = s.scrub(message)
        raise PostgresError(f"{redact_dsn(self.dsn_text if s is None else s.url)}: {message}") from None


def _is_driver_error(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("adbc_driver")


def _plain(message: str) -> str:
    """libpq's message without the driver's prefixes and line breaks."""
    message = re.sub(r"^[A-Z_]+: \[libpq\] ", "", message.strip())
    return re.sub(r"\s*\n\s*", " ", message).strip()


def connect(dsn_text: str, env: Mapping[str, str] | None, remember: Any = None) -> Any:
    """A connection (not autocommit) to the DSN with its `${VAR}`s expanded under the allow-list."""
    allowed = rule_env(env)
    secrets = Secrets(allowed, dsn_text)
    try:
        dsn = secrets.expand(dsn_text)
    except HttpError as exc:
        raise PostgresError(f"dsn {redact_dsn(dsn_text)}: {exc}") from None
    secrets.url = dsn
    password = urllib.parse.urlsplit(dsn).password if urllib.parse.urlsplit(dsn).scheme in SCHEMES else None
    if password:
        secrets.add(password)
        secrets.add(urllib.parse.unquote(password))
    if remember is not None:
        remember(secrets)
    if urllib.parse.urlsplit(dsn).scheme not in SCHEMES:
        raise PostgresError(f"dsn {redact_dsn(dsn_text)}: expected a URI postgresql://USER@HOST:PORT/DATABASE")
    from adbc_driver_postgresql import dbapi  # the driver loads with the first write, never on the query path

    with _Translate(dsn_text, lambda: secrets):
        return dbapi.connect(dsn, autocommit=False)


def write(table: pa.Table, dsn: str, table_name: str, rule: str, target: Target,
          env: Mapping[str, str] | None = None) -> int:
    """Write the rows of one rule in one transaction; returns the number of rows written."""
    sink = Sink(dsn, table_name, rule, target, env=env)
    try:
        sink.write(table)
    except BaseException:
        sink.abort()
        raise
    return sink.close()


def table_watermark(dsn: str, table: str, rule: str, target: Target,
                    env: Mapping[str, str] | None = None) -> int | None:
    """The last point of `rule` that the table committed in an incremental run (None: none yet)."""
    schema, _ = split_table(table)
    dsn_text = str(target.options.get("dsn", dsn))
    holder: list[Secrets] = []
    con = connect(dsn_text, env, holder.append)
    try:
        with _Translate(dsn_text, lambda: holder[0] if holder else None), con.cursor() as cur:
            where = f"{_q(schema)}." if schema else ""
            cur.execute("SELECT to_regclass($1) IS NOT NULL", (f"{where}{WATERMARK_TABLE}",))
            if not cur.fetchone()[0]:
                return None
            cur.execute(f'SELECT watermark_ms FROM {where}{WATERMARK_TABLE} WHERE rule = $1 AND "table" = $2',
                        (rule, table))
            row = cur.fetchone()
        return None if row is None else int(row[0])
    finally:
        con.close()


TYPE = TargetType("postgres", "database", write, description="table on a PostgreSQL server (Arrow-native COPY)",
                  sink=Sink, watermark=table_watermark)
