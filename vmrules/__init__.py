"""vmrules: declarative YAML rules for VictoriaMetrics and Prometheus-compatible query APIs.

The light names load with the package; `apply`, `fetch_table`, `evaluate_table`,
`write_table` and the rest (which need pyarrow) load at first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from vmrules.errors import ConfigError, Location, Problem, RuleError, VmrulesError
from vmrules.model import Datasource, Route, Rule, RuleSet, Target, Threshold
from vmrules.validate import load_ruleset, validate_paths

if TYPE_CHECKING:
    from vmrules.api import evaluate_table, fetch_table, make_target, query_tables, write_table
    from vmrules.backtest import PlanReport, plan
    from vmrules.evaluate import Evaluation
    from vmrules.fetch.result import FetchError
    from vmrules.ruletest import run_tests
    from vmrules.run import ApplyOptions, RunReport, apply

_LAZY = {
    "apply": "vmrules.run", "ApplyOptions": "vmrules.run", "RunReport": "vmrules.run",
    "fetch_table": "vmrules.api", "query_tables": "vmrules.api", "evaluate_table": "vmrules.api",
    "write_table": "vmrules.api", "make_target": "vmrules.api", "Evaluation": "vmrules.evaluate",
    "FetchError": "vmrules.fetch.result", "plan": "vmrules.backtest", "PlanReport": "vmrules.backtest",
    "run_tests": "vmrules.ruletest",
}

__all__ = [
    "ApplyOptions", "ConfigError", "Datasource", "Evaluation", "FetchError", "Location", "PlanReport", "Problem",
    "Route", "Rule", "RuleError", "RuleSet", "RunReport", "Target", "Threshold", "VmrulesError", "__version__",
    "apply", "evaluate_table", "fetch_table", "load_ruleset", "make_target", "plan", "query_tables", "run_tests",
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
