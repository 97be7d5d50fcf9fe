"""What a service target (webhook, alertmanager, victoriametrics, plugins) is given for one rule."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from vmrules.evaluate.rows import series_keys
from vmrules.model import Target
from vmrules.net import http
from vmrules.targets.text import timestamps


@dataclass
class Delivery:
    """One rule's rows for one service target, with what templates and keys need."""

    target: Target
    table: pa.Table                 # the rows routed to this target
    full: pa.Table                  # the same rows (kept for plugins written against earlier versions)
    context: dict[str, Any]         # template context: rule, run, target
    step_ms: int
    env: Mapping[str, str]
    log: Callable[[str], None]

    @property
    def rule(self) -> str:
        return str(self.context["rule"]["name"])

    def key(self, *parts: object) -> str:
        """A stable idempotency key for this rule, window, target and the given parts."""
        run = self.context["run"]
        text = json.dumps([self.rule, run["from"], run["to"], self.target.name, *parts])
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def session(self) -> tuple[Any, http.Secrets]:
        """A connection to the target's server with its headers expanded, and the secrets to scrub;
        HttpError when a header names a variable the allow-list refuses for this URL."""
        opts = self.target.options
        secrets = http.Secrets(self.env, opts["url"])
        return http.new_session(opts["url"], opts.get("headers") or {}, secrets, timeout_s=self.timeout_s), secrets

    @property
    def timeout_s(self) -> float:
        from vmrules.durations import parse_duration_ms
        return parse_duration_ms(self.target.options.get("timeout", "30s")) / 1000


def json_value(v: float) -> float | str:
    """JSON has no NaN or infinities: write them as the Prometheus API does."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return v


def row_dicts(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as plain dicts for templates and JSON bodies (timestamps as RFC 3339)."""
    if "timestamp" in table.column_names:
        table = table.set_column(table.column_names.index("timestamp"), "timestamp", timestamps(table["timestamp"]))
    rows = table.to_pylist()
    if "value" in table.column_names:
        for r in rows:
            r["value"] = json_value(r["value"])
    return rows


def series_groups(table: pa.Table) -> list[tuple[str, str, pa.Table]]:
    """(metric, labels JSON, rows in time order) per series, in first-seen order."""
    if table.num_rows == 0:
        return []
    encoded = series_keys(table)
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    out = []
    for part in np.split(order, bounds):
        metric, labels = encoded.dictionary[codes[part[0]]].as_py().split("\x00", 1)
        out.append((metric, labels, table.take(pa.array(part))))
    return out
