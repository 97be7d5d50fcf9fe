"""vmrules: declarative YAML rules for VictoriaMetrics and Prometheus-compatible query APIs."""

from __future__ import annotations

__version__ = "0.1.0"

from vmrules.errors import ConfigError, Location, Problem, RuleError, VmrulesError
from vmrules.model import Datasource, Route, Rule, RuleSet, Target, Threshold
from vmrules.validate import load_ruleset, validate_paths

__all__ = [
    "ConfigError", "Datasource", "Location", "Problem", "Route", "Rule", "RuleError", "RuleSet",
    "Target", "Threshold", "VmrulesError", "__version__", "load_ruleset", "validate_paths",
]
