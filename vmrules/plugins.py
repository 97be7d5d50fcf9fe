"""Third-party target types, registered under the entry point group `vmrules.targets`.

An entry point names a target type and points at an object (usually a module)
with `KIND` ("file" or "service"), `SCHEMA` (JSON Schema of its options:
`properties`, optionally `required`), `DESCRIPTION`, and `write(table, path,
target)` for files or `send(delivery) -> int` for services.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

GROUP = "vmrules.targets"
BUILT_IN_KINDS = {"csv": "file", "json": "file", "jsonl": "file", "parquet": "file", "sqlite": "database",
                  "webhook": "service", "alertmanager": "service", "victoriametrics": "service"}
BUILT_IN_TYPES = tuple(BUILT_IN_KINDS)
KINDS = ("file", "service")


class PluginError(Exception):
    """A plugin that cannot be loaded or does not follow the interface."""


@dataclass(frozen=True)
class Plugin:
    name: str
    kind: str
    schema: dict[str, Any]
    description: str
    entry: Any            # the loaded object
    source: str           # distribution name and version


@lru_cache(maxsize=1)
def target_plugins() -> dict[str, Plugin]:
    """Installed target plugins by type name."""
    from importlib.metadata import entry_points  # ~10 ms: only when a type is not built in

    out = {}
    for ep in entry_points(group=GROUP):
        if ep.name in BUILT_IN_TYPES:
            raise PluginError(f"target plugin {ep.name!r} ({ep.value}) clashes with the built-in type")
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - any import failure is the plugin's
            raise PluginError(f"target plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from None
        kind = getattr(obj, "KIND", None)
        schema = getattr(obj, "SCHEMA", None)
        entry = "write" if kind == "file" else "send"
        if kind not in KINDS or not isinstance(schema, dict) or not callable(getattr(obj, entry, None)):
            raise PluginError(f"target plugin {ep.name!r} ({ep.value}) needs KIND in {KINDS}, a SCHEMA dict "
                              f"and a {entry}() function")
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else ep.value
        out[ep.name] = Plugin(ep.name, kind, schema, str(getattr(obj, "DESCRIPTION", "")), obj, dist)
    return out


def kind_of(type_: str) -> str:
    """file, database or service, without loading any writer for a built-in type."""
    if type_ in BUILT_IN_KINDS:
        return BUILT_IN_KINDS[type_]
    from vmrules.targets import get

    return get(type_).kind
