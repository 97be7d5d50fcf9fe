"""Target `victoriametrics`: rows written back as series through /api/v1/import (JSON lines).

The series keeps its labels (with the rule's static labels) plus the target's
`labels`; its name is the `metric` template (default: the rule name). A rule
then works like a recording rule over history.
"""

from __future__ import annotations

import json
import math

from vmrules import http
from vmrules.targets.service import Delivery, series_groups
from vmrules.templates import render

KIND = "service"
DEFAULT_BATCH = 10_000    # series per request


def send(d: Delivery) -> int:
    """Import the rows; returns the number of samples written."""
    opts = d.target.options
    name = render(opts["metric"], d.context) if "metric" in opts else d.rule
    extra = opts.get("labels") or {}
    lines = []
    for _, labels_json, rows in series_groups(d.table):
        metric = {"__name__": name, **json.loads(labels_json), **extra}
        ts = rows["timestamp"].cast("int64").to_pylist()
        values = [_number(v) for v in rows["value"].to_pylist()]
        lines.append(f'{{"metric":{json.dumps(metric, ensure_ascii=False)},"values":[{",".join(values)}],'
                     f'"timestamps":{json.dumps(ts)}}}\n')
    if not lines:
        return 0
    session, secrets = d.session()
    url = opts["url"].rstrip("/") + "/api/v1/import"
    size = int(opts.get("batch_size", DEFAULT_BATCH))
    try:
        for i in range(0, len(lines), size):
            http.deliver(session, "POST", url, "".join(lines[i:i + size]).encode(), {}, d.timeout_s, secrets, d.log)
    finally:
        session.close()
    return d.table.num_rows


def _number(v: float) -> str:
    """VictoriaMetrics' import reads bare Inf and NaN, as its export writes them."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Inf" if v > 0 else "-Inf"
    return repr(v)
