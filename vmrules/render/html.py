"""`--report FILE.html`: one self-contained page, per rule an SVG chart and the run's numbers.

While the rules run, `Charts` keeps a few series of each rule (alerting ones
first), every sample with its alert flag and severity; the page draws them
against the rule's threshold lines, each severity's stretches shaded in its
colour (unless that would shade most of the plot) and in a strip per series,
over a time axis with round ticks. No script, no
external asset: the file can be mailed or attached to a CI run.
"""

from __future__ import annotations

import html
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from vmrules.durations import format_duration_ms, format_time_ms
from vmrules.evaluate.rows import series_keys
from vmrules.model import Rule, key_text
from vmrules.units import format_value

SERIES_PER_CHART = 6
NEAR_MISSES = 5                  # series listed under a rule's near misses (`plan --report`)
WIDTH, PLOT_H, PAD_L, PAD_R, PAD_T = 720, 170, 56, 12, 12
COLORS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#7f7f7f")
SEVERITY_COLORS = ("#d62728", "#ff7f0e", "#bcbd22", "#e377c2")


@dataclass
class _Series:
    label: str
    ts: list[np.ndarray] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)
    alert: list[np.ndarray] = field(default_factory=list)
    severity: list[np.ndarray] = field(default_factory=list)     # per sample: the severity's name, or None
    alerting: bool = False


class Charts:
    """A few series per rule, taken from the evaluated batches (thread-safe; rules run in parallel)."""

    def __init__(self, per_chart: int = SERIES_PER_CHART):
        self.per_chart = per_chart
        self.rules: dict[str, dict[str, _Series]] = {}
        self._lock = threading.Lock()

    def add(self, rule: str, table: pa.Table) -> None:
        """Keep the rows of chosen series from one evaluated batch (the rule's row table)."""
        if not table.num_rows:
            return
        key = series_keys(table)
        codes = key.indices.to_numpy(zero_copy_only=False)
        names = key.dictionary.to_pylist()
        ts = table.column("timestamp").cast(pa.int64()).to_numpy()
        values = table.column("value").to_numpy()
        alert = table.column("alert").to_numpy(zero_copy_only=False).astype(bool)
        severity = _names(table.column("severity")) if "severity" in table.column_names \
            else np.full(len(ts), None, dtype=object)
        alerting = set(np.unique(codes[alert]).tolist())
        with self._lock:
            chosen = self.rules.setdefault(rule, {})
            for code in sorted(range(len(names)), key=lambda c: c not in alerting):
                name = names[code]
                s = chosen.get(name) or self._make_room(chosen, name, code in alerting)
                if s is None:
                    continue
                mine = codes == code
                s.ts.append(ts[mine])
                s.values.append(values[mine])
                s.alert.append(alert[mine])
                s.severity.append(severity[mine])
                s.alerting |= code in alerting

    def _make_room(self, chosen: dict[str, _Series], name: str, alerting: bool) -> _Series | None:
        if len(chosen) >= self.per_chart:
            quiet = [k for k, s in chosen.items() if not s.alerting]
            if not alerting or not quiet:
                return None
            del chosen[quiet[-1]]              # an alerting series is worth more on the chart
        chosen[name] = _Series(name)
        return chosen[name]


def _names(column: pa.ChunkedArray) -> np.ndarray:
    """A text column as an object array, its few distinct values converted once (None for null)."""
    import pyarrow.compute as pc

    text = column.cast(pa.string())
    coded = pc.dictionary_encode(text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text)
    names = np.asarray([*coded.dictionary.to_pylist(), None], dtype=object)
    return names[coded.indices.fill_null(len(names) - 1).to_numpy(zero_copy_only=False)]


# -- the page ----------------------------------------------------------------------------------
@dataclass
class RuleSummary:
    """What the page says about one rule besides its chart."""

    rule: Rule
    status: str
    error: str
    start_ms: int
    end_ms: int
    numbers: dict[str, Any]              # series, samples, invalid, filtered, alerts
    by_severity: dict[str, int]
    rows: dict[str, int]                 # per target
    near: list[tuple[str, float, int]] = field(default_factory=list)   # `plan`: series, closest value, rows near
    near_threshold: str = ""
    step_ms: int = 0


