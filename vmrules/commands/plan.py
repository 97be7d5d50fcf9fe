"""`vmrules plan`: fetch and evaluate, write nothing; per rule, the rows each target would receive.

A backtest ("how often would this have fired last week?"), and with a git ref
the same for the rule files as they were there, and the difference per rule.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import tarfile
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from vmrules.commands.apply import ApplyOptions, _select, allowed_env, evaluated, rule_datasource
from vmrules.commands.variables import check_variables
from vmrules.config.validate import load_ruleset
from vmrules.durations import format_duration_ms, format_time_ms
from vmrules.errors import ConfigError, UsageError
from vmrules.evaluate.counts import Counts
from vmrules.model import Rule, RuleSet, Target, key_text
from vmrules.net.http import scrub
from vmrules.window import Window, rule_window

TOP_SERIES = 5


@dataclass
class TargetPlan:
    """Rows one target would receive, in all and per severity."""

    rows: int = 0
    by_severity: dict[str, int] = field(default_factory=dict)


@dataclass
class RulePlan:
    """What one rule would do over its window."""

    name: str
    window: Window
    status: str = "ok"          # ok | failed
    error: str = ""
    counts: Counts = field(default_factory=Counts)
    targets: dict[str, TargetPlan] = field(default_factory=dict)
    alert_series: dict[str, int] = field(default_factory=dict)   # series -> alert rows
    severity_series: dict[str, set[str]] = field(default_factory=dict)   # severity -> the series alerting at it
    severity_episodes: dict[str, int] = field(default_factory=dict)      # severity -> unbroken alerting stretches
    last_alert: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)   # (series, severity) -> ms
    first_alert_ms: int | None = None       # the earliest and latest alert row of the window
    last_alert_ms: int | None = None
    near: dict[str, list[float]] = field(default_factory=dict)   # series -> [closest value, rows within 10 %]
    near_threshold: str = ""                                      # the threshold near misses are measured against

    def near_misses(self) -> list[tuple[str, float, int]]:
        """The series that never alerted, closest to the threshold first: (series, closest value, rows that
        came within 10 % of it)."""
        if not self.near_threshold:
            return []
        above = self.near_threshold[0] == ">"
        found = [(k, v[0], int(v[1])) for k, v in self.near.items() if k not in self.alert_series]
        return sorted(found, key=lambda x: (-x[1] if above else x[1], x[0]))

    @property
    def alerting_series(self) -> int:
        return len(self.alert_series)


@dataclass
class PlanReport:
    """Every selected rule's plan, in file order."""

    rules: list[RulePlan]
    ruleset: RuleSet | None = None     # the rules planned (plan_base: as they are at the ref)

    @property
    def ok(self) -> bool:
        return all(r.status == "ok" for r in self.rules)


def plan(ruleset: RuleSet, options: ApplyOptions) -> PlanReport:
    """Fetch and evaluate the selected rules over their windows; nothing is written anywhere."""
    import time

    log = options.log or (lambda _m: None)
    to_ms = options.to_ms if options.to_ms is not None else int(time.time() * 1000)
    rules = _select(ruleset, options.rules, options.shard)
    sources = {r.name: rule_datasource(r, options.datasource) for r in rules}
    check_variables(rules, sources, ruleset.targets, allowed_env(options), writes=False)
    whole = {n: replace(t, options={k: v for k, v in t.options.items() if k != "columns"})
             for n, t in ruleset.targets.items()}

    def one(rule: Rule) -> RulePlan:
        return _plan_rule(rule, rule_window(rule, options.from_ms, to_ms), sources, whole, options, log)

    if options.progress is not None:
        options.progress.total = len(rules)
    with ThreadPoolExecutor(max_workers=max(1, options.concurrency)) as pool:
        return PlanReport(list(pool.map(one, rules)))


