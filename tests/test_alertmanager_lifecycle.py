"""A real Alertmanager driven through consecutive windows (plain --from/--to, --incremental, --chunk): after
each run it holds the alerts that one run to the same end gives, whatever the windows were.

The series (one sample a minute over the last two hours, relative to now):
`starts` alerts from 30 minutes ago on; `edge` stops alerting exactly at a window's edge; `sev` goes from
warning to critical; `vanish` stops reporting while critical; `keep` is critical throughout; `calm` never is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support.servers import Alertmanager, FaultServer, Reply
from vmrules.cli import main

NOW = int(time.time()) // 60 * 60 - 60
T0 = NOW - 120 * 60                       # minute 0 of the data; minute 120 is NOW
EDGES = [30, 60, 90, 120]                 # window ends, in minutes from T0


def value(name: str, i: int) -> float | None:
    return {"starts": 50.0 if i < 90 else 95.0, "edge": 95.0 if i <= 60 else 50.0,
            "sev": 80.0 if i < 70 else 95.0, "vanish": 95.0 if i <= 75 else None,
            "keep": 95.0, "calm": 50.0}[name]


def seen(name: str, i: int) -> float | None:
    """What a range query sees at minute i: the last sample within 5 minutes (as Prometheus' lookback)."""
    for back in range(6):
        if i - back >= 0 and (v := value(name, i - back)) is not None:
            return v
    return None


def severity(v: float | None) -> str | None:
    return None if v is None else "critical" if v > 90 else "warning" if v > 70 else None


def active(end: int) -> set[tuple[str, str, str]]:
    """(instance, severity, startsAt) of the alerts firing at minute `end`: what one run to there gives."""
    out = set()
    for name in ("starts", "edge", "sev", "vanish", "keep", "calm"):
        sev = severity(seen(name, end))
        if sev is None:
            continue
        start = end
        while start > 0 and severity(seen(name, start - 1)) == sev:
            start -= 1
        out.add((name, sev, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T0 + start * 60))))
    return out


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    lines = []
    for name in ("starts", "edge", "sev", "vanish", "keep", "calm"):
        points = [(i, value(name, i)) for i in [*range(-120, -60), *range(0, 121)]]   # and history, for replays
        points = [(i, v) for i, v in points if v is not None]
        lines.append(json.dumps({"metric": {"__name__": "temp", "instance": name}, "values": [v for _, v in points],
                                 "timestamps": [(T0 + i * 60) * 1000 for i, _ in points]}))
    (tmp_path / "temp.jsonl").write_text("\n".join(lines) + "\n")
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "r.yaml").write_text(f"""version: 1
datasource: {{url: 'file:{tmp_path / "temp.jsonl"}'}}
targets:
  am: {{type: alertmanager, url: 'AM_URL', renew_within: 3h, annotations: {{summary: '{{{{ labels.zone }}}}'}}}}
rules:
  - name: Hot
    query: temp
    range: 30m
    thresholds: [{{severity: critical, above: 90}}, {{severity: warning, above: 70}}]
    route: [{{when: alert, to: am}}]
""")
    return folder


@pytest.fixture
def am(tmp_path: Path) -> Iterator[Alertmanager]:
    server = Alertmanager(str(tmp_path))
    yield server
    server.stop()


def apply(rules: Path, am: Alertmanager | str, *args: str) -> None:
    url = am if isinstance(am, str) else am.url
    folder = rules.parent / f"rules-{url.rsplit(':', 1)[-1]}"
    folder.mkdir(exist_ok=True)
    (folder / "r.yaml").write_text((rules / "r.yaml").read_text().replace("AM_URL", url))
    res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(rules.parent / "out"), *args])
    assert res.exit_code == 0, res.output


