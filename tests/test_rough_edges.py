"""What a new user hits on day two: tables that exist although a run had no rows for them, severities
listed most severe first, reports that say where they went, no SQLite side files left behind."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from click.testing import CliRunner

from tests.conftest import file_rules
from tests.support.data import END_S
from vmrules.cli import main

QUIET_RULE = """targets:
  db: {type: sqlite, path: alerts.db, table: "{{ rule.name }}"}
  up: {type: sqlite, path: alerts.db, table: upserted, mode: upsert}
rules:
  - name: fs_readonly
    query: cpu_usage
    range: 30m
    step: 1m
    thresholds: [{severity: critical, above: 1000}]
    route: [{when: alert, to: [db, up]}]
"""

ORDERED = """targets:
  t: {type: csv, path: t.csv}
rules:
  - name: cpu
    query: cpu_usage
    range: 4h
    step: 1m
    thresholds: [{severity: page, above: 90}, {severity: ticket, above: 40}]
    route: [{when: alert, to: t}]
"""


def test_a_run_without_rows_for_a_table_still_makes_it_and_its_index(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, QUIET_RULE)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(out), "--to", str(END_S)])
    assert res.exit_code == 0, res.output
    assert "alerts.db table fs_readonly  (sqlite, 0 rows, target db)" in res.output
    con = sqlite3.connect(out / "alerts.db")
    try:
        assert con.execute("SELECT count(*) FROM fs_readonly").fetchone() == (0,)      # no "no such table"
        assert con.execute("SELECT count(*) FROM upserted").fetchone() == (0,)
        indexes = [n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'index' "
                                             "AND tbl_name = 'upserted'")]
        assert indexes, "the upsert key's unique index"
    finally:
        con.close()


def test_severities_are_listed_most_severe_first(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, ORDERED)
    res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(tmp_path / "out"), "--to", str(END_S)])
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if x.startswith("cpu "))
    page, ticket = (int(line.split(f"{s} ")[1].split(",")[0].split(")")[0]) for s in ("page", "ticket"))
    assert ticket > page > 0 and line.index("page") < line.index("ticket")     # not by count
    plan = CliRunner().invoke(main, ["plan", str(folder), "--to", str(END_S)])
    assert plan.exit_code == 0, plan.output
    assert f"(page {page}, ticket {ticket})" in plan.output


def test_reports_say_where_they_went(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, ORDERED)
    report = tmp_path / "r.html"
    res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(tmp_path / "out"), "--to", str(END_S),
                                    "--report", str(report)])
    assert res.exit_code == 0 and f"vmrules: wrote the report {report}" in res.output and report.exists()
    quiet = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(tmp_path / "out"), "--to",
                                      str(END_S), "--report", str(report), "-q"])
    assert quiet.exit_code == 0 and quiet.output == ""
    plan = CliRunner().invoke(main, ["plan", str(folder), "--to", str(END_S), "--report", str(tmp_path / "p.html")])
    assert plan.exit_code == 0 and f"vmrules: wrote the report {tmp_path / 'p.html'}" in plan.output
    assert plan.output.rstrip().endswith("no target written")


def test_no_sqlite_side_files_stay_after_runs(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, ORDERED.replace("t: {type: csv, path: t.csv}",
                                                  "t: {type: sqlite, path: a.db, table: t, mode: upsert}"))
    out = tmp_path / "out"
    for to in (END_S - 3600, END_S - 1800, END_S):
        res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(out), "--to", str(to),
                                        "--incremental", "--lag", "0s", "-q"])
        assert res.exit_code == 0, res.output
        assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".vmrules")) == ["a.db"]


EMPTY = """targets:
  c: {type: csv, path: 'c/{{ run.from }}.csv'}
  p: {type: parquet, path: 'p/{{ run.from }}.parquet'}
  fixed: {type: csv, path: fixed.csv, skip_empty: true}
  always: {type: jsonl, path: 'always/{{ run.from }}.jsonl', skip_empty: false}
rules:
  - name: quiet
    query: cpu_usage
    range: 30m
    step: 1m
    valid: {max: 200}
    thresholds: [{severity: critical, above: 1000}]
    route: [{when: alert, to: [c, p, fixed, always]}]
"""


def test_empty_files_are_skipped_in_incremental_runs_and_written_in_plain_ones(tmp_path: Path) -> None:
    folder = file_rules(tmp_path, EMPTY)
    out = tmp_path / "inc"
    for to in (END_S - 3600, END_S - 1800, END_S):
        res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(out), "--to", str(to),
                                        "--incremental", "--lag", "0s"])
        assert res.exit_code == 0, res.output
        assert "(csv, skipped: no rows, target c)" in res.output
        assert "(parquet, skipped: no rows, target p)" in res.output
    assert not [f for d in ("c", "p") if (out / d).exists() for f in (out / d).iterdir()]     # parts gone too
    assert not (out / "fixed.csv").exists()
    assert len(list((out / "always").iterdir())) == 3              # skip_empty: false writes them all the same

    plain = tmp_path / "plain"
    (plain).mkdir()
    (plain / "fixed.csv").write_text("earlier\n")
    res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(plain), "--to", str(END_S)])
    assert res.exit_code == 0, res.output
    assert [p.read_text() for p in (plain / "c").iterdir()] == [
        '"rule","metric","labels","timestamp","value","severity","alert"\n']           # the header only
    assert len(list((plain / "p").iterdir())) == 1
    assert (plain / "fixed.csv").read_text() == "earlier\n" and "fixed.csv  (csv, skipped: no rows" in res.output


def test_python_api_test_results_have_a_name_and_the_report_types_are_public() -> None:
    import vmrules

    results = vmrules.run_tests(vmrules.load_ruleset([str(Path(__file__).parent / "cases" / "rules")]))[0]
    assert results and all(isinstance(r, vmrules.TestResult) and r.ok for r in results)
    assert "for_waits_until_held_long_enough" in {r.name for r in results}
    assert {"TestResult", "Coverage", "RuleReport", "Output", "RunReport", "RulePlan", "Counts", "Window"} <= set(
        vmrules.__all__)
    for name in vmrules.__all__:                   # each documented
        value = getattr(vmrules, name)
        assert name == "__version__" or (getattr(value, "__doc__", None) or "").strip(), name


def test_apply_options_take_times_as_the_command_line_does() -> None:
    from datetime import UTC, datetime

    import vmrules

    o = vmrules.ApplyOptions(start="2026-10-31T00:00:00Z", end=END_S)
    assert (o.from_ms, o.to_ms) == (1793404800000, END_S) and o.start is None and o.end is None
    o = vmrules.ApplyOptions(end=datetime(2026, 11, 1, tzinfo=UTC), since="6h")
    assert (o.from_ms, o.to_ms) == (END_S * 1000 - 6 * 3_600_000, END_S * 1000)
    o = vmrules.ApplyOptions(end="1793491200")
    assert o.to_ms == END_S * 1000
    from dataclasses import replace

    assert replace(o, to_ms=5).to_ms == 5                # made once: a copy with other times keeps them