def _plan_rule(rule: Rule, window: Window, sources: dict[str, Any], targets: dict[str, Target],
               options: ApplyOptions, log: Callable[[str], None]) -> RulePlan:
    import pyarrow as pa
    import pyarrow.compute as pc

    from vmrules.evaluate.rows import EvalState, Evaluation, episode_targets, finish_episodes, series_keys
    from vmrules.sources.result import FetchError

    out = RulePlan(rule.name, window)

    def count(ev: Evaluation) -> None:
        for name, table in ev.routed.items():
            t = out.targets.setdefault(name, TargetPlan())
            t.rows += table.num_rows
            _add(t.by_severity, pc.value_counts(table.column("severity").cast("string")).to_pylist())

    try:
        state: EvalState | None = None
        for _batch, ev, state in evaluated(rule, sources[rule.name], window, targets, options, log):
            out.counts.add(ev.counts)
            out.counts.series = len(state.seen)       # each series once, however many batches it spans
            count(ev)
            alerts = ev.table.filter(ev.table.column("alert"))
            if alerts.num_rows:
                ts = alerts.column("timestamp").cast(pa.int64())
                low, high = pc.min(ts).as_py(), pc.max(ts).as_py()
                out.first_alert_ms = low if out.first_alert_ms is None else min(out.first_alert_ms, low)
                out.last_alert_ms = high if out.last_alert_ms is None else max(out.last_alert_ms, high)
                keys = series_keys(alerts).cast(pa.string())
                _add(out.alert_series, pc.value_counts(keys).to_pylist())
                pairs = pa.table({"s": alerts.column("severity").cast(pa.string()), "k": keys})
                for row in pairs.group_by(["s", "k"]).aggregate([]).to_pylist():
                    out.severity_series.setdefault(row["s"], set()).add(row["k"])
                _episodes(out, keys, alerts, rule.step_ms)
            _near(out, rule, ev.table)
        shaped = episode_targets(rule, targets)
        if state is not None and shaped:              # and the episodes still open at the window's end
            count(finish_episodes(rule, state, window.end_ms, window.first_ms if window.lookback_ms else None,
                                  targets, shaped))
    except FetchError as exc:
        out.status, out.error = "failed", scrub(f"datasource: {exc}")
    except Exception as exc:  # noqa: BLE001 - one rule's failure must never stop the others
        out.status, out.error = "failed", scrub(f"{type(exc).__name__}: {exc}")
    finally:
        if options.progress is not None:
            options.progress.rule_done()
    return out


def _near(out: RulePlan, rule: Rule, table: Any) -> None:
    """For the rule's last comparison threshold (`above`, `below`, ...): how close each series came, and how
    many of its rows were within 10 % of the threshold without alerting: the near misses a change of the
    number would turn into alerts."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from vmrules.evaluate.rows import series_keys

    last = next((t for t in reversed(rule.thresholds) if t.op in (">", ">=", "<", "<=") and t.value is not None),
                None)
    if last is None or table.num_rows == 0 or last.value is None:
        return
    n, above = last.value, last.op[0] == ">"
    out.near_threshold = f"{last.op} {n:g}"
    band = abs(n) * 0.1
    values = table.column("value")
    keys = series_keys(table).cast(pa.string())
    grouped = pa.table({"k": keys, "v": values}).group_by("k").aggregate([("v", "max" if above else "min")])
    inside = pc.and_(pc.greater_equal(values, n - band), pc.less(values, n)) if above else \
        pc.and_(pc.greater(values, n), pc.less_equal(values, n + band))
    inside = pc.and_(inside, pc.invert(table.column("alert")))
    close = dict(_counts(pc.value_counts(pc.filter(keys, inside)).to_pylist())) if band else {}
    for k, v in zip(grouped.column("k").to_pylist(), grouped.column(1).to_pylist(), strict=True):
        if v is None:
            continue
        held = out.near.get(k)
        best = v if held is None else (max(held[0], v) if above else min(held[0], v))
        out.near[k] = [best, (held[1] if held else 0) + close.get(k, 0)]


def _counts(counts: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(c["values"], int(c["counts"])) for c in counts if c["values"] is not None]


def _episodes(out: RulePlan, keys: Any, alerts: Any, step_ms: int) -> None:
    """Count the episodes (unbroken alerting stretches of a series at a severity) these alert rows begin;
    a stretch that goes on from the previous batch is not counted again."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    def whole(a: Any) -> Any:
        return a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a

    k = pc.dictionary_encode(whole(keys))          # integer codes, sorted and compared as numbers; the
    s = pc.dictionary_encode(whole(alerts.column("severity").cast(pa.string())))   # names only per stretch
    knames, snames = k.dictionary.to_pylist(), s.dictionary.to_pylist()
    kc, sc = k.indices.to_numpy(zero_copy_only=False), s.indices.to_numpy(zero_copy_only=False)
    ts = alerts.column("timestamp").cast(pa.int64()).to_numpy()
    order = np.lexsort((ts, sc, kc))
    kc, sc, ts = kc[order], sc[order], ts[order]
    first = np.ones(len(ts), bool)
    first[1:] = (kc[1:] != kc[:-1]) | (sc[1:] != sc[:-1])
    new = first.copy()
    new[1:] |= np.diff(ts) != step_ms
    for i in np.flatnonzero(first):                  # a stretch the last batch left open goes on
        if out.last_alert.get((knames[kc[i]], snames[sc[i]])) == ts[i] - step_ms:
            new[i] = False
    for i in np.r_[np.flatnonzero(first)[1:] - 1, len(ts) - 1] if len(ts) else ():
        out.last_alert[(knames[kc[i]], snames[sc[i]])] = int(ts[i])
    for code, n in enumerate(np.bincount(sc[new], minlength=len(snames)).tolist()):
        if n:
            out.severity_episodes[snames[code]] = out.severity_episodes.get(snames[code], 0) + n