def held(am: Alertmanager, want: set[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    got: set[tuple[str, str, str]] = set()
    for _ in range(50):                              # Alertmanager takes what it is sent at once; bounded
        got = {(a["labels"]["instance"], a["labels"]["severity"], a["startsAt"].replace(".000", ""))
               for a in am.alerts() if a["status"]["state"] == "active"}
        if got == want:
            break
        time.sleep(0.1)
    return got


def test_plain_windows_one_after_another(rules: Path, am: Alertmanager) -> None:
    start = 0
    for end in EDGES:
        apply(rules, am, "--from", str(T0 + start * 60), "--to", str(T0 + end * 60))
        assert held(am, active(end)) == active(end), f"after the window ending at minute {end}"
        start = end + 1
    assert {(name, sev) for name, sev, _ in active(120)} == {("starts", "critical"), ("sev", "critical"),
                                                             ("keep", "critical")}   # edge ended, vanish vanished


def test_incremental_runs(rules: Path, am: Alertmanager) -> None:
    for end in EDGES:
        apply(rules, am, "--incremental", "--lag", "0s", "--to", str(T0 + end * 60))
        assert held(am, active(end)) == active(end), f"after the run to minute {end}"


def test_chunks(rules: Path, am: Alertmanager) -> None:
    apply(rules, am, "--from", str(T0), "--to", str(NOW), "--chunk", "30m")
    assert held(am, active(120)) == active(120)


def test_replaying_history_brings_nothing_back(rules: Path, am: Alertmanager) -> None:
    apply(rules, am, "--from", str(T0), "--to", str(NOW))
    assert held(am, active(120)) == active(120)
    apply(rules, am, "--from", str(T0 - 7200), "--to", str(T0 - 61 * 60))   # ended over 3h ago: history
    apply(rules, am, "--from", str(T0), "--to", str(T0 + 60 * 60))    # edge was firing then: sent again,
    assert held(am, active(120) | active(60)) == active(120) | active(60)   # as the window says
    apply(rules, am, "--from", str(T0 + 61 * 60), "--to", str(NOW))   # and the run to now sets it right
    assert held(am, active(120)) == active(120)


def test_payload(rules: Path) -> None:
    rec = FaultServer(lambda seen: Reply(200, b"ok"))
    try:
        apply(rules, rec.url, "--from", str(T0), "--to", str(NOW))
        sent = {(a["labels"]["instance"], a["labels"]["severity"]): a for s in rec.seen for a in json.loads(s.body)}
        assert set(sent) == {("starts", "critical"), ("edge", "critical"), ("sev", "warning"), ("sev", "critical"),
                             ("vanish", "critical"), ("keep", "critical")}
        at = lambda minute: time.strftime("%Y-%m-%dT%H:%M", time.gmtime(T0 + minute * 60))  # noqa: E731
        assert sent[("edge", "critical")]["endsAt"].startswith(at(61))
        assert sent[("vanish", "critical")]["endsAt"].startswith(at(81))   # last sample 75, seen until 80
        assert sent[("sev", "warning")]["endsAt"].startswith(at(70))
        keep = sent[("keep", "critical")]
        assert keep["labels"]["alertgroup"] == "r" and keep["labels"]["alertname"] == "Hot"
        assert keep["annotations"] == {"summary": ""}          # a label the series lacks reads as ""
        ends = time.mktime(time.strptime(keep["endsAt"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        assert abs(ends - time.time() - 3 * 3600) < 60         # firing: renewed `renew_within` ahead
    finally:
        rec.stop()


def test_an_annotation_that_fails_names_the_target_and_the_annotation(rules: Path, tmp_path: Path) -> None:
    text = (rules / "r.yaml").read_text().replace("summary: '{{ labels.zone }}'",
                                                  "summary: '{{ 100 // (value - 95) }}'")   # 95: division by zero
    (rules / "r.yaml").write_text(text)
    rec = FaultServer(lambda seen: Reply(200, b"ok"))
    try:
        folder = rules.parent / "rules-bad"
        folder.mkdir()
        (folder / "r.yaml").write_text(text.replace("AM_URL", rec.url))
        res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(tmp_path / "o"),
                                        "--from", str(T0), "--to", str(NOW)])
        assert res.exit_code == 1 and "error: rule Hot: target am: annotation summary:" in res.output
        assert rec.seen == []
    finally:
        rec.stop()


def test_an_alert_that_ends_and_fires_again_within_a_run_is_resolved_first(tmp_path: Path) -> None:
    """Minutes 105-107 below the threshold: a run to the end resolves the first episode, then fires the next."""
    lines = [json.dumps({"metric": {"__name__": "temp", "instance": "dip"},
                         "values": [50.0 if 105 <= i <= 107 else 95.0 for i in range(60, 121)],
                         "timestamps": [(T0 + i * 60) * 1000 for i in range(60, 121)]})]
    (tmp_path / "dip.jsonl").write_text("\n".join(lines) + "\n")
    am = Alertmanager(str(tmp_path))
    try:
        folder = tmp_path / "rules"
        folder.mkdir()
        (folder / "r.yaml").write_text(
            f"version: 1\ndatasource: {{url: 'file:{tmp_path / 'dip.jsonl'}'}}\n"
            f"targets: {{am: {{type: alertmanager, url: '{am.url}', renew_within: 3h}}}}\n"
            "rules: [{name: Hot, query: temp, thresholds: [{severity: critical, above: 90}], "
            "route: [{when: alert, to: am}]}]\n")
        for window in ((60, 103), (104, 120)):
            res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(tmp_path / "o"),
                                            "--from", str(T0 + window[0] * 60), "--to", str(T0 + window[1] * 60)])
            assert res.exit_code == 0, res.output
        want = {("dip", "critical", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T0 + 108 * 60)))}
        assert held(am, want) == want
    finally:
        am.stop()
