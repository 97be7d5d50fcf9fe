"""A run's own numbers in the Prometheus text format, so that a cron job that stops, or a rule that keeps
failing, is noticed: written for node_exporter's textfile collector (`--metrics-file`) or pushed to
VictoriaMetrics' `/api/v1/import/prometheus` or a Pushgateway (`--push-metrics`)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

LAST_SUCCESS = "vmrules_rule_last_success_timestamp_seconds"

HELP = {
    "vmrules_run_timestamp_seconds": "When the run ended (unix seconds).",
    "vmrules_run_success": "1 when every rule of the run ran, else 0.",
    "vmrules_run_duration_seconds": "How long the run took.",
    "vmrules_rule_success": "1 when the rule ran in the last run, 0 when it failed.",
    LAST_SUCCESS: "When the rule last ran without error (unix seconds); kept in the file across failed runs.",
    "vmrules_rule_duration_seconds": "How long the rule took in the last run.",
    "vmrules_rule_window_end_timestamp_seconds": "The end of the window the rule evaluated in the last run.",
    "vmrules_rule_series": "Series the rule's query returned in the last run.",
    "vmrules_rule_samples": "Samples the rule evaluated in the last run.",
    "vmrules_rule_alert_rows": "Rows of the last run that alert, by severity.",
    "vmrules_rule_rows": "What each target of the rule received in the last run (rows, episodes, alerts or samples).",
}


def prometheus_text(report: Any, ended_s: float, duration_s: float, previous: Mapping[str, float]) -> str:
    """The run (a commands.apply.RunReport) as metrics; `previous` holds the last successes of an earlier
    file, kept for the rules that failed this time."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = {name: [] for name in HELP}

    def add(name: str, value: float, **labels: str) -> None:
        samples[name].append((labels, value))

    add("vmrules_run_timestamp_seconds", ended_s)
    add("vmrules_run_success", 1.0 if report.ok else 0.0)
    add("vmrules_run_duration_seconds", duration_s)
    for r in report.rules:
        ok = r.status == "ok"
        add("vmrules_rule_success", 1.0 if ok else 0.0, rule=r.name)
        if ok:
            add(LAST_SUCCESS, ended_s, rule=r.name)
        elif r.name in previous:
            add(LAST_SUCCESS, previous[r.name], rule=r.name)
        add("vmrules_rule_duration_seconds", r.seconds, rule=r.name)
        add("vmrules_rule_window_end_timestamp_seconds", r.window.end_ms / 1000, rule=r.name)
        for name in ("series", "samples"):        # not known when the server sent only candidates (pushdown)
            if (n := r.counts.known(name)) is not None:
                add(f"vmrules_rule_{name}", n, rule=r.name)
        for severity, n in r.counts.by_severity.items():
            add("vmrules_rule_alert_rows", n, rule=r.name, severity=str(severity))
        for target, n in sorted(r.rows.items()):
            add("vmrules_rule_rows", n, rule=r.name, target=target)
    ran = {r.name for r in report.rules}
    for name, at in sorted(previous.items()):      # rules this run left out (--rule, --shard) keep theirs
        if name not in ran:
            add(LAST_SUCCESS, at, rule=name)
    return "".join(_family(name, samples[name]) for name in HELP if samples[name])


def _family(name: str, samples: list[tuple[dict[str, str], float]]) -> str:
    lines = [f"# HELP {name} {HELP[name]}\n", f"# TYPE {name} gauge\n"]
    for labels, value in samples:
        inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{inner}}} {_number(value)}\n" if inner else f"{name} {_number(value)}\n")
    return "".join(lines)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 2 ** 53 else repr(float(value))


_SUCCESS_LINE = re.compile(rf'^{LAST_SUCCESS}\{{rule="([A-Za-z_][A-Za-z0-9_]*)"\}} ([0-9.e+]+)$')


def last_successes(text: str) -> dict[str, float]:
    """The last successes an earlier metrics file holds (lines this module wrote; anything else is ignored)."""
    out = {}
    for line in _lines(text):
        if m := _SUCCESS_LINE.match(line):
            try:
                out[m.group(1)] = float(m.group(2))
            except ValueError:
                continue
    return out


def _lines(text: str) -> Iterator[str]:
    yield from (line.strip() for line in text.splitlines())


def push(url: str, text: str, log: Any = None, timeout_s: float = 10.0) -> None:
    """POST the metrics to `url` (VictoriaMetrics' .../api/v1/import/prometheus, a Pushgateway's
    .../metrics/job/NAME); HttpError when it cannot be delivered within the retry policy."""
    from vmrules.net.http import Secrets, deliver, new_session

    secrets = Secrets({}, url)
    session = new_session(url, {}, secrets, timeout_s=timeout_s)
    try:
        deliver(session, "POST", url, text.encode(), {"Content-Type": "text/plain; version=0.0.4"}, timeout_s,
                secrets, log or (lambda _m: None))
    finally:
        session.close()
