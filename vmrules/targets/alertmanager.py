"""Target `alertmanager`: one alert per series and severity found in the window, to /api/v2/alerts.

Labels: the series labels (with the rule's static labels), `alertname` = rule,
`severity`, and the target's `labels`. Alertmanager refuses label names outside
[A-Za-z_][A-Za-z0-9_]* (and with them the whole batch), so such a name is sent
with `_` for each other character (`service.name` -> `service_name`), which the
-v log and the alert's `vmrules_renamed_labels` annotation say. `startsAt` is the first alerting sample;
`endsAt` is set when the series went on without that severity inside the window
(the first such sample), and left out while it is still alerting, so
Alertmanager keeps it firing until its resolve timeout.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vmrules import http
from vmrules.durations import format_time_ms
from vmrules.targets.service import Delivery, json_value, series_groups
from vmrules.templates import render

KIND = "service"
BATCH = 500
LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RENAMED = "vmrules_renamed_labels"


def alerts(d: Delivery) -> list[dict[str, Any]]:
    """The alerts of one rule's routed rows."""
    firing = d.table.filter(pc.fill_null(d.table["alert"], False)) if "alert" in d.table.column_names else d.table
    seen = {(m, lab): _ms(rows["timestamp"]) for m, lab, rows in series_groups(d.full)}
    opts = d.target.options
    out = []
    for metric, labels_json, rows in series_groups(firing):
        labels, renamed = label_names(json.loads(labels_json))
        if renamed:
            d.log(f"alertmanager: rule {d.rule}: labels sent as {renamed} (Alertmanager refuses such names)")
        ts_all = seen.get((metric, labels_json), np.empty(0, np.int64))
        severities = np.asarray(rows["severity"].cast(pa.string()).to_numpy(zero_copy_only=False))
        ts = _ms(rows["timestamp"])
        values = rows["value"].to_numpy()
        names, first_at = np.unique(severities, return_index=True)
        for sev in names[np.argsort(first_at)]:
            mask = severities == sev
            first, last = int(ts[mask].min()), int(ts[mask].max())
            alert_labels = {**labels, "alertname": d.rule, "severity": sev, **(opts.get("labels") or {})}
            ctx = {**d.context, "labels": alert_labels, "value": json_value(float(values[mask][-1]))}
            annotations = {k: render(v, ctx) for k, v in (opts.get("annotations") or {}).items()}
            if renamed:
                annotations[RENAMED] = renamed
            alert: dict[str, Any] = {"labels": alert_labels, "annotations": annotations,
                                     "startsAt": format_time_ms(first)}
            later = ts_all[ts_all > last]
            if len(later):
                alert["endsAt"] = format_time_ms(int(later[0]))
            out.append(alert)
    return out


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
    session, secrets = d.session()
    url = d.target.options["url"].rstrip("/") + "/api/v2/alerts"
    try:
        for i in range(0, len(items), BATCH):
            body = json.dumps(items[i:i + BATCH], ensure_ascii=False).encode()
            http.deliver(session, "POST", url, body, {"Content-Type": "application/json"}, d.timeout_s,
                         secrets, d.log)
    finally:
        session.close()
    return len(items)


def _ms(col: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(col.cast(pa.int64()).to_numpy())