def _add(into: dict[str, int], counts: list[dict[str, Any]]) -> None:
    for c in counts:
        if c["values"] is not None:
            into[c["values"]] = into.get(c["values"], 0) + int(c["counts"])


# -- the rule files at a git ref -----------------------------------------------------------------
@contextlib.contextmanager
def files_at(ref: str, paths: Sequence[str]) -> Iterator[list[str]]:
    """The rule files under `paths` as they are at git `ref`, in a temporary folder (paths that
    did not exist there are left out)."""
    top = _git(["rev-parse", "--show-toplevel"], os.getcwd()).strip()
    _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], top, f"{ref!r} is not a commit in {top}")
    with tempfile.TemporaryDirectory(prefix="vmrules-base-") as tmp:
        found = []
        for p in paths:
            rel = os.path.relpath(os.path.realpath(p), top)
            if rel.startswith(".."):
                raise UsageError(f"{p} is outside the git repository {top}")
            try:
                data = subprocess.run(["git", "archive", "--format=tar", ref, "--", rel], cwd=top,
                                      capture_output=True, check=True).stdout
            except subprocess.CalledProcessError:
                continue                         # not there at that ref: every rule in it is new
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                tar.extractall(tmp, filter=_files_only)
            found.append(os.path.join(tmp, rel))
        yield found