@dataclass
class Base:
    """The rules at a git ref and their chosen series (`plan --base --report`), drawn under the head's."""

    rules: dict[str, Rule]
    charts: Charts


def render(title: str, subtitle: str, summaries: Sequence[RuleSummary], charts: Charts,
           base: Base | None = None) -> str:
    """The whole page as one string."""
    out = [_HEAD.replace("{title}", html.escape(title)), f"<h1>{html.escape(title)}</h1>",
           f"<p class='sub'>{html.escape(subtitle)}</p>", _overview(summaries)]
    for s in summaries:
        then = (base.rules.get(s.rule.name), base.charts.rules.get(s.rule.name, {})) if base is not None else None
        out.append(_section(s, charts.rules.get(s.rule.name, {}), then))
    out.append("</body></html>\n")
    return "\n".join(out)


def _overview(summaries: Sequence[RuleSummary]) -> str:
    head = "<tr><th>rule</th><th>status</th><th>series</th><th>samples</th><th>invalid</th><th>alerts</th>" \
           "<th>by severity</th><th>rows per target</th></tr>"
    rows = []
    for s in summaries:
        n = s.numbers
        rows.append(f"<tr class='{_e(s.status)}'><td><a href='#rule-{_e(s.rule.name)}'>{_e(s.rule.name)}</a></td>"
                    f"<td>{_e(s.status)}</td><td>{n['series']}</td><td>{n['samples']}</td><td>{n['invalid']}</td>"
                    f"<td>{n['alerts']}</td><td>{_e(_pairs(s.by_severity))}</td><td>{_e(_pairs(s.rows))}</td></tr>")
    return f"<table class='overview'>{head}{''.join(rows)}</table>"


def _section(s: RuleSummary, series: dict[str, _Series],
             base: tuple[Rule | None, dict[str, _Series]] | None = None) -> str:
    r = s.rule
    parts = [f"<section id='rule-{_e(r.name)}'><h2>{_e(r.name)} <span class='{_e(s.status)}'>{_e(s.status)}</span>"
             "</h2>", f"<p class='query'><code>{_e(r.query)}</code></p>"]
    if r.description:
        parts.append(f"<p>{_e(r.description)}</p>")
    if s.error:
        parts.append(f"<p class='error'>{_e(s.error)}</p>")
    parts.append(f"<p class='window'>{_e(format_time_ms(s.start_ms))} .. {_e(format_time_ms(s.end_ms))}; "
                 + ", ".join(f"{k} {v}" for k, v in s.numbers.items()) + "</p>")
    parts.append(_chart(r, series, s.start_ms, s.end_ms, base))
    if base is not None:
        parts.append("<p class='shown'>under the plot: when any series shown alerted with the rules at the base "
                     "(<b>base</b>) and now (<b>now</b>); the base's thresholds dotted, in grey</p>")
    total = s.numbers["series"]
    if series:
        shown = f"{len(series)} of {total} series" if total > len(series) else f"all {len(series)} series"
        legend = "".join(f"<li><span class='swatch' style='background:{COLORS[i % len(COLORS)]}'></span>"
                         f"{_e(key_text(name))}{' (alerting)' if s_.alerting else ''}</li>"
                         for i, (name, s_) in enumerate(series.items()))
        parts.append(f"<p class='shown'>{shown} shown, alerting ones first</p><ul class='legend'>{legend}</ul>")
    if s.near:
        rows = "".join(f"<tr><td>{_e(key_text(k))}</td><td>{v:g}</td>"
                       f"<td>{_e(format_duration_ms(n * s.step_ms)) if n else '-'}</td></tr>" for k, v, n in s.near)
        parts.append(f"<table class='near'><caption>near misses: series that never alerted, closest to "
                     f"{_e(s.near_threshold)} first (past it: <code>for</code> did not hold)</caption>"
                     f"<tr><th>series</th><th>closest value</th><th>time within 10 %</th></tr>{rows}</table>")
    parts.append("</section>")
    return "\n".join(parts)


