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
from vmrules.render.html import COLORS, SEVERITY_COLORS, Charts, _pieces, _ticks

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


def test_severities_in_their_colours_time_ticks_and_strips_when_most_of_the_plot_alerts(tmp_path: Path) -> None:
    body = ("targets: {f: {type: csv, path: '{{ rule.name }}.csv'}}\n"
            "rules:\n"
            "  - {name: cpu, query: cpu_usage, range: 4h, valid: {max: 100},\n"
            "     thresholds: [{severity: critical, above: 90}, {severity: warning, above: 75}], route: [{to: f}]}\n"
            "  - {name: always, query: disk_free, range: 4h, thresholds: [{severity: low, above: 0}],"
            " route: [{to: f}]}\n")
    report = tmp_path / "report.html"
    res = CliRunner().invoke(main, ["apply", str(file_rules(tmp_path, body)), "--output-dir", str(tmp_path / "o"),
                                    "--to", str(END_S), "-q", "--report", str(report)])
    assert res.exit_code == 0, res.output
    page = parse(report)
    rects = [a for t, a in page.tags if t == "rect"]
    shaded = {a["data-severity"]: a["fill"] for a in rects if a.get("class") == "alerting"}
    assert shaded == {"critical": SEVERITY_COLORS[0], "warning": SEVERITY_COLORS[1]}     # cpu: each in its colour
    strips = {(a["data-severity"], a["fill"]) for a in rects if a.get("class") == "strip"}
    assert {("critical", SEVERITY_COLORS[0]), ("warning", SEVERITY_COLORS[1]), ("low", SEVERITY_COLORS[0])} <= strips
    text = " ".join(page.text)
    assert text.count("alerting most of the window: see the strips below") == 1      # `always`: no shading
    labels = [t for t in page.text if re.fullmatch(r"\d\d:\d\d|\d\d-\d\d", t)]
    assert len(labels) >= 2 * 4 and "21:00" in labels and "11-01" in labels         # round hours, midnight's date
    assert _ticks(0, 7 * 86_400_000)[1] == (86_400_000, "01-02 00:00")               # a week: a tick a day
    assert len(_ticks(0, 3_600_000)) <= 8


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


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows (RGB or RGBA bytes) of an 8-bit, non-interlaced PNG, as Chromium writes it."""
    import struct
    import zlib

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + size]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6) and body[12] == 0
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + size
    raw, stride, rows, prev = zlib.decompress(idat), width * channels, [], bytearray(width * channels)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], prev[i - channels] if i >= channels else 0
            p = a + b - c
            pred = (a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else b if abs(p - b) <= abs(p - c)
                    else c)
            line[i] = (line[i] + (0, a, b, (a + b) // 2, pred)[kind]) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, [b"".join(r[i:i + 3] for i in range(0, stride, channels)) for r in rows]


def test_the_report_renders_in_a_headless_browser(tmp_path: Path) -> None:
    """Chromium (installed by make test) loads the page without errors, its DOM holds the charts' marks, and
    its screenshot shows the severities' colours and the series' lines."""
    import shutil
    import subprocess

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is missing: make test installs Debian's chromium"
    body = ("targets: {f: {type: csv, path: '{{ rule.name }}.csv'}}\n"
            "rules:\n"
            "  - {name: cpu, query: cpu_usage, range: 4h, valid: {max: 100},\n"
            "     thresholds: [{severity: critical, above: 90}, {severity: warning, above: 75}], route: [{to: f}]}\n")
    report = tmp_path / "report.html"
    res = CliRunner().invoke(main, ["apply", str(file_rules(tmp_path, body)), "--output-dir", str(tmp_path / "o"),
                                    "--to", str(END_S), "-q", "--report", str(report)])
    assert res.exit_code == 0, res.output
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=800,900"]
    dom = subprocess.run([*flags, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<svg") == 1 and "<polyline" in dom.stdout
    assert dom.stdout.count('class="alerting"') > 1 and dom.stdout.count('class="strip"') > 1
    assert not [x for x in dom.stderr.splitlines() if "CONSOLE" in x or "Uncaught" in x], dom.stderr[-2000:]
    shot = tmp_path / "page.png"
    run = subprocess.run([*flags, f"--screenshot={shot}", report.as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    width, height, rows = png_pixels(shot.read_bytes())
    assert (width, height) == (800, 900)
    colours = {bytes.fromhex(c[1:]) for c in (SEVERITY_COLORS[0], SEVERITY_COLORS[1], COLORS[0])}
    seen = {row[i:i + 3] for row in rows for i in range(0, len(row), 3)} & colours
    assert seen == colours          # critical's and warning's strips, and the first series' line
