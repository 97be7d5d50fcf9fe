"""Target `alertmanager`: the rule's alert episodes as Alertmanager alerts, kept current across runs.

An alert is a series at a severity. Its labels: the series labels (with the
rule's static labels), `alertname` (the rule), `alertgroup` (the rule file's
name, where vmalert puts the group's), `severity`, and the target's `labels`.
Alertmanager refuses label names outside [A-Za-z_][A-Za-z0-9_]* (and with them
the whole batch), so such a name is sent with `_` for each other character
(`service.name` -> `service_name`), which the -v log and the alert's
`vmrules_renamed_labels` annotation say.

Each run sends, per alert, its latest episode, if it is current:
- still open at the window's end: firing, `startsAt` its start, `endsAt` now +
  `renew_within` (default 20m): the next run renews it, as vmalert re-sends a
  firing alert with endsAt 4 evaluation intervals ahead; when no run comes,
  Alertmanager resolves it then;
- ended at most `renew_within` ago: resolved, `endsAt` its end (the first step
  without the severity; one step after the last sample of a vanished series).
Anything older is history and is not sent: a replay of an old window never
brings back an alert that a later run resolved. So what Alertmanager holds
after any sequence of runs is what it holds after one run to the same end.
Series whose alert labels would be the same (they differ only in `__name__`)
fail the rule, as Prometheus and vmalert refuse them. A Prometheus alerting
rule's own annotations (Go templates) are rendered per alert, then the
target's `annotations` (Jinja2) are added, a name in both taking the target's.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.parse
from typing import Any

from vmrules.durations import format_duration_ms, format_time_ms, parse_duration_ms, parse_time_ms
from vmrules.errors import RuleError
from vmrules.net import http
from vmrules.targets.registry import TargetType
from vmrules.targets.service import Delivery, json_value
from vmrules.templates import TemplateError, render

BATCH = 500
DEFAULT_RENEW = "20m"
LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RENAMED = "vmrules_renamed_labels"


class _Labels(dict[str, str]):
    """Labels as annotation templates see them: one a series lacks reads as "" (as in Prometheus)."""

    def __missing__(self, key: str) -> str:
        return ""


def alerts(d: Delivery, now_ms: int | None = None) -> list[dict[str, Any]]:
    """The current alerts of one rule's episodes (d.table holds episodes)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    renew = parse_duration_ms(str(d.target.options.get("renew_within", DEFAULT_RENEW)))
    if parse_time_ms(d.context["run"]["to"], now_ms) < now_ms - renew:
        d.log(f"target {d.target.name}: the window ended more than {format_duration_ms(renew)} ago: history, "
              "not sent to Alertmanager")
        return []
    latest: dict[tuple[str, bool], tuple[dict[str, Any], dict[str, str], str]] = {}   # (alert, open): episode
    owner: dict[str, tuple[str, str]] = {}
    for ep in d.table.to_pylist():
        labels, renamed = label_names(json.loads(ep["labels"]))
        alert_labels = {**labels, "alertname": d.rule, "alertgroup": _group(d), "severity": ep["severity"],
                        **(d.target.options.get("labels") or {})}
        key = json.dumps(alert_labels, sort_keys=True)
        first = owner.setdefault(key, (ep["metric"], ep["labels"]))
        if first != (ep["metric"], ep["labels"]):
            raise RuleError(d.rule, f"target {d.target.name}: the series {first[0]}{first[1]} and "
                            f"{ep['metric']}{ep['labels']} have the same labels once __name__ is left out; "
                            "Alertmanager would keep only one of their alerts (tell them apart in the query)")
        slot = (key, ep["end"] is None)
        if slot not in latest or ep["start"] > latest[slot][0]["start"]:
            latest[slot] = (ep, alert_labels, renamed)
    # the ended ones first: an alert that ended and fired again is resolved before its new episode comes
    ordered = sorted(latest.items(), key=lambda item: item[0][1])
    return [a for _, (ep, labels, renamed) in ordered if (a := _alert(d, ep, labels, renamed, now_ms, renew))]


