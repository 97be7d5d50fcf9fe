"""Sandboxed Jinja2 templates for paths, table names and bodies, and path confinement."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from vmrules.errors import VmrulesError

if TYPE_CHECKING:  # jinja2 is imported at the first template that is not plain text
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_OUTPUT_CHARS = 4096
RESERVED_PREFIX = ".vmrules"     # the state file, the lock and whatever else vmrules keeps in the output directory
TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SAFE_FILTERS = ("lower", "upper", "replace", "default", "d", "trim", "truncate", "string", "int",
                "float", "round", "join", "first", "last", "length", "format", "abs", "title", "tojson")


class TemplateError(VmrulesError, ValueError):
    """A template that does not parse or render, or renders to something not allowed."""


@lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    import jinja2

    from vmrules.sandbox import BOUNDED_FILTERS, Sandbox

    env = Sandbox(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.filters = {k: v for k, v in env.filters.items() if k in SAFE_FILTERS}
    env.filters.update(BOUNDED_FILTERS)
    env.globals = {}
    return env


@lru_cache(maxsize=4096)
def compile_template(source: str) -> jinja2.Template:
    """Parse a template once; TemplateError when it is not valid Jinja2."""
    import jinja2

    from vmrules.sandbox import BudgetError

    try:
        return _environment().from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax: {exc.message} (template line {exc.lineno})") from None
    except BudgetError as exc:
        raise TemplateError(f"template not allowed: {exc}") from None


@lru_cache(maxsize=4096)
def variables(source: str) -> frozenset[str]:
    """Top-level names a template reads (e.g. {"rule", "run"})."""
    if "{" not in source:
        return frozenset()
    import jinja2
    import jinja2.meta

    from vmrules.sandbox import BudgetError

    try:
        return frozenset(jinja2.meta.find_undeclared_variables(_environment().parse(source)))
    except (jinja2.TemplateSyntaxError, BudgetError):
        return frozenset()


_PLACEHOLDER = re.compile(r"\{\{ ?([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*) ?\}\}")


@lru_cache(maxsize=4096)
def _lookups(source: str) -> tuple[tuple[str, str, str], ...] | None:
    """A template made only of text and `{{ name.key }}` placeholders, as (text before, name, key) parts
    (the last with an empty name); None for any other template."""
    parts, pos = [], 0
    for m in _PLACEHOLDER.finditer(source):
        parts.append((source[pos:m.start()], m.group(1), m.group(2)))
        pos = m.end()
    parts.append((source[pos:], "", ""))
    if any("{" in text or "}" in text or key in _DICT_ATTRIBUTES for text, _, key in parts):
        return None                       # `{%`, filters, a method name...: Jinja2 decides
    return tuple(parts)


_DICT_ATTRIBUTES = frozenset(dir(dict))


def _substitute(parts: tuple[tuple[str, str, str], ...], context: dict[str, Any]) -> str | None:
    """The rendering of a `_lookups` template when every key holds a string (what Jinja2 would print), else
    None (Jinja2 then renders it, or explains the error)."""
    out = []
    for text, name, key in parts:
        out.append(text)
        if name:
            value = context.get(name)
            value = value.get(key) if isinstance(value, dict) else None
            if not isinstance(value, str):
                return None
            out.append(value)
    return "".join(out)


def render(source: str, context: dict[str, Any], limit: int = MAX_OUTPUT_CHARS) -> str:
    """Render in the sandbox; unknown names, unsafe access and oversized output raise TemplateError."""
    if "{" not in source:             # plain text: nothing to render
        if len(source) > limit:
            raise TemplateError(f"template output is longer than {limit} characters")
        return source
    parts = _lookups(source)
    if parts is not None and (done := _substitute(parts, context)) is not None:
        if len(done) > limit:         # paths and tables are mostly `{{ rule.name }}/{{ run.stamp }}.parquet`
            raise TemplateError(f"template output is longer than {limit} characters")
        return done
    import jinja2

    from vmrules.sandbox import BudgetError, rendering

    template = compile_template(source)
    try:
        pieces, size = [], 0
        with rendering(limit):
            for piece in template.root_render_func(template.new_context(context, shared=True)):
                size += len(piece)
                if size > limit:
                    raise TemplateError(f"template output is longer than {limit} characters")
                pieces.append(piece)
        return "".join(pieces)
    except BudgetError as exc:
        raise TemplateError(f"template not allowed: {exc}") from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"template not allowed: {exc}") from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"template: {exc.message}") from None
    except TemplateError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure inside user templates is the user's error
        raise TemplateError(f"template failed: {type(exc).__name__}: {exc}") from None


def check_relative_path(rendered: str) -> str:
    """A rendered output path must be relative and stay below the output directory."""
    if not rendered.strip():
        raise TemplateError("path renders to an empty string")
    if "\x00" in rendered:
        raise TemplateError("path contains a NUL character")
    if os.path.isabs(rendered) or rendered.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", rendered):
        raise TemplateError(f"path {rendered!r} is absolute; paths are relative to --output-dir")
    parts = re.split(r"[\\/]+", rendered)
    if ".." in parts:
        raise TemplateError(f"path {rendered!r} leaves the output directory (..)")
    if parts[-1] in ("", "."):
        raise TemplateError(f"path {rendered!r} names a directory, not a file")
    _check_reserved(rendered, [p for p in parts if p != "."])
    return rendered


def _check_reserved(rendered: str, parts: list[str]) -> None:
    """vmrules' own files at the top of the output directory (.vmrules-state.json, .vmrules.lock, and any
    other name starting with .vmrules) are never a target's."""
    if len(parts) == 1 and parts[0].startswith(RESERVED_PREFIX):
        raise TemplateError(f"path {rendered!r} is reserved for vmrules' own files (names starting with "
                            f"{RESERVED_PREFIX} at the top of the output directory)")


def confine(output_dir: str, rendered: str) -> str:
    """Join a checked relative path to the output directory, refusing escapes through symlinks."""
    check_relative_path(rendered)
    root = os.path.realpath(output_dir)
    full = os.path.realpath(os.path.join(root, rendered))
    if os.path.commonpath([root, full]) != root:
        raise TemplateError(f"path {rendered!r} resolves outside the output directory")
    _check_reserved(rendered, [os.path.relpath(full, root)])
    return full


def check_table_name(rendered: str, qualified: bool = False) -> str:
    """SQLite table names: [A-Za-z_][A-Za-z0-9_]*, not sqlite_*. `qualified` (PostgreSQL): `schema.table` too,
    each part such a name, the schema not one of the server's own (pg_*, information_schema)."""
    if qualified and "." in rendered:
        schema, _, table = rendered.partition(".")
        if not TABLE_NAME.match(schema) or len(schema) > 63 or not TABLE_NAME.match(table) or len(table) > 63:
            raise TemplateError(f"table name {rendered!r} must be NAME or SCHEMA.NAME, each matching "
                                "[A-Za-z_][A-Za-z0-9_]* (at most 63 characters)")
        if schema.lower().startswith("pg_") or schema.lower() == "information_schema":
            raise TemplateError(f"schema {schema!r} is the server's own")
        return rendered
    if not TABLE_NAME.match(rendered) or len(rendered) > 63:
        raise TemplateError(f"table name {rendered!r} must match [A-Za-z_][A-Za-z0-9_]* (at most 63 characters)")
    if rendered.lower().startswith("sqlite_"):
        raise TemplateError(f"table name {rendered!r} is reserved by SQLite")
    return rendered
