"""Target `webhook`: the rows as JSON (or a sandboxed template) to an HTTP endpoint, in batches.

Every request carries an `Idempotency-Key` that is the same for the same rule,
window, target and batch, so a receiver can recognise a retried delivery.
"""

from __future__ import annotations

import json

from vmrules.net import http
from vmrules.targets.registry import TargetType
from vmrules.targets.service import Delivery, row_dicts
from vmrules.templates import render

DEFAULT_BATCH = 1000
MAX_BODY_CHARS = 50_000_000


def send(d: Delivery) -> int:
    """POST (or PUT) the rows; returns the number of rows delivered. No rows, no request."""
    opts = d.target.options
    size = int(opts.get("batch_size", DEFAULT_BATCH))
    n = d.table.num_rows
    batches = -(-n // size)
    session, secrets = d.session()
    try:
        for b in range(batches):
            rows = row_dicts(d.table.slice(b * size, size))
            body = _body(d, rows, b, batches)
            headers = {"Idempotency-Key": d.key(b, batches)}
            if "content-type" not in {k.lower() for k in (opts.get("headers") or {})}:
                headers["Content-Type"] = "application/json"
            http.deliver(session, opts.get("method", "POST"), opts["url"], body.encode(), headers, d.timeout_s,
                         secrets, d.log)
    finally:
        session.close()
    return n


def _body(d: Delivery, rows: list[dict[str, object]], batch: int, batches: int) -> str:
    if "body" in d.target.options:
        ctx = {**d.context, "rows": rows, "count": len(rows), "batch": batch, "batches": batches}
        return render(d.target.options["body"], ctx, limit=MAX_BODY_CHARS)
    run = d.context["run"]
    doc = {"rule": d.rule, "target": d.target.name, "window": {"from": run["from"], "to": run["to"]},
           "run": run["id"], "batch": batch, "batches": batches, "count": len(rows), "rows": rows}
    return json.dumps(doc, ensure_ascii=False, allow_nan=False)


TYPE = TargetType("webhook", "service", send, description="HTTP endpoint receiving the rows as JSON")
