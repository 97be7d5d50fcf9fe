"""Templated labels and annotations of Prometheus alerting rules, run as they are: the rendered labels are the
alert's identity (as in Prometheus: a change ends one alert and starts another), an empty one removes the label,
two series rendered into one alert at once fail the rule, `$externalLabels` come from the route entry, and an
alertmanager target sends the rule's own annotations rendered per alert."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support import read
from tests.support.servers import FaultServer, Reply
from vmrules.cli import main

T0 = 1_795_000_000 - 1_795_000_000 % 3600
LOAD = [1, 3, 3, 3, 5, 5, 5, 5, 1, 1]


def _export(path: Path, series: list[tuple[dict[str, str], list[float]]], start: int = T0) -> None:
    path.write_text("".join(json.dumps({"metric": labels, "values": values,
                                        "timestamps": [(start + 60 * i) * 1000 for i in range(len(values))]}) + "\n"
                            for labels, values in series))


@pytest.fixture
def receiver() -> Iterator[FaultServer]:
    s = FaultServer(lambda seen: Reply(200, b"ok"))
    yield s
    s.stop()


def _run(tmp: Path, rules: str, route: str, *args: str, data: Path | None = None) -> tuple[int, str, Path]:
    """`vmrules apply` of a vmrules file routing the rule file (both under `tmp`); the rows go to tmp/out."""
    tmp.mkdir(exist_ok=True)
    (tmp / "alerts").mkdir(exist_ok=True)
    (tmp / "alerts" / "rules.yml").write_text(rules)
    (tmp / "route").mkdir(exist_ok=True)
    (tmp / "route" / "route.yaml").write_text(
        f"version: 1\ndatasource: {{url: 'file:{data or tmp / 'data.jsonl'}'}}\n{route}")
    out = tmp / "out"
    res = CliRunner().invoke(main, ["apply", str(tmp / "route"), "--output-dir", str(out), "--from", str(T0),
                                    "--to", str(T0 + 600), *args])
    return res.exit_code, res.output, out


JSONL = "targets: {rows: {type: jsonl, path: '{{ rule.name }}.jsonl'}}\n"


def _rows(path: Path) -> list[tuple[int, str | None, dict[str, str]]]:
    """(minute from T0, severity, labels) of the rows written (read.rows gives seconds)."""
    return [((r["timestamp"] - T0) // 60, r["severity"], json.loads(r["labels"])) for r in read.rows(str(path))]


def test_a_severity_from_the_value_is_the_alert_identity(tmp_path: Path) -> None:
    _export(tmp_path / "data.jsonl", [({"__name__": "load", "instance": "a:1"}, LOAD)])
    rules = """groups:
  - name: g
    rules:
      - alert: HighLoad
        expr: load > 2
        for: 2m
        labels:
          severity: '{{ if gt $value 4.0 }}critical{{ else }}warning{{ end }}'
          host: '{{ $labels.instance | reReplaceAll ":.*" "" }}'
"""
    code, output, out = _run(tmp_path, rules, JSONL + "prometheus_rules:\n  - files: ['../alerts/*.yml']\n"
                             "    route: [{when: alert, to: rows}]\n")
    assert code == 0, output
    # Prometheus: warning pending at 1, 2, firing at 3 (2m); value 5 is another alert: pending 4, 5, firing 6, 7
    assert _rows(out / "HighLoad.jsonl") == [
        (3, "warning", {"host": "a", "instance": "a:1", "severity": "warning"}),
        (6, "critical", {"host": "a", "instance": "a:1", "severity": "critical"}),
        (7, "critical", {"host": "a", "instance": "a:1", "severity": "critical"})]


def test_chunks_and_incremental_runs_give_the_rows_of_one_run(tmp_path: Path) -> None:
    values = [float((i * 7) % 11) for i in range(600)]
    _export(tmp_path / "data.jsonl", [({"__name__": "load", "instance": f"h{i}:1"}, values[i:] + values[:i])
                                      for i in range(5)])
    rules = """groups:
  - name: g
    rules:
      - alert: Load
        expr: load > 4
        for: 3m
        keep_firing_for: 2m
        labels:
          severity: '{{ if gt $value 8.0 }}critical{{ else }}warning{{ end }}'
          host: '{{ $labels.instance | stripPort | toUpper }}'
