"""Export targets, keyed by the YAML `type:`.

File targets (`csv`, `json`, `jsonl`, `parquet`) get a table and a temporary
path that is renamed into place afterwards; `sqlite` writes one transaction per
rule. Each module declares its KIND and one entry function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vmrules.targets import csvfile, jsonfile, parquetfile, sqlite

FileWriter = Callable[..., None]

FILE_WRITERS: dict[str, FileWriter] = {
    "csv": csvfile.write,
    "json": jsonfile.write_json,
    "jsonl": jsonfile.write_jsonl,
    "parquet": parquetfile.write,
}
DATABASE_WRITERS: dict[str, Callable[..., Any]] = {"sqlite": sqlite.write}
SERVICE_TYPES = ("webhook", "alertmanager", "victoriametrics")


class UnknownTarget(KeyError):
    """A target type with no writer."""


def kind(type_: str) -> str:
    """file, database or service."""
    if type_ in FILE_WRITERS:
        return "file"
    if type_ in DATABASE_WRITERS:
        return "database"
    if type_ in SERVICE_TYPES:
        return "service"
    raise UnknownTarget(f"unknown target type {type_!r}; known: {', '.join(known())}")


def known() -> list[str]:
    return sorted([*FILE_WRITERS, *DATABASE_WRITERS, *SERVICE_TYPES])


def file_writer(type_: str) -> FileWriter:
    try:
        return FILE_WRITERS[type_]
    except KeyError:
        raise UnknownTarget(f"{type_!r} is not a file target; known: {', '.join(sorted(FILE_WRITERS))}") from None
