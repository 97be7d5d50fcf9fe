"""vmrules: declarative YAML rules for VictoriaMetrics and Prometheus-compatible query APIs.

The light names load with the package; `apply`, `fetch_table`, `evaluate_table`,
`write_table` and the rest (which need pyarrow) load at first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from vmrules.config.validate import load_ruleset, validate_paths
from vmrules.errors import ConfigError, Location, Problem, RuleError, VmrulesError
from vmrules.model import Datasource, Route, Rule, RuleSet, Target, Threshold
from vmrules.querylang import QueryCheck, QueryProblem
from vmrules.querylang import check as check_query

if TYPE_CHECKING:
    from vmrules.api import evaluate_table, make_target, write_table
    from vmrules.commands.apply import ApplyOptions, Output, RuleReport, RunReport, apply
    from vmrules.commands.plan import PlanReport, RulePlan, plan
    from vmrules.commands.query import fetch_table, query_tables
    from vmrules.commands.test import Coverage, TestResult, run_tests
    from vmrules.evaluate.counts import Counts
    from vmrules.evaluate.rows import Evaluation
    from vmrules.sources.result import FetchError
    from vmrules.window import Window

_LAZY = {
    "apply": "vmrules.commands.apply", "ApplyOptions": "vmrules.commands.apply", "RunReport": "vmrules.commands.apply",
    "fetch_table": "vmrules.commands.query", "query_tables": "vmrules.commands.query", "evaluate_table": "vmrules.api",
    "write_table": "vmrules.api", "make_target": "vmrules.api", "Evaluation": "vmrules.evaluate.rows",
    "FetchError": "vmrules.sources.result", "plan": "vmrules.commands.plan", "PlanReport": "vmrules.commands.plan",
    "run_tests": "vmrules.commands.test", "TestResult": "vmrules.commands.test", "RuleReport": "vmrules.commands.apply",
    "Output": "vmrules.commands.apply", "RulePlan": "vmrules.commands.plan", "Coverage": "vmrules.commands.test",
    "Counts": "vmrules.evaluate.counts", "Window": "vmrules.window",
}

__all__ = [
    "ApplyOptions", "ConfigError", "Counts", "Coverage", "Datasource", "Evaluation", "FetchError", "Location",
    "Output", "PlanReport", "Problem", "QueryCheck", "QueryProblem", "Route", "Rule", "RuleError", "RulePlan",
    "RuleReport", "RuleSet", "RunReport", "Target", "TestResult", "Threshold", "VmrulesError", "Window", "__version__",
    "apply", "check_query", "evaluate_table", "fetch_table", "load_ruleset", "make_target", "plan", "query_tables",
    "run_tests",
    "validate_paths", "write_table",
]


def __getattr__(name: str) -> Any:
    """Load the heavier names at first use, so that `vmrules validate` starts fast."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vmrules' has no attribute {name!r}")
