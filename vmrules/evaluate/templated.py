"""Templated labels of a Prometheus alerting rule: rendered per sample, they take part in the alert's identity.

Prometheus renders each label of an alerting rule with the sample's labels and value at every
evaluation; the rendered labels replace the series' own ones (an empty one removes the label), and
the result is the alert's identity: when it changes, one alert ends and another begins. Here the
samples of a fetched answer are regrouped into series by their rendered labels, so the alert state,
`for` and episodes follow those identities exactly. A template that does not read the value renders
once per series.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from vmrules import gorender
from vmrules.errors import RuleError
from vmrules.model import Rule
from vmrules.sources.result import QueryResult, label_key


def relabel(rule: Rule, result: QueryResult, seen: set[tuple[tuple[str, str], ...]] | None = None) -> QueryResult:
    """The answer with each sample under its rendered labels (series sorted by id, samples by time).

    `seen`: the identities earlier batches of the same request gave (a batch holds whole series, so one given
    again comes from another series: the two cannot be regrouped, the rule fails as if at the same time)."""
    if seen is not None and result.request_start:
        seen.clear()
    if not len(result.values) or not rule.label_templates:
        return result
    templates = {name: gorender.parse(text) for name, text in rule.label_templates.items()}
    per_sample = any(t.uses_value for t in templates.values())
    labels: list[dict[str, str]] = []
    ids: dict[tuple[tuple[str, str], ...], int] = {}

    def identity(series: Mapping[str, str], value: float) -> int:
        rendered = _render(rule, templates, series, value)
        code = ids.setdefault(label_key(rendered), len(ids))
        if code == len(labels):
            labels.append(rendered)
        return code

    if per_sample:
        pairs = np.rec.fromarrays([result.series_id, result.values.view(np.int64)])
        unique, inverse = np.unique(pairs, return_inverse=True)
        codes = np.fromiter((identity(result.labels[int(s)], float(np.int64(v).view(np.float64)))
                             for s, v in unique), np.int64, len(unique))
        sid = codes[inverse.ravel()]
    else:
        codes = np.fromiter((identity(lab, float("nan")) for lab in result.labels), np.int64, len(result.labels))
        sid = codes[result.series_id]
    order = np.lexsort((result.ts_ms, sid))
    sid, ts, values = sid[order], result.ts_ms[order], result.values[order]
    same = np.flatnonzero((sid[1:] == sid[:-1]) & (ts[1:] == ts[:-1]))
    if len(same):
        raise RuleError(rule.name, "its labels make two series one alert at the same time "
                        f"({labels[int(sid[same[0]])]}): Prometheus refuses such an evaluation (vector contains "
                        "metrics with the same labelset after applying alert labels)")
    if seen is not None:
        keys = [label_key(lab) for lab in labels]
        again = next((i for i, k in enumerate(keys) if k in seen), None)
        if again is not None:
            raise RuleError(rule.name, f"its labels make two series one alert ({labels[again]}), series that come in "
                            "different batches of the answer: vmrules cannot follow them as one alert (Prometheus "
                            "does, unless they are there at the same time); tell them apart in the labels")
        seen.update(keys)
    return QueryResult(labels, sid.astype(np.int32), ts, values, result.requests,
                       result.bytes_read, result.request_start)


def _render(rule: Rule, templates: Mapping[str, gorender.Template], series: Mapping[str, str],
            value: float) -> dict[str, str]:
    data = gorender.alert_data(series, value, rule.external_labels, "", rule.query)
    out = dict(series)
    for name, template in templates.items():
        try:
            text = template.render(data)
        except gorender.GoTemplateError as exc:
            raise RuleError(rule.name, f"label {name}: template: {exc.message} (series {dict(series)}, "
                            f"value {gorender.go_print(value)})") from None
        if text:
            out[name] = text
        else:
            out.pop(name, None)
    return out
