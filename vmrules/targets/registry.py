"""The target types, keyed by the YAML `type:`: the built-ins and the plugins of the entry point group
`vmrules.targets`, through one table.

A type's kind (file, database, service) is known without loading its code, so a run is planned
before pyarrow loads; the code loads at first use. A built-in type is one module that declares its
`TargetType` (and one line in BUILT_IN); a plugin is one module with `KIND` ("file" or "service"),
`SCHEMA` (JSON Schema of its options: `properties`, optionally `required`), `DESCRIPTION`, and
`write(table, path, target)` for files or `send(delivery) -> int` for services.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from vmrules.errors import VmrulesError

GROUP = "vmrules.targets"
PLUGIN_KINDS = ("file", "service")
BUILT_IN = {                      # the YAML type -> (its kind, where its TargetType is)
    "csv": ("file", "vmrules.targets.csvfile:TYPE"),
    "json": ("file", "vmrules.targets.jsonfile:JSON"),
    "jsonl": ("file", "vmrules.targets.jsonfile:JSONL"),
    "parquet": ("file", "vmrules.targets.parquetfile:TYPE"),
    "sqlite": ("database", "vmrules.targets.sqlite:TYPE"),
    "postgres": ("database", "vmrules.targets.postgres:TYPE"),
    "webhook": ("service", "vmrules.targets.webhook:TYPE"),
    "alertmanager": ("service", "vmrules.targets.alertmanager:TYPE"),
    "victoriametrics": ("service", "vmrules.targets.victoriametrics:TYPE"),
}


@dataclass(frozen=True)
class TargetType:
    """How rows reach one type of target.

    File types with a `sink` are written batch by batch into a part file per rule, and `merge`
    joins the parts of several rules; file types without one (plugins) get the whole table once,
    at the end. A database type has a `sink` holding one transaction per rule and table, and
    `watermark` reading back what an incremental run committed there. A service
    type's `write` takes a Delivery.
    """

    name: str
    kind: str                     # file | database | service
    write: Callable[..., Any]
    source: str = "built-in"
    description: str = ""
    sink: Callable[..., Any] | None = None
    merge: Callable[..., None] | None = None
    watermark: Callable[..., int | None] | None = None   # database: (where, table, rule, target, env) -> the
    #                                                       last point an incremental run committed with the rows
    dataset: Callable[..., list[str]] | None = None      # file: (parts, folder, target) -> the files of a
    #                                                       partitioned dataset, written into a new folder


class UnknownTarget(VmrulesError, KeyError):
    """A target type with no writer."""


class PluginError(VmrulesError):
    """A plugin that cannot be loaded or does not follow the interface."""


@dataclass(frozen=True)
class Plugin:
    name: str
    kind: str
    schema: dict[str, Any]
    description: str
    entry: Any            # the loaded object
    source: str           # distribution name and version


def kind_of(type_: str) -> str:
    """file, database or service, without loading any code of a built-in type."""
    if type_ in BUILT_IN:
        return BUILT_IN[type_][0]
    return get(type_).kind


def get(type_: str) -> TargetType:
    """The target type; the error names the known ones (plugins are looked up only for other names)."""
    if type_ in BUILT_IN:
        return _built_in(type_)
    types = registry()
    if type_ not in types:
        raise UnknownTarget(f"unknown target type {type_!r}; known: {', '.join(sorted(types))}")
    return types[type_]


def registry() -> dict[str, TargetType]:
    """Every target type: the built-ins, then installed plugins."""
    out = {name: _built_in(name) for name in BUILT_IN}
    for name, p in target_plugins().items():
        entry = p.entry.write if p.kind == "file" else p.entry.send
        merge = _whole_table(entry) if p.kind == "file" else None
        out.setdefault(name, TargetType(name, p.kind, entry, p.source, p.description, merge=merge))
    return out


@cache
def _built_in(type_: str) -> TargetType:
    module, attr = BUILT_IN[type_][1].split(":")
    found: TargetType = getattr(importlib.import_module(module), attr)
    return found


def _whole_table(write: Callable[..., Any]) -> Callable[..., None]:
    """A plugin file writer fed once with the rows of every rule (kept as Arrow IPC parts until then)."""
    def merge(parts: list[str], path: str, target: Any) -> None:
        import pyarrow as pa  # a plugin's file type: its rows are Arrow already

        tables = []
        for part in parts:
            with pa.memory_map(part) as source:
                tables.append(pa.ipc.open_stream(source).read_all())
        write(pa.concat_tables(tables, promote_options="permissive"), path, target)
    return merge


@lru_cache(maxsize=1)
def target_plugins() -> dict[str, Plugin]:
    """Installed target plugins by type name."""
    from importlib.metadata import entry_points  # ~10 ms: only when a type is not built in

    out = {}
    for ep in entry_points(group=GROUP):
        if ep.name in BUILT_IN:
            raise PluginError(f"target plugin {ep.name!r} ({ep.value}) clashes with the built-in type")
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - any import failure is the plugin's
            raise PluginError(f"target plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from None
        kind = getattr(obj, "KIND", None)
        schema = getattr(obj, "SCHEMA", None)
        entry = "write" if kind == "file" else "send"
        if kind not in PLUGIN_KINDS or not isinstance(schema, dict) or not callable(getattr(obj, entry, None)):
            raise PluginError(f"target plugin {ep.name!r} ({ep.value}) needs KIND in {PLUGIN_KINDS}, a SCHEMA dict "
                              f"and a {entry}() function")
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else ep.value
        out[ep.name] = Plugin(ep.name, kind, schema, str(getattr(obj, "DESCRIPTION", "")), obj, dist)
    return out
