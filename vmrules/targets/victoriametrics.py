"""Target `victoriametrics`: rows written back as series through /api/v1/import (JSON lines).

The series keeps its labels (with the rule's static labels) plus the target's
`labels`; its name is the `metric` template (default: the rule name). A rule
then works like a recording rule over history.

VictoriaMetrics stores a sample sent twice twice (unless it runs with
`-dedup.minScrapeInterval`), so a rerun of a window would double
`count_over_time`: before importing, the samples already stored for these
series in the window are read back (`/api/v1/export` at `read_url`, default
`url`) and not sent again (`skip_existing: false` turns that off).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vmrules.errors import RuleError
from vmrules.net import http
from vmrules.targets.registry import TargetType
from vmrules.targets.service import Delivery, series_groups
from vmrules.templates import render

DEFAULT_BATCH = 10_000    # series per request
MAX_EXPORT_BYTES = 1 << 30   # what is read back of the stored samples, at most
_BARE = re.compile(rb"(?<=[\[,])([+-]?Inf|NaN)(?=[,\]])")     # export writes these bare: not JSON


def send(d: Delivery) -> int:
    """Import the rows not stored yet; returns the number of samples written."""
    opts = d.target.options
    name = render(opts["metric"], d.context) if "metric" in opts else d.rule
    extra = opts.get("labels") or {}
    series = []
    for metric_name, labels_json, rows in series_groups(d.table):
        labels = {k: v for k, v in {**json.loads(labels_json), **extra}.items() if v != ""}   # as VM stores them
        series.append((_key(labels), metric_name, labels, rows))
    _refuse_collisions(d, name, series)
    if not series:
        return 0
    session, secrets = d.session()
    try:
        stored = _stored(d, session, secrets, name, extra) if opts.get("skip_existing", True) else {}
        lines, sent = [], 0
        for key, _, labels, rows in series:
            ts = rows["timestamp"].cast(pa.int64()).to_numpy()
            if key in stored:
                rows = rows.filter(pa.array(~np.isin(ts, stored[key])))
            if rows.num_rows:
                metric = {"__name__": name, **labels}
                lines.append(f'{{"metric":{json.dumps(metric, ensure_ascii=False)},'
                             f'"values":[{_numbers(rows["value"])}],'
                             f'"timestamps":[{_joined(rows["timestamp"].cast(pa.int64()).cast(pa.string()))}]}}\n')
                sent += rows.num_rows
        url = opts["url"].rstrip("/") + "/api/v1/import"
        size = int(opts.get("batch_size", DEFAULT_BATCH))
        for i in range(0, len(lines), size):
            http.deliver(session, "POST", url, "".join(lines[i:i + size]).encode(), {}, d.timeout_s, secrets, d.log)
    finally:
        session.close()
    if sent < d.table.num_rows:
        d.log(f"target {d.target.name}: {d.table.num_rows - sent} samples were stored already, not sent again")
    return sent


def _key(labels: dict[str, str]) -> str:
    return json.dumps(labels, sort_keys=True, ensure_ascii=False)


def _refuse_collisions(d: Delivery, name: str, series: list[tuple[str, str, dict[str, str], pa.Table]]) -> None:
    """Series that differ only in `__name__` would be written as one (as Prometheus refuses such a rule)."""
    seen: dict[str, str] = {}
    for key, metric_name, labels, _ in series:
        if key in seen:
            text = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(labels.items()))
            raise RuleError(d.rule, f"target {d.target.name}: the series {seen[key]}{{{text}}} and "
                            f"{metric_name}{{{text}}} would both be written as {name}{{{text}}}; tell them apart in "
                            "the query (e.g. label_replace) or write them with rules of their own")
        seen[key] = metric_name


def _stored(d: Delivery, session: Any, secrets: http.Secrets, name: str,
            extra: dict[str, str]) -> dict[str, np.ndarray]:
    """The timestamps already stored per series (labels JSON) of `name` in the rows' time range."""
    ts = pc.min_max(d.table["timestamp"].cast(pa.int64()))
    base = (d.target.options.get("read_url") or d.target.options["url"]).rstrip("/")
    matchers = ",".join([f'__name__="{_escape(name)}"'] + [f'{k}="{_escape(v)}"' for k, v in extra.items()])
    query = urllib.parse.urlencode({"match[]": "{" + matchers + "}", "start": f"{ts['min'].as_py() / 1000:.3f}",
                                    "end": f"{ts['max'].as_py() / 1000:.3f}"})
    try:
        resp = http.deliver(session, "GET", f"{base}/api/v1/export?{query}", b"", {}, d.timeout_s, secrets, d.log,
                            read=MAX_EXPORT_BYTES)
    except http.HttpError as exc:
        raise http.HttpError(f"cannot read back what is stored, to skip samples already written ({exc}); set "
                             "read_url to a URL that serves /api/v1/export (vmselect for a cluster), or "
                             "skip_existing: false and run VictoriaMetrics with -dedup.minScrapeInterval") from None
    out: dict[str, np.ndarray] = {}
    for line in resp.content.splitlines():
        if not line.strip():
            continue
        doc = json.loads(_BARE.sub(b"0", line))
        labels = {k: v for k, v in doc["metric"].items() if k != "__name__"}
        key = _key(labels)
        have = np.asarray(doc["timestamps"], np.int64)
        out[key] = np.concatenate([out[key], have]) if key in out else have
    return out


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


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


TYPE = TargetType("victoriametrics", "service", send, description="VictoriaMetrics /api/v1/import (write-back)")