def _chart(rule: Rule, series: dict[str, _Series], start: int, end: int,
           base: tuple[Rule | None, dict[str, _Series]] | None = None) -> str:
    if not series:
        return "<p class='empty'>no samples to draw</p>"
    base_rule, base_series = base if base is not None else (None, {})
    data = {name: (np.concatenate(s.ts), np.concatenate(s.values), np.concatenate(s.alert))
            for name, s in series.items()}
    sev_of = {name: np.concatenate(s.severity) for name, s in series.items()}
    finite = [v[np.isfinite(v)] for _, v, _ in data.values()]
    values = np.concatenate(finite) if finite else np.empty(0)
    lines = [(t.severity, float(t.value)) for t in rule.thresholds if t.value is not None and math.isfinite(t.value)]
    base_lines = [(t.severity, float(t.value)) for t in (base_rule.thresholds if base_rule else ())
                  if t.value is not None and math.isfinite(t.value)]
    lines += [(f"{t.severity} clears", float(t.clear.value)) for t in rule.thresholds      # hysteresis
              if t.clear is not None and t.clear.value is not None and math.isfinite(t.clear.value)]
    lows = [float(values.min())] if len(values) else []
    highs = [float(values.max())] if len(values) else []
    marks = [v for _, v in lines + base_lines]
    lo, hi = min(lows + marks, default=0.0), max(highs + marks, default=1.0)
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    span = max(end - start, 1)
    bands = 12 if base is not None else 0         # under the plot: base's and now's alerting (plan --base),
    bottom = PAD_T + PLOT_H + bands               # a strip per series, then the time axis
    height = bottom + 4 * len(data) + 18

    def x(t: np.ndarray | float) -> Any:
        return PAD_L + (np.asarray(t, float) - start) / span * (WIDTH - PAD_L - PAD_R)

    def y(v: np.ndarray | float) -> Any:
        return PAD_T + (hi - np.asarray(v, float)) / (hi - lo) * PLOT_H

    svg = [f"<svg xmlns='http://www.w3.org/2000/svg' class='chart' width='{WIDTH}' height='{height}' "
           f"viewBox='0 0 {WIDTH} {height}' role='img' aria-label='{_e(rule.name)}'>{_SVG_STYLE}",
           f"<rect class='plot' x='{PAD_L}' y='{PAD_T}' width='{WIDTH - PAD_L - PAD_R}' height='{PLOT_H}'/>"]
    step = rule.step_ms
    severities = dict.fromkeys(t.severity for t in rule.thresholds)
    colors = {sev: SEVERITY_COLORS[i % len(SEVERITY_COLORS)] for i, sev in enumerate(severities)}
    spans = {sev: [(int(ts[a]), int(ts[b - 1]) + step) for name, (ts, _, alert) in data.items()
                   for a, b in _runs(alert & (sev_of[name] == sev))] for sev in severities}
    shaded = sum(t1 - t0 for t0, t1 in _union([sp for v in spans.values() for sp in v]))
    mostly = shaded > 0.6 * span                 # shading nearly all of the plot would hide it: strips only
    if not mostly:
        for sev in reversed(severities):         # each severity in its colour, the most severe drawn last
            for t0, t1 in _union(spans[sev]):
                x0, x1 = x(t0), x(min(t1, end))
                svg.append(f"<rect class='alerting' data-severity='{_e(sev)}' x='{x0:.1f}' y='{PAD_T}' "
                           f"width='{max(x1 - x0, 1.0):.1f}' height='{PLOT_H}' fill='{colors[sev]}'/>")
    for i, (name, (ts, _, alert)) in enumerate(data.items()):   # and which: a strip per series under the plot,
        row = bottom + 2 + 4 * i                                  # its colour at the left, its severities along
        svg.append(f"<rect class='strip-key' x='{PAD_L - 8}' y='{row}' width='6' height='3' "
                   f"fill='{COLORS[i % len(COLORS)]}'/>")
        for sev in severities:
            for a, b in _runs(alert & (sev_of[name] == sev)):
                x0, x1 = x(ts[a]), x(min(int(ts[b - 1]) + step, end))
                svg.append(f"<rect class='strip' data-severity='{_e(sev)}' x='{x0:.1f}' y='{row}' "
                           f"width='{max(x1 - x0, 1.0):.1f}' height='3' fill='{colors[sev]}'/>")
    if mostly:
        svg.append(f"<text class='axis note' x='{PAD_L + 4}' y='{PAD_T + 12}'>alerting most of the window: "
                   "see the strips below</text>")
    if base is not None:                         # the alerting stretches with the rules at the base, then now
        then = {n: (np.concatenate(s.ts), np.concatenate(s.alert), np.concatenate(s.severity))
                for n, s in base_series.items()}
        base_sevs = dict.fromkeys(t.severity for t in (base_rule.thresholds if base_rule else ()))
        base_spans = {sev: [(int(ts[a]), int(ts[b - 1]) + step) for ts, alert, sev_ in then.values()
                            for a, b in _runs(alert & (sev_ == sev))] for sev in base_sevs}
        for label, row, by_sev in (("base", PAD_T + PLOT_H + 2, base_spans), ("now", PAD_T + PLOT_H + 8, spans)):
            svg.append(f"<text class='axis band-label' x='{PAD_L - 4}' y='{row + 4}' text-anchor='end'>{label}</text>")
            for sev in reversed(list(by_sev)):
                color = colors.get(sev) or SEVERITY_COLORS[list(by_sev).index(sev) % len(SEVERITY_COLORS)]
                for t0, t1 in _union(by_sev[sev]):
                    x0, x1 = x(t0), x(min(t1, end))
                    svg.append(f"<rect class='band' data-band='{label}' data-severity='{_e(sev)}' x='{x0:.1f}' "
                               f"y='{row}' width='{max(x1 - x0, 1.0):.1f}' height='4' fill='{color}'/>")
        for severity, value in base_lines:
            yy = y(value)
            svg.append(f"<line class='threshold base' x1='{PAD_L}' x2='{WIDTH - PAD_R}' y1='{yy:.1f}' "
                       f"y2='{yy:.1f}' stroke='#888'/><text class='threshold-label' x='{PAD_L + 4}' "
                       f"y='{yy - 3:.1f}' fill='#888'>base: {_e(severity)} "
                       f"{_e(format_value(value, base_rule.unit if base_rule else None))}</text>")
    for severity, value in lines:
        yy = y(value)
        color = colors[severity.removesuffix(" clears")]
        svg.append(f"<line class='threshold' x1='{PAD_L}' x2='{WIDTH - PAD_R}' y1='{yy:.1f}' y2='{yy:.1f}' "
                   f"stroke='{color}'/><text class='threshold-label' x='{WIDTH - PAD_R - 4}' y='{yy - 3:.1f}' "
                   f"fill='{color}' text-anchor='end'>{_e(severity)} {_e(format_value(value, rule.unit))}</text>")
    for i, (ts, vals, _) in enumerate(data.values()):
        for piece in _pieces(ts, vals, step):
            pts = " ".join(f"{px:.1f},{py:.1f}" for px, py in zip(x(piece[0]), y(piece[1]), strict=True))
            svg.append(f"<polyline class='series' points='{pts}' stroke='{COLORS[i % len(COLORS)]}'/>")
    for v in (hi, (hi + lo) / 2, lo):
        svg.append(f"<text class='axis' x='{PAD_L - 4}' y='{y(v) + 4:.1f}' text-anchor='end'>"
                   f"{_e(format_value(v, rule.unit))}</text>")
    for t, label in _ticks(start, end):
        xx = x(t)
        anchor = "end" if xx > WIDTH - PAD_R - 20 else "start" if xx < PAD_L + 20 else "middle"   # kept inside
        svg.append(f"<line class='tick' x1='{xx:.1f}' x2='{xx:.1f}' y1='{PAD_T + PLOT_H}' "
                   f"y2='{PAD_T + PLOT_H + 3}'/><text class='axis tick-label' x='{xx:.1f}' y='{height - 4}' "
                   f"text-anchor='{anchor}'>{_e(label)}</text>")
    svg.append("</svg>")
    return "".join(svg)


