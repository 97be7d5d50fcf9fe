"""The `file:PATH` datasource: a VictoriaMetrics /api/v1/export JSON-lines file.

It answers plain series selectors (`metric{label="x", other=~"re"}`), parsed
by the grammar `validate` checks queries with, regexes run by RE2, over a
window: the value at each point is the last sample at or before it within the
lookback (5m, as Prometheus), which is exactly the stored sample for data
aligned to the step. NaN samples (staleness markers) are skipped.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from vmrules.model import Datasource
from vmrules.sources.result import FetchError, QueryResult, check_unique, series_labels
from vmrules.window import Window

LOOKBACK_MS = 300_000
_BARE_INF = re.compile(rb"(?<![\w\"])([+-]?)Inf(?![\w\"])")
UNSUPPORTED = ('it answers plain series selectors such as metric{label="x", other=~"re"} (MetricsQL\'s '
               '{a="1" or b="2"} too), without functions, operators, ranges or offsets')


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str


def parse_selector(query: str) -> list[list[Matcher]]:
    """The matcher groups of a plain series selector (a series matching any group is selected), parsed by the
    query grammar `validate` uses; FetchError for anything else."""
    from vmrules import querylang
    from vmrules.querylang.syntax import Paren, Selector

    result = querylang.check(query, "metricsql")
    if result.problems:
        raise FetchError(f"query {query!r}: {result.problems[0].message}")
    tree = result.tree
    while isinstance(tree, Paren):
        tree = tree.inner
    if not isinstance(tree, Selector) or tree.offset or tree.at or any(m.op == "" for g in tree.groups for m in g):
        raise FetchError(f"query {query!r} is not supported by the file datasource: {UNSUPPORTED}")
    name = [Matcher("__name__", "=", tree.name)] if tree.name else []
    groups = [name + [Matcher(m.label, m.op, m.value) for m in g] for g in tree.groups or [[]]]
    for group in groups:
        if all(_accepts_empty(m) for m in group):    # as Prometheus: some matcher must reject the empty label
            raise FetchError(f"selector {query!r} matches every series: name a metric or a non-empty label")
    return groups


def _accepts_empty(m: Matcher) -> bool:
    return bool(_matches(m, [""])[0])


def _matches(m: Matcher, values: list[str]) -> np.ndarray:
    """Per value, whether the matcher accepts it; regexes fully anchored, run by RE2 as `where` runs them."""
    if m.op in ("=", "!="):
        hit = np.fromiter((v == m.value for v in values), bool, len(values))
    else:
        import pyarrow as pa
        import pyarrow.compute as pc

        hit = np.asarray(pc.match_substring_regex(pa.array(values, pa.string()), pattern=f"^(?:{m.value})$")
                         .to_numpy(zero_copy_only=False), bool)
    return hit if m.op in ("=", "=~") else ~hit


class ExportFile:
    """The series of one export file, read once and shared by every rule of a run."""

    _cache: dict[tuple[str, int, int], ExportFile] = {}
    _lock = threading.Lock()

    def __init__(self, path: str):
        self.path = path
        self.labels: list[dict[str, str]] = []
        self.ts: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self._chosen: dict[str, np.ndarray] = {}
        self._read()

    @classmethod
    def open(cls, path: str) -> ExportFile:
        try:
            st = os.stat(path)
        except OSError as exc:
            raise FetchError(f"cannot read {path}: {exc.strerror or exc}") from None
        key = (os.path.realpath(path), st.st_mtime_ns, st.st_size)
        with cls._lock:
            if key not in cls._cache:
                cls._cache.clear()
                cls._cache[key] = cls(path)
            return cls._cache[key]

    def _read(self) -> None:
        try:
            with open(self.path, "rb") as f:
                lines = f.readlines()
        except OSError as exc:
            raise FetchError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            cut = line.find(b'"values"')
            fixed = line[:cut] + _BARE_INF.sub(rb"\1Infinity", line[cut:]) if cut > 0 else line
            try:
                doc = json.loads(fixed)
                ts = np.asarray(doc["timestamps"], np.int64)
                vals = np.asarray(doc["values"], np.float64)
                labels = series_labels(doc["metric"])
            except (ValueError, KeyError, TypeError) as exc:
                raise FetchError(f"{self.path}:{n}: not a VictoriaMetrics export line ({exc})") from None
            except FetchError as exc:
                raise FetchError(f"{self.path}:{n}: {exc}") from None
            if len(ts) != len(vals):
                raise FetchError(f"{self.path}:{n}: {len(ts)} timestamps but {len(vals)} values")
            order = np.argsort(ts, kind="stable")
            keep = ~np.isnan(vals[order])
            self.labels.append(labels)
            self.ts.append(ts[order][keep])
            self.values.append(vals[order][keep])
        _merge_duplicates(self)

    def chosen(self, query: str) -> np.ndarray:
        """Which series the selector selects (kept per query: chunks ask again)."""
        if query not in self._chosen:
            mask = np.zeros(len(self.labels), bool)
            for group in parse_selector(query):
                hit = np.ones(len(self.labels), bool)
                for m in group:
                    hit &= _matches(m, [lab.get(m.label, "") for lab in self.labels])
                mask |= hit
            self._chosen[query] = mask
        return self._chosen[query]

    def select(self, query: str, start_ms: int, end_ms: int, step_ms: int) -> QueryResult:
        """The answer a server gives to query_range (or to query when start == end)."""
        chosen = self.chosen(query)
        grid = np.arange(start_ms, end_ms + 1, step_ms, dtype=np.int64)
        labels: list[dict[str, str]] = []
        ids: list[np.ndarray] = []
        ts_out: list[np.ndarray] = []
        vals_out: list[np.ndarray] = []
        for lab, ts, vals, hit in zip(self.labels, self.ts, self.values, chosen, strict=True):
            if not hit or not len(ts):
                continue
            idx = np.searchsorted(ts, grid, side="right") - 1
            ok = idx >= 0
            ok[ok] &= grid[ok] - ts[idx[ok]] <= LOOKBACK_MS
            if not ok.any():
                continue
            ids.append(np.full(int(ok.sum()), len(labels), np.int32))
            labels.append(lab)
            ts_out.append(grid[ok])
            vals_out.append(vals[idx[ok]])
        if not labels:
            return QueryResult.empty()
        return QueryResult(labels, np.concatenate(ids), np.concatenate(ts_out), np.concatenate(vals_out))


def _merge_duplicates(f: ExportFile) -> None:
    """An export may hold one series on several lines: join them."""
    try:
        check_unique(f.labels)
        return
    except FetchError:
        pass
    merged: dict[tuple[tuple[str, str], ...], int] = {}
    labels: list[dict[str, str]] = []
    ts: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    for lab, t, v in zip(f.labels, f.ts, f.values, strict=True):
        key = tuple(sorted(lab.items()))
        if key in merged:
            i = merged[key]
            t2, v2 = np.concatenate([ts[i], t]), np.concatenate([vals[i], v])
            order = np.argsort(t2, kind="stable")
            ts[i], vals[i] = t2[order], v2[order]
        else:
            merged[key] = len(labels)
            labels.append(lab)
            ts.append(t)
            vals.append(v)
    f.labels, f.ts, f.values = labels, ts, vals


class FileSource:
    """Datasource adapter with the same `fetch` as HttpSource."""

    def __init__(self, url: str):
        self.path = url[len("file:"):]

    @classmethod
    def open(cls, ds: Datasource, env: Mapping[str, str], log: Callable[[str], None]) -> FileSource:
        return cls(ds.url)

    def fetch(self, query: str, window: Window) -> list[QueryResult]:
        data = ExportFile.open(self.path)
        start = window.end_ms if window.instant else window.start_ms
        if window.points == 0:
            return [QueryResult.empty()]
        return [data.select(query, start, window.end_ms, window.step_ms)]

    def batches(self, query: str, window: Window) -> Iterator[QueryResult]:
        for result in self.fetch(query, window):
            result.request_start = True
            yield result

    def close(self) -> None:
        pass
