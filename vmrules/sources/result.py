"""What a fetch returns: series labels (few) and samples as flat numpy arrays (many)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vmrules.errors import VmrulesError

if TYPE_CHECKING:  # numpy is imported when samples are made, not when the module is
    import numpy as np


class FetchError(VmrulesError):
    """A query could not be answered; the message says what the server said."""


@dataclass
class QueryResult:
    """Samples of many series, sorted by (series, timestamp).

    `labels[i]` holds the labels of series i (with `__name__` when present);
    `series_id`, `ts_ms` and `values` have one entry per sample.
    """

    labels: list[dict[str, str]]
    series_id: np.ndarray
    ts_ms: np.ndarray
    values: np.ndarray
    requests: int = 0
    bytes_read: int = 0
    request_start: bool = False     # the first batch of a request's answer (series are unique within one)

    @property
    def samples(self) -> int:
        return int(len(self.values))

    @classmethod
    def empty(cls) -> QueryResult:
        import numpy as np

        return cls([], np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.float64))


def series_labels(metric: Any) -> dict[str, str]:
    """A series' `metric` as labels; FetchError naming the label when a value is not a string.

    Every parse (fast, fallback, `file:`) goes through here, so they refuse the same answers alike.
    """
    if not isinstance(metric, dict):
        raise FetchError(f"a series' metric is {json.dumps(metric)[:80]}, not an object of labels")
    for name, value in metric.items():
        if type(value) is not str:
            raise FetchError(f"label {name!r} has the value {json.dumps(value)[:80]}, not a string")
    return metric


def label_key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def check_unique(labels: Sequence[dict[str, str]]) -> None:
    """Duplicate label sets in one answer make rows ambiguous: refuse them."""
    seen: set[tuple[tuple[str, str], ...]] = set()
    for lab in labels:
        key = label_key(lab)
        if key in seen:
            raise FetchError(f"the answer holds the series {dict(key)} twice (duplicate label set)")
        seen.add(key)
