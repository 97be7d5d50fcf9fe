"""The `${VAR}`s a run will read, checked before anything is fetched or written.

A variable that is not set would fail every rule that reads it, one error each;
it is one usage error instead, naming the variable once with where the rule
files use it. Variables the allow-list refuses are left to the rules that use
them (their messages say how to allow them), so a rule file learns nothing of
the variables it may not read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from vmrules.errors import Location, UsageError
from vmrules.model import Datasource, Rule, Target
from vmrules.net.http import Env, variables
from vmrules.targets.registry import PluginError, kind_of

MAX_RULES_NAMED = 3
Use = tuple[str, str, str, str, Location | None]    # (text, URL it is sent to, owner, which key, where the owner is)


def check_variables(rules: Sequence[Rule], sources: Mapping[str, Datasource], targets: Mapping[str, Target],
                    env: Env, writes: bool = True) -> None:
    """UsageError naming each variable the rules (their datasources, and their targets when the run
    `writes`) would read but the environment lacks."""
    unset: dict[str, dict[tuple[str, Location | None], tuple[list[str], list[str]]]] = {}
    for rule in rules:
        found = list(_datasource_uses(sources[rule.name]))
        if writes:
            for name in dict.fromkeys(n for route in rule.routes for n in route.to):
                if name in targets:
                    found += _target_uses(targets[name])
        for text, url, owner, key, where in found:
            for var in variables(text):
                if env.refusal(var, url) is None and var not in env.base:
                    keys, names = unset.setdefault(var, {}).setdefault((owner, where), ([], []))
                    keys += [key] if key not in keys else []
                    names += [rule.name] if rule.name not in names else []
    if unset:
        raise UsageError("\n".join(f"environment variable {var} is not set; used in "
                                   + "; ".join(_place(owner, where, *used) for (owner, where), used in places.items())
                                   for var, places in unset.items()))


def _datasource_uses(ds: Datasource) -> Iterator[Use]:
    if ds.is_file:
        return
    for key, value in ds.headers.items():
        yield value, ds.url, "the datasource", f"header {key}", ds.location
    if ds.bearer_token is not None:
        yield ds.bearer_token, ds.url, "the datasource", "bearer_token", ds.location
    if ds.basic_auth is not None:
        yield ds.basic_auth[0] + ds.basic_auth[1], ds.url, "the datasource", "basic_auth", ds.location


def _target_uses(t: Target) -> Iterator[Use]:
    try:
        kind = kind_of(t.type)
    except PluginError:           # said by the rules that route to it
        return
    if kind == "service":
        for key, value in (t.options.get("headers") or {}).items():
            yield str(value), str(t.options.get("url", "")), f"target {t.name}", f"header {key}", t.location
    if kind == "database" and isinstance(t.options.get("dsn"), str):
        yield t.options["dsn"], t.options["dsn"], f"target {t.name}", "dsn", t.location


def _place(owner: str, where: Location | None, keys: list[str], rules: list[str]) -> str:
    shown = ", ".join(rules[:MAX_RULES_NAMED]) + (f" and {len(rules) - MAX_RULES_NAMED} more"
                                                  if len(rules) > MAX_RULES_NAMED else "")
    at = f" at {where}" if where is not None else ""
    return f"{owner}{at}: {', '.join(keys)} (rule{'s' if len(rules) > 1 else ''} {shown})"
