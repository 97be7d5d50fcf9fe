"""`vmrules convert`: the alerting rules of Prometheus and vmalert rule files as vmrules rules, where the mapping is
exact (a comparison with a number becomes a threshold), with a note for everything left out."""

from __future__ import annotations

from collections.abc import Sequence

import yaml

from vmrules.config.load import is_prometheus_data, load_file
from vmrules.config.promrules import as_vmrules, check_prometheus_file
from vmrules.errors import ConfigError, Location, Problem

__all__ = ["convert_files"]


def convert_files(paths: Sequence[str]) -> str:
    """One vmrules rule file (YAML text) holding the converted rules of every file; ConfigError when a file is
    not a valid Prometheus rule file."""
    specs, notes, problems = [], [], []
    taken: dict[str, int] = {}
    for path in paths:
        f = load_file(path)
        if not is_prometheus_data(f.data):
            problems.append(Problem(Location(path), "not a Prometheus rule file (its top level has no groups:)"))
            continue
        found = [p for p in f.problems + check_prometheus_file(f) if p.level == "error"]
        if found:
            problems += found
            continue
        converted, left = as_vmrules(f.data, taken)
        specs += converted
        notes += [f"{path}: {n}" for n in left]
    if problems:
        raise ConfigError(problems)
    head = [f"# Converted by `vmrules convert` from {', '.join(paths)}: {len(specs)} alerting rule(s).",
            "# Rows: every sample of the query; `alert` is true where the threshold held for its `for`.",
            "# Add a route to each rule (route: [{to: TARGET}]) and the targets."]
    head += ["# Not converted:"] + [f"#   {n}" for n in notes] if notes else []
    body = yaml.safe_dump({"version": 1, "rules": specs}, sort_keys=False, allow_unicode=True, width=120)
    return "\n".join(head) + "\n" + body
