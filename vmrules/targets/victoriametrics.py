"""Target `victoriametrics`: rows written back as series through /api/v1/import (JSON lines).

The series keeps its labels (with the rule's static labels) plus the target's
`labels`; its name is the `metric` template (default: the rule name). A rule
then works like a recording rule over history.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc

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
        lines.append(f'{{"metric":{json.dumps(metric, ensure_ascii=False)},"values":[{_numbers(rows["value"])}],'
                     f'"timestamps":[{_joined(rows["timestamp"].cast(pa.int64()).cast(pa.string()))}]}}\n')
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


def _numbers(values: pa.ChunkedArray) -> str:
    """Values as import text with Arrow kernels; bare Inf and NaN, as VictoriaMetrics' export writes them."""
    text = pc.cast(values, pa.string())
    for pattern, word in (("^nan$", "NaN"), ("^inf$", "Inf"), ("^-inf$", "-Inf")):
        text = pc.replace_substring_regex(text, pattern, word)
    return _joined(text)


def _joined(text: pa.ChunkedArray) -> str:
    """One comma-joined string, without a Python object per value."""
    flat = text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
    one = pa.ListArray.from_arrays(pa.array([0, len(flat)], pa.int32()), flat)
    return str(pc.binary_join(one, ",")[0].as_py())