"""
    route = JSONL + "prometheus_rules:\n  - files: ['../alerts/*.yml']\n    route: [{to: rows}]\n"
    data = tmp_path / "data.jsonl"
    code, output, whole = _run(tmp_path / "whole", rules, route, "--to", str(T0 + 36000), data=data)
    assert code == 0, output
    want = sorted(map(str, _rows(whole / "Load.jsonl")))
    assert {s for _, s, _ in _rows(whole / "Load.jsonl") if s} == {"critical", "warning"} and len(want) > 1000
    code, output, chunked = _run(tmp_path / "chunked", rules, route, "--to", str(T0 + 36000), "--chunk", "37m",
                                 data=data)
    assert code == 0, output
    assert sorted(map(str, _rows(chunked / "Load.jsonl"))) == want


def test_an_empty_label_removes_it_and_two_series_made_one_fail_the_rule(tmp_path: Path) -> None:
    _export(tmp_path / "data.jsonl", [({"__name__": "up", "instance": "a", "zone": "eu"}, [0, 0]),
                                      ({"__name__": "up", "instance": "b", "zone": ""}, [0, 0])])
    rules = """groups:
  - name: g
    rules:
      - alert: Down
        expr: up == 0
        labels:
          zone: '{{ if eq $labels.zone "eu" }}{{ else }}{{ $labels.zone }}{{ end }}'
          where: '{{ $externalLabels.cluster }}/{{ $labels.instance }}'
"""
    route = JSONL + ("prometheus_rules:\n  - files: ['../alerts/*.yml']\n    external_labels: {cluster: c1, "
                     "instance: never}\n    route: [{to: rows}]\n")
    code, output, out = _run(tmp_path, rules, route, "--to", str(T0 + 60))
    assert code == 0, output
    labels = {json.dumps(lab, sort_keys=True) for _, _, lab in _rows(out / "Down.jsonl")}
    assert labels == {json.dumps({"cluster": "c1", "instance": "a", "where": "c1/a"}, sort_keys=True),
                      json.dumps({"cluster": "c1", "instance": "b", "where": "c1/b"}, sort_keys=True)}
    merged = rules.replace("'{{ $externalLabels.cluster }}/{{ $labels.instance }}'", "'all'").replace(
        "          zone", "          instance: '{{ \"\" }}'\n          zone")
    code, output, _ = _run(tmp_path, merged, route, "--to", str(T0 + 60))
    assert code == 1 and "make two series one alert at the same time" in output, output


def test_templates_vmrules_cannot_render_are_problems_at_their_position(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text("""groups:
  - name: g
    rules:
      - alert: A
        expr: up == 0
        annotations:
          value: '{{ with query "up" }}{{ . | first | value }}{{ end }}'
          since: '{{ $activeAt }}'
""")
    res = CliRunner().invoke(main, ["validate", str(tmp_path)])
    assert res.exit_code == 1
    assert f"{tmp_path / 'rules.yml'}:7:27: error: annotations.value: template: function 'query' is not rendered" \
        in res.output, res.output
    assert ":8:22: error: annotations.since: template: $activeAt is not rendered by vmrules" in res.output


def test_alertmanager_gets_the_rules_own_annotations(tmp_path: Path, receiver: FaultServer) -> None:
    now = int(time.time()) // 60 * 60
    _export(tmp_path / "data.jsonl", [({"__name__": "temp", "instance": "hot:9100"}, [95.0] * 29 + [97.5])],
            start=now - 29 * 60)
    rules = """groups:
  - name: g
    rules:
      - alert: TempHigh
        expr: temp > 90
        labels: {severity: page, team: ops}
        annotations:
          summary: '{{ $labels.instance | stripPort }} at {{ $value | humanize }} ({{ $labels.team }})'
          both: from the rule
"""
    route = (f"targets:\n  am: {{type: alertmanager, url: '{receiver.url}', "
             "annotations: {both: 'from the target'}}\n"
             "prometheus_rules:\n  - files: ['../alerts/*.yml']\n    route: [{when: alert, to: am}]\n")
    (tmp_path / "alerts").mkdir()
    (tmp_path / "alerts" / "rules.yml").write_text(rules)
    (tmp_path / "route").mkdir()
    (tmp_path / "route" / "route.yaml").write_text(
        f"version: 1\ndatasource: {{url: 'file:{tmp_path / 'data.jsonl'}'}}\ndefaults: {{range: 30m}}\n{route}")
    res = CliRunner().invoke(main, ["apply", str(tmp_path / "route"), "--output-dir", str(tmp_path / "out"),
                                    "--to", str(now)])
    assert res.exit_code == 0, res.output
    (sent,) = [a for s in receiver.seen for a in json.loads(s.body)]
    # $labels are the series' labels (Prometheus renders with the query's labels, not the rule's)
    assert sent["annotations"] == {"summary": "hot at 97.5 ()", "both": "from the target"}
    assert sent["labels"]["team"] == "ops" and sent["labels"]["severity"] == "page"