def _alert(d: Delivery, ep: dict[str, Any], labels: dict[str, str], renamed: str, now_ms: int,
           renew: int) -> dict[str, Any] | None:
    end = None if ep["end"] is None else int(ep["end"].timestamp() * 1000)
    if end is not None and end < now_ms - renew:
        return None                                   # ended long ago: Alertmanager has it resolved, or never saw it
    ctx = {**d.context, "labels": _Labels(labels), "value": json_value(float(ep["last_value"])),
           "peak": json_value(float(ep["peak"]))}
    annotations = _go_annotations(d, ep, labels)
    for name, text in (d.target.options.get("annotations") or {}).items():
        try:
            annotations[name] = render(text, ctx)
        except TemplateError as exc:
            raise RuleError(d.rule, f"target {d.target.name}: annotation {name}: {exc}") from None
    if renamed:
        annotations[RENAMED] = renamed
    return {"labels": labels, "annotations": annotations,
            "startsAt": format_time_ms(int(ep["start"].timestamp() * 1000)),
            "endsAt": format_time_ms(end if end is not None else now_ms + renew),
            "generatorURL": _generator_url(d)}


def _go_annotations(d: Delivery, ep: dict[str, Any], labels: dict[str, str]) -> dict[str, str]:
    """A Prometheus alert's own annotations, rendered as Prometheus renders them: `$labels` the series' labels
    (with `__name__`, without those the rule sets), `$value` the episode's last value."""
    rule = d.context["rule"]
    if not rule.get("go_annotations"):
        return {}
    from vmrules import gorender

    series = {k: v for k, v in json.loads(ep["labels"]).items() if k not in rule.get("own_labels", ())}
    if ep["metric"]:
        series["__name__"] = ep["metric"]
    data = gorender.alert_data({k: v if isinstance(v, str) else json.dumps(v) for k, v in series.items()},
                               float(ep["last_value"]), rule.get("external_labels"), "", str(rule.get("query", "")))
    out = {}
    for name, text in rule["go_annotations"].items():
        try:
            out[name] = gorender.parse(text).render(data)
        except gorender.GoTemplateError as exc:
            raise RuleError(d.rule, f"annotation {name}: template: {exc.message} (labels {labels})") from None
    return out


def _group(d: Delivery) -> str:
    path = str(d.context["rule"].get("file") or "")
    return os.path.splitext(os.path.basename(path))[0] or d.rule


def _generator_url(d: Delivery) -> str:
    """Where the alert comes from: `generator_url` (a template), else the query in the datasource's graph page."""
    opts = d.target.options
    if "generator_url" in opts:
        return render(opts["generator_url"], d.context)
    base = str(d.context["rule"].get("datasource") or "")
    if not base.startswith(("http://", "https://")):
        return ""
    return f"{base.rstrip('/')}/graph?" + urllib.parse.urlencode({"g0.expr": d.context["rule"]["query"]})


def label_names(labels: dict[str, Any]) -> tuple[dict[str, str], str]:
    """The labels with names Alertmanager accepts (values as text), and a note of those renamed ("" if none)."""
    out: dict[str, str] = {}
    renamed = []
    for name, value in labels.items():
        if not LABEL_NAME.fullmatch(name):
            new = re.sub(r"[^A-Za-z0-9_]", "_", name)
            new = new if LABEL_NAME.fullmatch(new) else "_" + new
            while new in labels or new in out:
                new += "_"
            renamed.append(f"{name} -> {new}")
            name = new
        out[name] = value if isinstance(value, str) else json.dumps(value)
    return out, ", ".join(renamed)


def send(d: Delivery) -> int:
    """Post the alerts in batches; returns the number of alerts sent."""
    items = alerts(d)
    if not items:
        return 0
    for a in items:
        if RENAMED in a["annotations"]:
            d.log(f"alertmanager: rule {d.rule}: labels sent as {a['annotations'][RENAMED]} "
                  "(Alertmanager refuses such names)")
    session, secrets = d.session()
    url = d.target.options["url"].rstrip("/") + "/api/v2/alerts"
    now = int(time.time() * 1000)
    ended = [parse_time_ms(a["endsAt"], now) <= now for a in items]
    try:        # resolves in requests of their own, before the firing ones (Alertmanager merges by labels)
        for part in ([a for a, e in zip(items, ended, strict=True) if e],
                     [a for a, e in zip(items, ended, strict=True) if not e]):
            for i in range(0, len(part), BATCH):
                body = json.dumps(part[i:i + BATCH], ensure_ascii=False).encode()
                http.deliver(session, "POST", url, body, {"Content-Type": "application/json"}, d.timeout_s,
                             secrets, d.log)
    finally:
        session.close()
    return len(items)


TYPE = TargetType("alertmanager", "service", send, description="Alertmanager /api/v2/alerts")
