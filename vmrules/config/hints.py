"""Hints for unknown keys that mean something elsewhere (Prometheus rule files, mostly).

Each mistake is said once: a key another problem already explains (the `expr` of a
Prometheus rule, the `query` that `expr` stands for) is left unsaid.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

PROMETHEUS_FILE = ("`groups:` starts a Prometheus rule file, which vmrules reads as it is: keep it in a file of its "
                   "own, without `version:` (README, Prometheus and vmalert rule files)")
PROMETHEUS_RULE = ("`{key}` is a Prometheus rule key; Prometheus rule files (top-level `groups:`) are a different "
                   "format: a vmrules rule has name, query and thresholds (README, A rule file)")
PROMETHEUS_KEYS = ("alert", "record", "expr", "for", "keep_firing_for", "annotations")
IN_A_THRESHOLD = "`{key}` belongs in a threshold, e.g. thresholds: [{{above: 90, {key}: 5m}}]"
RULE_KEYS = {                    # an unknown key of a vmrules rule -> what to say
    "expr": "did you mean 'query'?",
    "for": IN_A_THRESHOLD.format(key="for"),
    "keep_firing_for": IN_A_THRESHOLD.format(key="keep_firing_for"),
    "annotations": "annotations are set on an alertmanager target (targets: {am: {type: alertmanager, "
                   "annotations: ...}})",
}


def _is_rule(path: tuple[Any, ...]) -> bool:
    return len(path) == 2 and path[0] == "rules" and isinstance(path[1], int)


def _prometheus_rule(path: tuple[Any, ...], obj: dict[str, Any]) -> str | None:
    """The key (`alert` or `record`) that makes this rule a Prometheus one."""
    if not _is_rule(path):
        return None
    return next((k for k in ("alert", "record") if k in obj), None)


def unknown_key(path: tuple[Any, ...], obj: dict[str, Any], key: str, allowed: Iterable[str]) -> str | None:
    """What to say after `unknown key 'KEY'`; None: nothing (another problem of `obj` explains it)."""
    if path == () and key == "groups":
        return f": {PROMETHEUS_FILE}"
    marker = _prometheus_rule(path, obj)
    if marker is not None:
        if key == marker:
            return f": {PROMETHEUS_RULE.format(key=key)}"
        if key in PROMETHEUS_KEYS:
            return None
    if _is_rule(path) and key in RULE_KEYS:
        said = RULE_KEYS[key]
        return f"; {said}" if said.startswith("did you") else f": {said}"
    allowed = sorted(allowed)
    hint = difflib.get_close_matches(key, allowed, n=1)
    return f"; did you mean {hint[0]!r}?" if hint else f"; allowed: {', '.join(allowed)}"


def missing_is_explained(path: tuple[Any, ...], obj: dict[str, Any], missing: str, allowed: Iterable[str]) -> bool:
    """A required key whose absence another problem of `obj` already explains: a key that stands for it
    (`expr` for `query`, a misspelt `nmae`), or a whole object of another format."""
    if path == () and "groups" in obj:
        return True
    if _prometheus_rule(path, obj) is not None and missing in ("name", "query"):
        return True
    if _is_rule(path) and missing == "query" and "expr" in obj:
        return True
    allowed = sorted(allowed)
    return any(difflib.get_close_matches(k, allowed, n=1) == [missing] for k in obj if k not in allowed)
