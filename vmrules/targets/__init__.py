"""Export targets, keyed by the YAML `type:` (built-ins and plugins of the group `vmrules.targets`).

File targets get a table and a temporary path that is renamed into place
afterwards; `sqlite` writes one transaction per rule; service targets get a
Delivery per rule. Each built-in module declares its KIND and one entry function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.ipc

from vmrules.plugins import target_plugins
from vmrules.targets import alertmanager, csvfile, jsonfile, parquetfile, sqlite, victoriametrics, webhook


@dataclass(frozen=True)
class TargetType:
    """How rows reach one type of target.

    File types with a `sink` are written batch by batch into a part file per rule, and
    `merge` joins the parts of several rules; file types without one (plugins) get the
    whole table once, at the end.
    """

    name: str
    kind: str                     # file | database | service
    write: Callable[..., Any]
    source: str = "built-in"
    description: str = ""
    sink: Callable[..., Any] | None = None
    merge: Callable[..., None] | None = None


BUILT_IN = {t.name: t for t in (
    TargetType("csv", "file", csvfile.write, description="CSV file with a header row",
               sink=csvfile.Sink, merge=csvfile.merge),
    TargetType("json", "file", jsonfile.write_json, description="JSON file holding one array of rows",
               sink=jsonfile.ArraySink, merge=jsonfile.merge_arrays),
    TargetType("jsonl", "file", jsonfile.write_jsonl, description="JSON lines, one row per line",
               sink=jsonfile.LinesSink, merge=jsonfile.merge_lines),
    TargetType("parquet", "file", parquetfile.write, description="Parquet file (a row group per batch)",
               sink=parquetfile.Sink, merge=parquetfile.merge),
    TargetType("sqlite", "database", sqlite.write, description="table in a SQLite database"),
    TargetType("webhook", "service", webhook.send, description="HTTP endpoint receiving the rows as JSON"),
    TargetType("alertmanager", "service", alertmanager.send, description="Alertmanager /api/v2/alerts"),
    TargetType("victoriametrics", "service", victoriametrics.send,
               description="VictoriaMetrics /api/v1/import (write-back)"),
)}


class UnknownTarget(KeyError):
    """A target type with no writer."""


def registry() -> dict[str, TargetType]:
    """Every target type: the built-ins, then installed plugins."""
    out = dict(BUILT_IN)
    for name, p in target_plugins().items():
        entry = p.entry.write if p.kind == "file" else p.entry.send
        merge = _whole_table(entry) if p.kind == "file" else None
        out.setdefault(name, TargetType(name, p.kind, entry, p.source, p.description, merge=merge))
    return out


def _whole_table(write: Callable[..., Any]) -> Callable[..., None]:
    """A plugin file writer fed once with the rows of every rule (kept as Arrow IPC parts until then)."""
    def merge(parts: list[str], path: str, target: Any) -> None:
        tables = []
        for part in parts:
            with pa.memory_map(part) as source:
                tables.append(pa.ipc.open_stream(source).read_all())
        write(pa.concat_tables(tables, promote_options="permissive"), path, target)
    return merge


def get(type_: str) -> TargetType:
    """The target type; the error names the known ones (plugins are looked up only for other names)."""
    if type_ in BUILT_IN:
        return BUILT_IN[type_]
    types = registry()
    if type_ not in types:
        raise UnknownTarget(f"unknown target type {type_!r}; known: {', '.join(sorted(types))}")
    return types[type_]
