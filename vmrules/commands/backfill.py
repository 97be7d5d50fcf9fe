"""Backfill: a long window run chunk by chunk, each chunk a whole `apply` that commits on its own.

Each chunk continues the alert states the one before left (in memory, or through
the state file when incremental), so the rows are those of one whole run.
A file that several chunks write (a path without `{{ run.from }}`) is written by
the first and added to by the others. With `incremental`, each chunk starts after
the rules' watermarks, so a killed backfill started again skips what is already
delivered and goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from vmrules.commands.apply import ApplyOptions, RunReport, apply
from vmrules.durations import format_time_ms
from vmrules.errors import UsageError
from vmrules.model import RuleSet

Progress = Callable[[int, int, tuple[int, int], RunReport], None]   # chunk i of n, its window


def chunks(from_ms: int, to_ms: int, chunk_ms: int) -> list[tuple[int, int]]:
    """Consecutive [start, end] windows of `chunk_ms`, sharing no instant (a point falls in exactly one)."""
    out, start = [], from_ms
    while start <= to_ms:
        out.append((start, min(start + chunk_ms - 1, to_ms)))
        start += chunk_ms
    return out


def backfill(ruleset: RuleSet, options: ApplyOptions, chunk_ms: int, progress: Progress | None = None) -> RunReport:
    """Run [from, to] (ending `lag` before `to` when incremental) chunk by chunk; one report for all chunks."""
    if options.from_ms is None or options.to_ms is None:
        raise UsageError("--chunk needs a window: give --from (and --to, default now) or --since")
    end = options.to_ms - (options.lag_ms if options.incremental else 0)
    parts = chunks(options.from_ms, end, chunk_ms)
    carry = options.carry if options.carry is not None else {}    # each chunk continues the alert states
    written: set[str] = set()                                       # and adds to the files earlier ones wrote
    per_chunk = [replace(options, from_ms=a, to_ms=b, lag_ms=0, carry=carry, written=written,
                         open_episodes=options.open_episodes and i == len(parts) - 1)   # open ones: at the end
                 for i, (a, b) in enumerate(parts)]
    total: RunReport | None = None
    for i, opts in enumerate(per_chunk):
        report = apply(ruleset, opts)
        if progress is not None:
            progress(i + 1, len(parts), parts[i], report)
        total = report if total is None else _merge(total, report)
    assert total is not None
    total.run["from"], total.run["to"] = format_time_ms(options.from_ms), format_time_ms(end)
    return total


def _merge(total: RunReport, chunk: RunReport) -> RunReport:
    """Counts, rows and seconds added up per rule; a rule failed in any chunk is failed."""
    by_name = {r.name: r for r in total.rules}
    for r in chunk.rules:
        t = by_name.get(r.name)
        if t is None:
            total.rules.append(r)
            continue
        series = max(t.counts.series, r.counts.series)
        t.counts.add(r.counts)
        t.counts.series = series
        if r.window.points:
            t.window = replace(t.window, end_ms=r.window.end_ms)
        for k, v in r.rows.items():
            t.rows[k] = t.rows.get(k, 0) + v
        t.requests += r.requests
        t.bytes_read += r.bytes_read
        t.fetched += r.fetched
        t.seconds += r.seconds
        if r.status == "failed":
            t.status, t.error = "failed", r.error
    total.outputs += chunk.outputs
    total.tables.update(chunk.tables)
    return total
