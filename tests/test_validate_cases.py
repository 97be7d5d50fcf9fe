"""Table-driven validation: each case is one bad file and every problem expected, exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vmrules.config.validate import validate_paths

CASES = yaml.safe_load((Path(__file__).parent / "cases" / "validate.yaml").read_text())


def problems_of(tmp_path: Path, files: dict[str, str | bytes], level: str = "error") -> list[str]:
    """Validate files written under tmp_path; problems (or warnings) as `name:line:col: message`."""
    for name, text in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
    result = validate_paths([str(tmp_path)])
    found = result.problems if level == "error" else result.warnings
    return [f"{Path(p.location.path).relative_to(tmp_path)}:{p.location.line}:{p.location.col}: {p.message}"
            for p in found]


def check(tmp_path: Path, text: str, problem: tuple[int, int] | None = None, message: str = "") -> None:
    """One-off case: the file has exactly one problem at `problem` whose message contains `message`."""
    got = problems_of(tmp_path, {"r.yaml": text})
    if problem is None:
        assert got == []
        return
    assert len(got) == 1, got
    assert got[0].startswith(f"r.yaml:{problem[0]}:{problem[1]}: "), got
    assert message in got[0], got


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(tmp_path: Path, case: dict) -> None:
    got = problems_of(tmp_path, {"r.yaml": case["yaml"]})
    assert got == [f"r.yaml:{p}" for p in case.get("problems", [])]
    if "warnings" in case:                 # the lint cases list every warning; the others list no lint
        warned = problems_of(tmp_path, {}, level="warning")
        assert warned == [f"r.yaml:{p}" for p in case["warnings"]]
        assert warned, "a lint case warns"
    else:
        assert got, "every case is a bad file"


def test_case_ids_are_unique() -> None:
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids))


def test_good_rule_sets_validate() -> None:
    root = Path(__file__).parent.parent
    for folder in ("rules", "examples/seed-layout"):
        result = validate_paths([str(root / folder)])
        assert result.problems == [], folder
        assert result.ruleset is not None and result.ruleset.rules


def test_duplicate_rule_across_files_points_at_second(tmp_path: Path) -> None:
    got = problems_of(tmp_path, {
        "a.yaml": "version: 1\nrules:\n  - name: cpu\n    query: up\n",
        "b.yaml": "version: 1\nrules:\n  - {name: mem, query: up}\n  - name: cpu\n    query: down\n",
    })
    assert got == [f"b.yaml:4:11: duplicate rule name 'cpu' (first defined at {tmp_path}/a.yaml:3:11)"]


def test_duplicate_target_across_files(tmp_path: Path) -> None:
    got = problems_of(tmp_path, {
        "a.yaml": "version: 1\ntargets:\n  out: {type: csv, path: a.csv}\n",
        "b.yaml": "version: 1\ntargets:\n  out: {type: json, path: b.json}\n",
    })
    assert got == [f"b.yaml:3:3: duplicate target name 'out' (first defined at {tmp_path}/a.yaml:3:3)"]


def test_targets_in_another_file_are_found(tmp_path: Path) -> None:
    assert problems_of(tmp_path, {
        "targets.yaml": "version: 1\ntargets:\n  out: {type: csv, path: '{{ rule.name }}.csv'}\n",
        "sub/rules.yml": "version: 1\nrules:\n  - {name: r, query: up, route: [{to: out}]}\n",
    }) == []


def test_every_problem_is_collected(tmp_path: Path) -> None:
    got = problems_of(tmp_path, {
        "a.yaml": "version: 1\nrules:\n  - name: r\n    query: up\n    where: 'value >'\n    step: 1 minute\n",
        "b.yaml": "version: 1\nrules:\n  - name: s\n",
        "c.yaml": "version: 1\nrules: [\n",
    })
    assert [g.split(": ")[0] for g in got] == ["a.yaml:5:20", "a.yaml:6:11", "b.yaml:3:5", "c.yaml:3:1"]


def test_non_utf8_is_refused_at_the_byte(tmp_path: Path) -> None:
    got = problems_of(tmp_path, {"r.yaml": b"version: 1\nrules:\n  - name: caf\xe9\n"})
    assert got == ["r.yaml:3:14: file is not valid UTF-8"]


def test_file_size_cap(tmp_path: Path) -> None:
    got = problems_of(tmp_path, {"r.yaml": "version: 1\n" + "# padding\n" * 500_000})
    assert got == ["r.yaml:1:1: file is larger than 4 MiB"]


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    import time
    lines = ["version: 1", "a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 10) + "]")
    started = time.monotonic()
    got = problems_of(tmp_path, {"r.yaml": "\n".join(lines) + "\n"})
    assert time.monotonic() - started < 2
    assert len(got) == 1 and "alias bomb" in got[0]


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    got = problems_of(tmp_path, {"r.yaml": "version: 1\nx: " + "[" * 200 + "]" * 200 + "\n"})
    assert len(got) == 1 and "nest" in got[0]


def test_yaml_booleans_in_keys_stay_strings(tmp_path: Path) -> None:
    check(tmp_path, "version: 1\ntargets:\n  on: {type: csv, path: x.csv}\n")


def test_check_helper_finds_column(tmp_path: Path) -> None:
    check(tmp_path, "version: 1\nrules:\n  - name: r\n    query: up\n    where: 'env == \"a\" or'\n", (5, 26),
          "expected a value")


def test_missing_path_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        validate_paths([str(tmp_path / "nope")])


def test_empty_folder_is_a_problem(tmp_path: Path) -> None:
    result = validate_paths([str(tmp_path)])
    assert [p.message for p in result.problems] == ["no rule files (*.yaml, *.yml, *.rules with groups:) found"]


def test_a_webhook_body_may_read_every_variable_a_run_gives_it(tmp_path: Path) -> None:
    check(tmp_path, "version: 1\ntargets:\n  w: {type: webhook, url: 'http://x', "
                    "body: '{{ batch + 1 }}/{{ batches }}: {{ count }} {{ run.id }} {{ target.name }}'}\n")


# -- each problem said once, across files -----------------------------------------------------------
TESTED_RULE = "version: 1\nrules:\n  - {name: cpu, query: up, route: [{to: out}]}\n" \
              "tests:\n  - rule: cpu\n    input: [{series: up, values: '1'}]\n    expect: {out: {count: 1}}\n"


def test_a_broken_target_in_another_file_is_not_unknown(tmp_path: Path) -> None:
    got = problems_of(tmp_path, {"targets.yaml": "version: 1\ntargets:\n  out: {type: csvv, path: out.csv}\n",
                                 "rules.yaml": TESTED_RULE})
    assert got == ["targets.yaml:3:15: targets.out.type: 'csvv' is not one of: csv, json, jsonl, parquet, sqlite, "
                   "postgres, webhook, alertmanager, victoriametrics; did you mean 'csv'?"]


def test_a_file_that_cannot_be_read_hides_no_problem_and_causes_none(tmp_path: Path) -> None:
    got = problems_of(tmp_path, {"a.yaml": "version: 1\ntargets:\n  out: {type: csv, path: 'out.csv\n",
                                 "b.yaml": "version: 1\nrules: [{name: cpu, query: up, step: 1 minute}]\n",
                                 "c.yaml": TESTED_RULE.replace("cpu", "mem")})
    assert got == ["a.yaml:4:1: YAML syntax: found unexpected end of stream",
                   "b.yaml:2:38: rules[0].step: '1 minute' is not a duration: use a number and a unit "
                   "(ms s m h d w), e.g. 30s, 5m, 1h30m"]


def test_a_test_of_a_rule_in_an_unreadable_file_is_not_told_it_is_missing(tmp_path: Path) -> None:
    got = problems_of(tmp_path, {"a.yaml": "version: 1\nrules:\n\t- {name: cpu, query: up}\n",
                                 "b.yaml": "version: 1\ntargets: {out: {type: csv, path: o.csv}}\n"
                                           "tests:\n  - rule: cpu\n    input: [{series: up, values: '1'}]\n"
                                           "    expect: {out: {count: 1}}\n"})
    assert got == ["a.yaml:3:1: YAML syntax: found character that cannot start any token"]


def test_a_duplicate_of_a_broken_target_is_a_duplicate(tmp_path: Path) -> None:
    got = problems_of(tmp_path, {"a.yaml": "version: 1\ntargets:\n  out: {type: csv}\n",
                                 "b.yaml": "version: 1\ntargets:\n  out: {type: csv, path: b.csv}\n",
                                 "c.yaml": TESTED_RULE})
    assert got == ["a.yaml:3:8: targets.out: missing required key 'path'",
                   f"b.yaml:3:3: duplicate target name 'out' (first defined at {tmp_path}/a.yaml:3:3)"]


def test_a_quoted_zero_is_a_time_like_zero(tmp_path: Path) -> None:
    from vmrules.commands.test import run_tests

    text = ("version: 1\ntargets: {out: {type: csv, path: out.csv}}\n"
            "rules:\n  - {name: r, query: up, thresholds: [{above: 1}], route: [{to: out}]}\n"
            "tests:\n  - rule: r\n    interval: 1m\n    input: [{series: up, values: '1 2'}]\n"
            "    expect: {out: [{time: ZERO, value: 1, severity: null}, {time: 1m, value: 2, severity: alert}]}\n")
    for zero in ("0", "'0'", '"0"', "0s"):
        (tmp_path / "r.yaml").write_text(text.replace("ZERO", zero))
        result = validate_paths([str(tmp_path)])
        assert result.problems == [] and result.ruleset is not None, zero
        results, _ = run_tests(result.ruleset)
        assert [r.ok for r in results] == [True], zero


def test_an_empty_file_hides_no_unknown_name(tmp_path: Path) -> None:
    got = problems_of(tmp_path, {"a.yaml": "", "b.yaml": TESTED_RULE.replace("to: out", "to: nowhere")})
    assert got == ["a.yaml:1:1: file is empty: a rule file starts with `version: 1`",       # and nothing more:
                   "b.yaml:3:41: rule 'cpu' routes to unknown target 'nowhere' (known: none defined)"]


def test_a_test_of_a_misrouted_rule_is_not_told_the_rule_does_not_route_there(tmp_path: Path) -> None:
    targets = "version: 1\ntargets:\n  out: {type: csv, path: out.csv}\n  other: {type: csv, path: o.csv}\n"
    assert problems_of(tmp_path, {"t.yaml": targets, "r.yaml": TESTED_RULE.replace("to: out", "to: uot")}) == [
        "r.yaml:3:41: rule 'cpu' routes to unknown target 'uot' (known: other, out)"]
    (tmp_path / "r.yaml").write_text(TESTED_RULE.replace("to: out", "to: other"))
    assert problems_of(tmp_path, {}) == [
        "r.yaml:7:14: test 'cpu #1': rule 'cpu' does not route to 'out' (it routes to: other)"]


@pytest.mark.parametrize("query, where", [
    ("quantile_over_time(0.95, http_latency_seconds[5m])", 'job == "api"'),       # the series, not the 0.95
    ('count_values("version", build_info) by (job)', 'version == "1.2"'),          # count_values adds its label
    ('up{env="pr" + "od"}', 'env == "prod"'),                                        # a value built from parts
    ("topk_avg(3, rate(x[5m]))", 'instance == "a"'),                                # MetricsQL's own keep labels
    ('zscore(x) by (job)', 'instance == "a"'),
    ('quantiles("phi", 0.5, 0.9, x) by (job)', 'phi == "0.5"'),
    ('WITH (e = "prod") up{env=e}', 'env == "prod"'),
])
def test_no_lint_where_the_query_does_return_the_label(tmp_path: Path, query: str, where: str) -> None:
    text = (f"version: 1\ntargets: {{o: {{type: csv, path: o.csv}}}}\nrules:\n  - name: r\n    query: '{query}'\n"
            f"    where: '{where}'\n    route: [{{to: o}}]\n")
    assert problems_of(tmp_path, {"r.yaml": text}) == []
    assert problems_of(tmp_path, {}, level="warning") == []


def test_merge_keys_are_read_as_yaml_reads_them(tmp_path: Path) -> None:
    """`<<: *base` and `<<: [*a, *b]`: the keys written win, then the first mapping that gives a key."""
    (tmp_path / "r.yaml").write_text("""version: 1