TICK_STEPS_MS = [m * 60_000 for m in (1, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080)]


def _ticks(start: int, end: int, most: int = 8) -> list[tuple[int, str]]:
    """Round times between start and end (UTC), at most `most` of them: HH:MM, with the date at midnight
    or when ticks are days apart."""
    span = max(end - start, 1)
    step = next((s for s in TICK_STEPS_MS if span / s <= most), TICK_STEPS_MS[-1] * (1 + span // (most * 604_800_000)))
    first = -(-start // step) * step
    out = []
    for t in range(first, end + 1, step):
        text = format_time_ms(t)                 # 2026-11-01T00:00:00Z
        day, clock = text[5:10], text[11:16]
        out.append((t, f"{day} {clock}" if step >= 86_400_000 else (day if clock == "00:00" else clock)))
    return out


def _union(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or touching [start, end) spans merged."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index ranges where `flags` is true."""
    edges = np.diff(np.r_[0, flags.astype(np.int8), 0])
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def _pieces(ts: np.ndarray, vals: np.ndarray, step: int, max_points: int = 2 * WIDTH) -> list[tuple[Any, Any]]:
    """The series as unbroken polylines (a gap or a non-finite value breaks it), at most ~2 points per pixel."""
    order = np.argsort(ts, kind="stable")
    ts, vals = ts[order], vals[order]
    if len(ts) > max_points:                        # keep each bucket's min and max
        buckets = (np.arange(len(ts)) * (max_points // 2) // len(ts))
        keep = np.zeros(len(ts), bool)
        for b in np.unique(buckets):
            idx = np.flatnonzero(buckets == b)
            seg = vals[idx]
            if np.isfinite(seg).any():
                keep[idx[np.nanargmin(np.where(np.isfinite(seg), seg, np.nan))]] = True
                keep[idx[np.nanargmax(np.where(np.isfinite(seg), seg, np.nan))]] = True
        ts, vals = ts[keep], vals[keep]
        step = int(np.max(np.diff(ts))) if len(ts) > 1 else step
    ok = np.isfinite(vals)
    breaks = np.flatnonzero((np.diff(ts) > step) | ~ok[1:] | ~ok[:-1]) + 1
    out = []
    for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(ts)], strict=True):
        piece_ts, piece_v = ts[a:b], vals[a:b]
        fine = np.isfinite(piece_v)
        if fine.sum() >= 1:
            out.append((piece_ts[fine], piece_v[fine]))
    return out


def _pairs(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items()) or "-"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


_SVG_STYLE = ("<style>.plot{fill:#fafafa;stroke:#ddd}.alerting{fill-opacity:.15}.tick{stroke:#999}"
              ".threshold.base{stroke-dasharray:1 3}"
              ".series{fill:none;stroke-width:1.3}.threshold{stroke-dasharray:5 3;stroke-width:1}"
              "text{font-family:sans-serif;font-size:11px}.axis{fill:#666}</style>")

_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 760px; color: #222; }
h1 { font-size: 1.4em; margin-bottom: 0; } .sub { color: #666; margin-top: .2em; }
h2 { font-size: 1.15em; margin: 1.6em 0 .3em; border-bottom: 1px solid #ddd; }
table.overview { border-collapse: collapse; width: 100%; font-size: 13px; }
table.overview th, table.overview td { border-bottom: 1px solid #eee; padding: 3px 6px; text-align: left; }
.failed { color: #b00; } .ok { color: #070; } .error { color: #b00; white-space: pre-wrap; }
code { background: #f4f4f4; padding: 1px 4px; } .window, .shown { color: #555; font-size: 13px; }
svg.chart { display: block; margin: .5em 0; }
ul.legend { list-style: none; padding: 0; font-size: 12px; } .swatch { display: inline-block; width: 10px;
 height: 10px; margin-right: 6px; }
</style></head><body>"""


def _numbers(c: Any) -> dict[str, Any]:
    return {"series": c.series, "samples": c.samples, "invalid": c.invalid, "filtered": c.filtered,
            "alerts": c.alerts}


def write_report(path: str, title: str, subtitle: str, rules: Sequence[Any], ruleset: Any, charts: Charts,
                 base: Base | None = None) -> None:
    """Write the page for the rules of a run (run.RuleReport) or a plan (backtest.RulePlan), atomically."""
    from vmrules.delivery.atomic import atomic_path

    summaries = []
    for r in rules:
        rows = r.rows if hasattr(r, "rows") else {n: t.rows for n, t in r.targets.items()}
        near = r.near_misses()[:NEAR_MISSES] if hasattr(r, "near_misses") else []
        summaries.append(RuleSummary(ruleset.rule(r.name), r.status, r.error, r.window.start_ms, r.window.end_ms,
                                     _numbers(r.counts), dict(r.counts.by_severity), rows, near,
                                     getattr(r, "near_threshold", ""), r.window.step_ms))
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(render(title, subtitle, summaries, charts, base))