def _files_only(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
    """Regular files and folders of the archive; links are left out (a committed symlink may point anywhere,
    outside the archive), as is anything the data filter refuses."""
    if not (member.isfile() or member.isdir()):
        return None
    try:
        return tarfile.data_filter(member, path)
    except tarfile.FilterError:
        return None


def _git(args: list[str], cwd: str, failure: str | None = None) -> str:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout
    except FileNotFoundError:
        raise UsageError("--base needs git, which is not installed") from None
    except subprocess.CalledProcessError as exc:
        raise UsageError(failure or f"git {' '.join(args)}: {exc.stderr.strip()}") from None


def plan_base(ref: str, paths: Sequence[str], options: ApplyOptions) -> tuple[PlanReport, list[str]]:
    """The plan of the rule files at `ref` (empty when they are missing or invalid there, with a note)."""
    with files_at(ref, paths) as found:
        if not found:
            return PlanReport([]), [f"no rule files at {ref}: every rule is new"]
        try:
            ruleset = load_ruleset(found)
        except ConfigError as exc:
            return PlanReport([]), [f"the rule files at {ref} are invalid ({len(exc.problems)} problem(s)); "
                                    "compared with no rules"]
        known = {r.name for r in ruleset.rules}
        base_options = replace(options, rules=[n for n in options.rules if n in known])
        if options.rules and not base_options.rules:
            return PlanReport([]), []
        try:
            report = plan(ruleset, base_options)
        except UsageError as exc:           # a variable only the base reads, say
            return PlanReport([]), [f"the rule files at {ref} cannot be planned ({exc}); compared with no rules"]
        report.ruleset = ruleset
        return report, []


# -- differences -----------------------------------------------------------------------------------
@dataclass
class RuleDiff:
    """One rule at the base and now: new, removed, changed or unchanged."""

    name: str
    change: str
    base: RulePlan | None
    head: RulePlan | None


def diff(base: PlanReport, head: PlanReport) -> list[RuleDiff]:
    old = {r.name: r for r in base.rules}
    out = []
    for r in head.rules:
        b = old.pop(r.name, None)
        change = "new" if b is None else ("changed" if _numbers(b) != _numbers(r) else "unchanged")
        out.append(RuleDiff(r.name, change, b, r))
    out += [RuleDiff(name, "removed", b, None) for name, b in old.items()]
    return out


def _numbers(r: RulePlan) -> tuple[Any, ...]:
    return (r.status, r.counts.alerts, r.alerting_series, sorted(r.counts.by_severity.items()),
            sorted((k, len(v)) for k, v in r.severity_series.items()), sorted(r.severity_episodes.items()),
            sorted((n, t.rows) for n, t in r.targets.items()))


# -- output ----------------------------------------------------------------------------------------
def _severities(by: dict[str, int], counts: Counts) -> str:
    """Most severe first, as the rule's thresholds list them."""
    return ", ".join(f"{k} {v}" for k, v in counts.in_order(by).items())


def format_text(report: PlanReport) -> str:
    lines = []
    for r in report.rules:
        w = r.window
        lines.append(f"rule {r.name}  {format_time_ms(w.start_ms)} .. {format_time_ms(w.end_ms)}")
        if r.status != "ok":
            lines.append(f"  failed: {r.error}")
            continue
        c = r.counts
        lines.append(f"  {c.series} series, {c.samples} samples, {c.invalid} invalid, {c.filtered} filtered")
        sev = f" ({_severities(c.by_severity, c)})" if c.by_severity else ""
        lines.append(f"  alerts: {c.alerts} rows in {r.alerting_series} series{sev}")
        for name, t in r.targets.items():
            by = f" ({_severities(t.by_severity, c)})" if t.by_severity else ""
            lines.append(f"  -> {name}: {t.rows} rows{by}")
        top = Counter(r.alert_series).most_common(TOP_SERIES)
        if top:
            lines.append("  series with the most alert rows:")
            lines += [f"    {n:>6}  {key_text(k)}" for k, n in top]
        near = r.near_misses()[:TOP_SERIES]
        if near:
            lines.append(f"  near misses (never alerted): the closest value to {r.near_threshold} (past it: `for` "
                         "did not hold), the time within 10 % of it")
            lines += [f"    {v:>10g}  {format_duration_ms(rows * r.window.step_ms) if rows else '-':>8}  "
                      f"{key_text(k)}" for k, v, rows in near]
    lines.append("no target written")
    return "\n".join(lines)


def _delta(a: int, b: int) -> str:
    return f"{a} -> {b} ({b - a:+d})" if a != b else str(b)


def _rows(r: RulePlan | None, target: str) -> int:
    return r.targets[target].rows if r is not None and target in r.targets else 0


def format_diff(diffs: list[RuleDiff], ref: str, markdown: bool = False) -> str:
    rows = []
    for d in diffs:
        b, h = d.base, d.head
        alerts = _delta(b.counts.alerts if b else 0, h.counts.alerts if h else 0)
        series = _delta(b.alerting_series if b else 0, h.alerting_series if h else 0)
        names = list(dict.fromkeys([*(h.targets if h else {}), *(b.targets if b else {})]))
        per_target = "; ".join(f"{n} {_delta(_rows(b, n), _rows(h, n))}" for n in names)
        failed = next((x.error for x in (h, b) if x is not None and x.status != "ok"), "")
        severities = _severity_deltas(b, h)
        if severities:
            alerts += f" ({severities})"
        moved = _moved_series(b, h)
        if moved:
            series += f" ({moved})"
        rows.append((d.name, d.change, failed, alerts, series, _firing(b, h), per_target or "-"))
    if markdown:
        out = [f"#### vmrules plan: rules at {_md_code(ref)} and now", "",
               "| rule | change | alert rows | alerting series | time firing (first .. last) | rows per target |",
               "|---|---|---|---|---|---|"]
        out += ["| " + " | ".join([_md(n), _md(c) + (f" (failed: {_md_code(f)})" if f else ""), _md(a), _md(s),
                                   _md(w), _md(t)]) + " |" for n, c, f, a, s, w, t in rows]
        return "\n".join(out)
    out = [f"compared with the rules at {ref}:"]
    out += [f"  rule {n}: {c}{f' (failed: {f})' if f else ''}; alert rows {a}; alerting series {s}; time firing {w}; "
            f"rows {t}" for n, c, f, a, s, w, t in rows]
    return "\n".join(out)


def _firing(b: RulePlan | None, h: RulePlan | None) -> str:
    """Time firing (alert rows x step, summed over series), and the first and last firing, before -> now."""
    def one(r: RulePlan | None) -> str:
        if r is None or r.first_alert_ms is None or r.last_alert_ms is None:
            return "-"
        return (f"{format_duration_ms(r.counts.alerts * r.window.step_ms)} ({format_time_ms(r.first_alert_ms)} .. "
                f"{format_time_ms(r.last_alert_ms)})")
    before, now = one(b), one(h)
    return now if before == now else f"{before} -> {now}"


def _severity_deltas(b: RulePlan | None, h: RulePlan | None) -> str:
    """Alert rows (and alerting series) per severity, base -> head, most severe first; "" when none changed."""
    before, after = (x.counts.by_severity if x else {} for x in (b, h))
    series_before, series_after = ({k: len(v) for k, v in x.severity_series.items()} if x else {} for x in (b, h))
    episodes_before, episodes_after = (x.severity_episodes if x else {} for x in (b, h))
    if before == after and series_before == series_after and episodes_before == episodes_after:
        return ""
    either = h or b
    order = either.counts if either is not None else Counts()
    names = order.in_order({k: 0 for k in {**before, **after}})
    return "; ".join(f"{k} {_delta(before.get(k, 0), after.get(k, 0))} in "
                     f"{_delta(series_before.get(k, 0), series_after.get(k, 0))} series, "
                     f"{_delta(episodes_before.get(k, 0), episodes_after.get(k, 0))} episodes" for k in names)


def _moved_series(b: RulePlan | None, h: RulePlan | None, most: int = 5) -> str:
    """The series that started or stopped alerting (the first few of each)."""
    before, after = (set(x.alert_series) if x else set() for x in (b, h))
    parts = []
    for what, keys in (("started alerting", sorted(after - before)), ("stopped", sorted(before - after))):
        if keys:
            more = f" and {len(keys) - most} more" if len(keys) > most else ""
            parts.append(f"{what}: {', '.join(key_text(k) for k in keys[:most])}{more}")
    return "; ".join(parts)


def _md(text: str) -> str:
    """A Markdown table cell: one line, with the punctuation that makes links, images, HTML or tables escaped."""
    return re.sub(r"([\\`*\[\]<|~&@])", r"\\\1", " ".join(text.split()))


def _md_code(text: str) -> str:
    """Text from elsewhere (a server's error, a git ref) as an inline code span: shown as it is, never
    a link, image, mention or HTML; one line, and no `|` to break the table."""
    return "`" + " ".join(text.split()).replace("`", "'").replace("|", "\\|") + "`"


def as_json(report: PlanReport, diffs: list[RuleDiff] | None = None) -> str:
    doc: dict[str, Any] = {"rules": [{**{k: v for k, v in asdict(r).items() if k != "last_alert"},
                                      "severity_series": {k: len(v) for k, v in r.severity_series.items()}}
                                     for r in report.rules]}
    if diffs is not None:
        doc["diff"] = [_diff_doc(d) for d in diffs]
    return json.dumps(doc, indent=2, default=str)


def _diff_doc(d: RuleDiff) -> dict[str, Any]:
    """One rule's base and head numbers, and their differences per severity and target."""
    def side(r: RulePlan | None) -> dict[str, Any] | None:
        if r is None:
            return None
        return {"status": r.status, "error": r.error or None, "alert_rows": r.counts.alerts,
                "alerting_series": r.alerting_series, "by_severity": r.counts.by_severity,
                "series_by_severity": {k: len(v) for k, v in r.severity_series.items()},
                "episodes_by_severity": r.severity_episodes,
                "firing_ms": r.counts.alerts * r.window.step_ms,
                "first_alert": format_time_ms(r.first_alert_ms) if r.first_alert_ms is not None else None,
                "last_alert": format_time_ms(r.last_alert_ms) if r.last_alert_ms is not None else None,
                "rows": {n: t.rows for n, t in r.targets.items()}}

    b, h = side(d.base), side(d.head)
    sev = {k: (b or {}).get("by_severity", {}).get(k, 0) for k in {**(b or {}).get("by_severity", {}),
                                                                 **(h or {}).get("by_severity", {})}}
    before, after = (set(x.alert_series) if x else set() for x in (d.base, d.head))
    return {"rule": d.name, "change": d.change, "base": b, "head": h,
            "alert_rows_by_severity": {k: (h or {}).get("by_severity", {}).get(k, 0) - v for k, v in sev.items()},
            "started_alerting": sorted(key_text(k) for k in after - before),
            "stopped_alerting": sorted(key_text(k) for k in before - after)}