targets:
  out: &csv {type: csv, path: a.csv}
  more: {<<: *csv, path: b.csv}
rules:
  - &base
    name: a
    query: up
    step: 5m
    labels: &team {team: infra, tier: web}
    route: [{to: out}]
  - <<: [*base, {step: 1m, unit: bytes}]
    name: b
    labels: {<<: *team, tier: db}
""")
    result = validate_paths([str(tmp_path)])
    assert result.problems == [] and result.ruleset is not None
    b = result.ruleset.rule("b")
    assert (b.query, b.step_ms, b.unit, b.labels) == ("up", 300_000, "bytes", {"team": "infra", "tier": "db"})
    assert [r.to for r in b.routes] == [("out",)]
    assert result.ruleset.targets["more"].options == {"path": "b.csv"}


def test_merge_keys_cannot_bomb(tmp_path: Path) -> None:
    import time
    lines = ["version: 1", "x0: &m0 {k: 1}"]
    lines += [f"x{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 10)}]}}" for i in range(1, 9)]
    started = time.monotonic()
    got = problems_of(tmp_path, {"r.yaml": "\n".join(lines) + "\n"})
    assert time.monotonic() - started < 2
    assert len(got) == 1 and "alias bomb" in got[0]


def test_an_empty_value_is_what_it_always_was_except_where_null_means_something(tmp_path: Path) -> None:
    """`key:` with nothing after it is null in YAML: the empty string where a vmrules file takes a string (a
    description, a label), and null where null has a meaning (an expected row's severity: none)."""
    (tmp_path / "r.yaml").write_text("""version: 1
targets: {out: {type: csv, path: a.csv}}
rules:
  - name: r
    query: up
    description:
    labels:
      team:
    thresholds: [{above: 5}]
    route: [{to: out}]
tests:
  - rule: r
    input: [{series: 'up{a="b"}', values: '1 9'}]
    expect:
      out:
        - time: 0
          value: 1
          severity:
        - {time: 1m, value: 9, severity: alert}
""")
    result = validate_paths([str(tmp_path)])
    assert result.problems == [] and result.ruleset is not None
    rule = result.ruleset.rule("r")
    assert (rule.description, rule.labels) == ("", {"team": ""})
    assert result.ruleset.tests[0].expect["out"][0]["severity"] is None
    from click.testing import CliRunner

    from vmrules.cli import main

    res = CliRunner().invoke(main, ["test", str(tmp_path)])
    assert res.exit_code == 0, res.output
