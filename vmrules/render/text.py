"""Printing problems and run summaries for people and machines."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from vmrules.durations import format_duration_ms, format_time_ms
from vmrules.errors import Problem

if TYPE_CHECKING:
    from vmrules.commands.apply import RunReport

FORMATS = ("text", "json", "github")


def format_problems(problems: Iterable[Problem], fmt: str = "text") -> str:
    """Problems as `path:line:col: error: msg` lines (warnings and notes alike), a JSON document, or GitHub
    annotations."""
    problems = list(problems)
    if fmt == "json":
        return json.dumps({"valid": not any(p.level == "error" for p in problems), "problems": [
            {"path": p.location.path, "line": p.location.line, "col": p.location.col, "message": p.message,
             "level": p.level} for p in problems]}, indent=2)
    if fmt == "github":
        return "\n".join(f"::{_GH_LEVEL.get(p.level, 'error')} file={_gh(p.location.path)},line={p.location.line},"
                         f"col={p.location.col}::{_gh(p.message)}" for p in problems)
    return "\n".join(str(p) for p in problems)


_GH_LEVEL = {"error": "error", "warning": "warning", "note": "notice"}


def _gh(text: str) -> str:
    """Escape a value for a GitHub workflow command."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A").replace(":", "%3A").replace(",", "%2C")


def format_summary(report: RunReport, output_dir: str) -> str:
    """A table per rule (status, series, samples, invalid, alerts, rows per target, seconds) and the outputs;
    `?` for a count a pushed-down rule cannot know (the server sent only the samples that can alert)."""
    head = ("rule", "status", "series", "samples", "invalid", "filtered", "alerts", "seconds", "rows")
    rows = [head]
    for r in report.rules:
        written = ", ".join(f"{k}={v}" for k, v in r.rows.items()) or "-"
        c = r.counts
        by = ", ".join(f"{k} {v}" for k, v in c.in_order(c.by_severity).items())
        rows.append((r.name, r.status, c.shown("series"), c.shown("samples"), c.shown("invalid"), c.shown("filtered"),
                     f"{c.alerts} ({by})" if by else str(c.alerts), f"{r.seconds:.2f}", written))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1] for row in rows]
    pushed = [r.name for r in report.rules if r.counts.unknown]
    if pushed:
        lines.append(f"? not known: {', '.join(pushed)} fetched only the samples that can alert (pushdown; "
                     "--no-pushdown counts them)")
    if report.outputs:
        lines.append("")
        lines.append(f"exports in {output_dir}:")
        for o in report.outputs:
            where = _where(o.kind, o.path, output_dir)
            table = f" table {o.table}" if o.table else ""
            if o.skipped:
                lines.append(f"  {where}  ({o.type}, skipped: no {o.unit}, target {o.target})")
                continue
            if o.files is not None:
                where, table = where + "/", " dataset"
                unit = f"{o.unit} in {o.files} new file{'s' if o.files != 1 else ''}"
            else:
                unit = o.unit
            lines.append(f"  {where}{table}  ({o.type}, {o.rows} {unit}, target {o.target})")
    return "\n".join(lines)


def _where(kind: str, path: str, output_dir: str) -> str:
    """A file or database file relative to the output directory; a service's URL or a server's DSN as is."""
    if kind == "service" or not os.path.isabs(path):
        return path
    return os.path.relpath(path, os.path.realpath(output_dir))


def json_events(report: RunReport, output_dir: str) -> list[dict[str, object]]:
    """The run as structured records for log pipelines: one per rule, one per output, one for the run."""
    events: list[dict[str, object]] = []
    for r in report.rules:
        c = r.counts
        events.append({"event": "rule", "rule": r.name, "status": r.status, "error": r.error or None,
                       "from": format_time_ms(r.window.start_ms), "to": format_time_ms(r.window.end_ms),
                       "series": c.known("series"), "samples": c.known("samples"), "invalid": c.known("invalid"),
                       "filtered": c.known("filtered"), "pushdown": r.pushdown.filter or None,
                       "alerts": c.alerts, "by_severity": c.by_severity, "rows": r.rows, "requests": r.requests,
                       "bytes": r.bytes_read, "seconds": round(r.seconds, 3)})
    for o in report.outputs:
        events.append({"event": "output", "target": o.target, "type": o.type, "kind": o.kind, "path": o.path,
                       "table": o.table, "rows": o.rows, "unit": o.unit,
                       **({"dataset_files": o.files} if o.files is not None else {}),
                       **({"skipped": True} if o.skipped else {})})
    events.append({"event": "run", "id": report.run["id"], "ok": report.ok, "rules": len(report.rules),
                   "failed": [r.name for r in report.failed], "output_dir": output_dir})
    return events


def empty_notes(report: RunReport) -> list[str]:
    """A hint for each rule whose query found no series at all (a typo in a metric or label is the usual cause)."""
    out = []
    for r in report.rules:
        if r.status == "ok" and r.counts.known("series") == 0 and r.window.points:
            out.append(f"note: rule {r.name}: the query found no series from {format_time_ms(r.window.start_ms)} "
                       f"to {format_time_ms(r.window.end_ms)}; check its metric and label names, e.g. with "
                       f"vmrules query '{r.query}' --since 1h --datasource URL")
    return out


def format_plan(report: RunReport, output_dir: str) -> str:
    """What a dry run would do: windows, queries, datasource and rendered destinations per rule."""
    lines = [f"dry run {report.run['id']}: nothing fetched, nothing written"]
    for r in report.rules:
        w = r.window
        span = (f"instant at {format_time_ms(w.end_ms)}" if w.instant else
                f"{format_time_ms(w.start_ms)} .. {format_time_ms(w.end_ms)} step {format_duration_ms(w.step_ms)}, "
                f"{w.points} points")
        lines.append(f"rule {r.name}: {span}")
        if r.carry_in is not None:
            lines.append(f"  alert state: carried from {format_time_ms(r.carry_in.as_of_ms)} "
                         f"({r.carry_in.size} states of series and episodes)")
        elif w.lookback_ms and w.points:
            lines.append(f"  lookback: {format_duration_ms(w.lookback_ms)} before the window, for the alert state "
                         "(fetched, not exported)")
        lines.append(f"  query: {r.query}")
        lines.append(f"  pushdown: {r.pushdown.describe()}")
        if r.pushdown.query is not None:
            lines.append(f"  sent: {' '.join(r.pushdown.query.split())}")
        lines.append(f"  datasource: {r.datasource}")
        if r.error:
            lines.append(f"  error: {r.error}")
        for d in r.destinations:
            rel = _where(d.kind, d.path, output_dir)
            keys = d.target.partition_by if d.kind == "file" else ()
            where = f"{rel}/ (a dataset: {'/'.join(f'{k}=...' for k in keys)}/part-RUN_ID.parquet)" if keys else rel
            lines.append(f"  -> {d.target.name} ({d.target.type}): {where}" + (f" table {d.table}" if d.table else ""))
    return "\n".join(lines)
