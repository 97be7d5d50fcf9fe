"""`--report FILE.html`: one self-contained page with a chart per rule, thresholds and alerting stretches."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
from click.testing import CliRunner

from tests.conftest import file_rules
from tests.support.data import END_S
from vmrules.cli import main
from vmrules.render.html import Charts, _pieces

BODY = ("targets: {f: {type: csv, path: '{{ rule.name }}.csv'}}\n"
        "rules:\n"
        "  - {name: cpu, query: cpu_usage, range: 4h, description: 'CPU <busy> & hot',\n"
        "     thresholds: [{severity: critical, above: 95, for: 10m},\n"
        "                  {severity: warning, above: 80, clear: {below: 70}}],\n"
        "     route: [{to: f}]}\n"
        "  - {name: disk, query: disk_free, range: 4h, thresholds: [{below: 1.0e+9}], route: [{to: f}]}\n"
        "  - {name: nothing, query: no_such_metric, route: [{to: f}]}\n")


class Page(HTMLParser):
    """Collects tags (checking they nest), attributes and text."""

    VOID = {"meta", "line", "rect", "polyline", "br", "img", "link"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text())
    assert page.stack == []
    return page


def test_apply_report(tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    res = CliRunner().invoke(main, ["apply", str(file_rules(tmp_path, BODY)), "--output-dir", str(tmp_path / "o"),
                                    "--to", str(END_S), "-q", "--report", str(report)])
    assert res.exit_code == 0, res.output
    page = parse(report)
    raw = report.read_text()
    assert not re.search(r"(src|href)=['\"](https?:)?//", raw) and "<script" not in raw and "<link" not in raw
    sections = [a["id"] for t, a in page.tags if t == "section"]
    assert sections == ["rule-cpu", "rule-disk", "rule-nothing"]
    svgs = [a for t, a in page.tags if t == "svg"]
    assert [a["aria-label"] for a in svgs] == ["cpu", "disk"]          # no samples: no chart
    text = " ".join(page.text)
    assert "CPU <busy> & hot" in text and "no samples to draw" in text   # escaped, not markup
    thresholds = [a for t, a in page.tags if t == "line" and a.get("class") == "threshold"]
    assert len(thresholds) == 4                                         # cpu: 2 and a clear line, disk: 1
    assert "critical 95" in text and "warning 80" in text and "warning clears 70" in text and "alert 1G" in text
    alerting = [a for t, a in page.tags if t == "rect" and a.get("class") == "alerting"]
    assert alerting                                                     # cpu's spike is shaded
    lines = [a for t, a in page.tags if t == "polyline"]
    assert 2 <= len(lines) <= 12
    assert "6 of 12 series shown, alerting ones first" in text
    overview = [a for t, a in page.tags if t == "a" and a.get("href", "").startswith("#rule-")]
    assert len(overview) == 3


def test_plan_report(tmp_path: Path) -> None:
    report = tmp_path / "plan.html"
    res = CliRunner().invoke(main, ["plan", str(file_rules(tmp_path, BODY)), "--to", str(END_S), "--rule", "disk",
                                    "--report", str(report)])
    assert res.exit_code == 0, res.output
    page = parse(report)
    assert "vmrules plan" in " ".join(page.text)
    assert [a["aria-label"] for t, a in page.tags if t == "svg"] == ["disk"]
    assert not (tmp_path / "o").exists()


def test_charts_keep_alerting_series_first() -> None:
    charts = Charts(per_chart=2)

    def batch(series: list[str], alert: list[bool]) -> pa.Table:
        n = len(series)
        return pa.table({"metric": ["m"] * n, "labels": series, "timestamp": pa.array(range(n), pa.timestamp("ms")),
                         "value": [1.0] * n, "alert": alert})

    charts.add("r", batch(['{"i":"a"}', '{"i":"b"}'], [False, False]))
    charts.add("r", batch(['{"i":"c"}'], [True]))
    assert sorted(charts.rules["r"]) == ['m\x00{"i":"a"}', 'm\x00{"i":"c"}']


def test_long_series_are_thinned_and_broken_at_gaps() -> None:
    ts = np.arange(100_000, dtype=np.int64) * 60_000
    vals = np.sin(np.arange(100_000) / 100.0)
    vals[500] = np.nan
    pieces = _pieces(ts, vals, 60_000)
    assert sum(len(p[0]) for p in pieces) <= 2 * 720 * 2
    gap = np.r_[ts[:10], ts[20:30]]
    assert len(_pieces(gap, np.ones(20), 60_000)) == 2
