"""Routed Prometheus rules keep the window principles: one whole run, chunked runs and incremental runs write the
same rows, over answers of many batches, for an alert with a templated severity, `for` and `keep_firing_for`, and
for a recording rule (its rows named after the record)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support.servers import VictoriaMetrics
from vmrules.cli import main
from vmrules.sources.stream import MatrixStream

T0 = 1_796_000_000 - 1_796_000_000 % 3600
HOURS = 12
SERIES = 60

RULES = """groups:
  - name: win
    interval: 1m
    rules:
      - alert: WinLoad
        expr: win_load > 40
        for: 3m
        keep_firing_for: 2m
        labels:
          severity: '{{ if gt $value 80.0 }}critical{{ else }}warning{{ end }}'
          host: '{{ $labels.instance | toUpper }}'
      - alert: WinAny
        expr: max by (zone) (win_load) > 95
      - record: win:load:avg_by_zone
        expr: avg by (zone) (win_load)
        labels: {source: recorded}
"""


def _load(i: int, t: int) -> float | None:
    if (t // 60 + i * 13) % 97 < 8:
        return None                                   # a gap longer than the lookback: `for` restarts
    return float((t // 60 * (7 + i % 5) + i * 13) % 100)


@pytest.fixture(scope="module")
def data(vm: VictoriaMetrics) -> None:
    lines = []
    for i in range(SERIES):
        points = [(t, v) for t in range(0, HOURS * 3600, 60) if (v := _load(i, t)) is not None]
        lines.append({"metric": {"__name__": "win_load", "instance": f"h{i}", "zone": f"z{i % 4}"},
                      "values": [v for _, v in points], "timestamps": [(T0 + t) * 1000 for t, _ in points]})
    vm.import_lines(lines)
    vm.wait_for("last_over_time(win_load[1h])", SERIES, T0 + 3600)


def _setup(tmp: Path, vm: VictoriaMetrics) -> Path:
    (tmp / "alerts").mkdir(parents=True)
    (tmp / "alerts" / "win.yml").write_text(RULES)
    (tmp / "route").mkdir()
    (tmp / "route" / "route.yaml").write_text(f"""version: 1
datasource: {{url: "{vm.url}"}}
defaults: {{range: {HOURS}h}}
targets:
  db: {{type: sqlite, path: rows.db, table: "{{{{ rule.name }}}}"}}
prometheus_rules:
  - files: ["../alerts/*.yml"]
    route: [{{to: db}}]
""")
    return tmp / "route"


def _rows(db: Path) -> dict[str, list[tuple[str, str, str, float, str | None]]]:
    con = sqlite3.connect(db)
    out = {}
    for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'vmrules_watermarks'"):
        out[table] = sorted(con.execute(f'SELECT metric, labels, timestamp, value, severity FROM "{table}"'))
    return out


def _apply(folder: Path, out: Path, *args: str) -> None:
    res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(out), "-q", *args])
    assert res.exit_code == 0, res.output


def test_whole_chunked_and_incremental_runs_write_the_same_rows(data: None, vm: VictoriaMetrics, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(MatrixStream.__init__, "__defaults__", (32 << 10,))     # answers of many batches
    monkeypatch.chdir(tmp_path)
    end = T0 + HOURS * 3600 - 60
    whole = _setup(tmp_path / "whole", vm)
    _apply(whole, tmp_path / "whole-out", "--from", str(T0), "--to", str(end))
    want = _rows(tmp_path / "whole-out" / "rows.db")
    assert set(want) == {"WinLoad", "WinAny", "win_load_avg_by_zone"}
    load = want["WinLoad"]
    assert {r[4] for r in load} == {None, "warning", "critical"}
    assert len({(r[1], r[2]) for r in load}) == len(load) > SERIES * HOURS * 60 * 0.9      # each sample once
    hosts = {json.loads(r[1])["host"] for r in load}
    assert hosts == {f"H{i}" for i in range(SERIES)}
    assert {r[0] for r in want["win_load_avg_by_zone"]} == {"win:load:avg_by_zone"}
    assert len(want["win_load_avg_by_zone"]) == 4 * HOURS * 60

    chunked = _setup(tmp_path / "chunked", vm)
    _apply(chunked, tmp_path / "chunked-out", "--from", str(T0), "--to", str(end), "--chunk", "97m")
    assert _rows(tmp_path / "chunked-out" / "rows.db") == want

    incremental = _setup(tmp_path / "incremental", vm)
    (incremental / "route.yaml").write_text((incremental / "route.yaml").read_text().replace(
        f"range: {HOURS}h", "range: 150m"))
    first = T0 + 150 * 60
    for to in (first, first + 3600, first + 3 * 3600 + 17 * 60, end):
        _apply(incremental, tmp_path / "incremental-out", "--incremental", "--lag", "0s", "--to", str(to))
    assert _rows(tmp_path / "incremental-out" / "rows.db") == want


def test_series_made_one_alert_across_batches_fail_the_rule(data: None, vm: VictoriaMetrics, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """In one batch, h1 and h57 made one alert at the same time fail the rule; in two batches as well (they were
    two evaluations of one alert, their rows twice)."""
    monkeypatch.setattr(MatrixStream.__init__, "__defaults__", (32 << 10,))
    monkeypatch.chdir(tmp_path)
    route = _setup(tmp_path / "merged", vm)
    (tmp_path / "merged" / "alerts" / "win.yml").write_text("""groups:
  - name: win
    rules:
      - alert: Merged
        expr: win_load > 40
        labels:
          instance: '{{ if eq $labels.instance "h1" "h57" }}X{{ else }}{{ $labels.instance }}{{ end }}'
""")
    res = CliRunner().invoke(main, ["apply", str(route), "--output-dir", str(tmp_path / "out"), "-q",
                                    "--from", str(T0), "--to", str(T0 + HOURS * 3600 - 60)])
    assert res.exit_code == 1 and "different batches of the answer" in res.output, res.output
