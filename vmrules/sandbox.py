"""The Jinja2 sandbox of vmrules templates, with the work and memory of a render bounded before it is done.

Templates come from rule files, which may be untrusted (pull requests are validated
in CI, and validate renders every template). Jinja2's sandbox stops access to
Python internals; resource limits are left to the caller. Here, during a render:

- every loop iteration, call, attribute lookup and intercepted operator is a step,
  and a render may take at most MAX_STEPS of them;
- no single string or list may exceed the render's output limit (or 64 Ki), and all
  strings built together may not exceed 8 x that (+ 1 MiB): `"ab" * 4000000000`,
  `~` chains, `replace`, `join`, `format` widths and str methods are measured
  *before* they run;
- `**` takes exponents up to MAX_EXPONENT;
- macros and block assignments (`{% macro %}`, `{% call %}`, `{% set x %}...{% endset %}`,
  `{% filter %}`) are refused: their output is joined out of reach of these checks.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from jinja2 import nodes
from jinja2.filters import do_format, do_join, do_replace
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import pass_eval_context

MAX_STEPS = 1_000_000
MAX_EXPONENT = 256
MIN_VALUE_LEN = 1 << 16       # a value may be this long even when the output limit is shorter (a long query)
_REFUSED = {nodes.Macro: "{% macro %}", nodes.CallBlock: "{% call %}", nodes.FilterBlock: "{% filter %}",
            nodes.AssignBlock: "{% set %}...{% endset %}"}
_PERCENT = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\d*|\*)(?:\.(\d*|\*))?[hlL]?[a-zA-Z%]")
_BRACES = re.compile(r"\{[^{}]*:([^{}]*)\}")
_local = threading.local()


class BudgetError(Exception):
    """A render that would take more work or memory than allowed (templates.render says so)."""


class Budget:
    """What one render may still do: steps, and characters of strings built."""

    def __init__(self, limit: int):
        self.max_len = max(limit, MIN_VALUE_LEN)
        self.left_chars = 8 * self.max_len + (1 << 20)
        self.left_steps = MAX_STEPS

    def step(self, n: int = 1) -> None:
        self.left_steps -= n
        if self.left_steps < 0:
            raise BudgetError(f"the template does too much work (more than {MAX_STEPS} steps)")

    def build(self, size: int) -> None:
        """About to build a string or list of `size` items: refused when too big, before it is built."""
        if size > self.max_len:
            raise BudgetError(f"the template would build a value of {size} characters or items "
                              f"(at most {self.max_len})")
        self.left_chars -= size
        if self.left_chars < 0:
            raise BudgetError("the template builds too much text in all")


class rendering:  # noqa: N801 - used as a context manager, like a function
    """The budget of the render in progress on this thread."""

    def __init__(self, limit: int):
        self.budget = Budget(limit)

    def __enter__(self) -> Budget:
        self.saved = getattr(_local, "budget", None)
        _local.budget = self.budget
        return self.budget

    def __exit__(self, *exc: object) -> None:
        _local.budget = self.saved


def _budget() -> Budget:
    budget = getattr(_local, "budget", None)
    if budget is None:          # compile-time constant folding, or a render outside templates.render
        budget = Budget(4096)
    return budget


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, bytes, list, tuple)) else 0


def _check_widths(fmt: str, values: Any = ()) -> None:
    """A format string's field widths and precisions (`%999999999d`, `{:>999999999}`, `%*d`) within the budget."""
    budget = _budget()
    widths = [w for m in _PERCENT.finditer(fmt) for w in m.groups() if w]
    widths += [w for m in _BRACES.finditer(fmt) for w in re.findall(r"\d+", m.group(1))]
    if "*" in widths:
        widths += [str(v) for v in (values if isinstance(values, tuple) else (values,)) if isinstance(v, int)]
    for w in widths:
        if w != "*" and (len(w) > 9 or int(w) > budget.max_len):
            raise BudgetError(f"a format width of {w[:12]} is more than the template may build")


class Sandbox(ImmutableSandboxedEnvironment):
    """ImmutableSandboxedEnvironment with the bounds above."""

    intercepted_binops = frozenset({"*", "**", "+", "%", "//"})

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for kind, what in _REFUSED.items():
            for _ in tree.find_all(kind):
                raise BudgetError(f"{what} is not supported in vmrules templates")
        for loop in tree.find_all(nodes.For):        # each iteration is a step
            loop.iter = nodes.Filter(loop.iter, "vmrules_steps", [], [], None, None, lineno=loop.lineno)
        for concat in list(tree.find_all(nodes.Concat)):       # `a ~ b ~ c` is measured before it is joined
            concat.nodes = [nodes.Filter(nodes.List(list(concat.nodes)), "vmrules_concat", [], [], None, None,
                                         lineno=concat.lineno)]
        return tree

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        budget = _budget()
        budget.step()
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
                    budget.build(len(seq) * max(n, 0))
        elif operator == "+" and isinstance(left, (str, list, tuple)):
            budget.build(_size(left) + _size(right))
        elif operator == "**" and isinstance(right, int) and abs(right) > MAX_EXPONENT:
            raise BudgetError(f"an exponent of {right} is more than {MAX_EXPONENT}")
        elif operator == "%" and isinstance(left, str):
            _check_widths(left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - as Jinja2's
        budget = _budget()
        budget.step()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            _check_str_call(owner, getattr(__obj, "__name__", ""), args, kwargs, budget)
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        _budget().step()
        if isinstance(obj, str) and attribute in ("format", "format_map"):
            _check_widths(obj)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _budget().step()
        return super().getitem(obj, argument)


def _check_str_call(s: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], budget: Budget) -> None:
    """A str method's result size, before it runs."""
    values = [*args, *kwargs.values()]
    if method == "replace" and len(values) >= 2:
        budget.build(_replaced_size(s, str(values[0]), str(values[1])))
    elif method == "join" and values:
        budget.build(_joined_size(s, values[0], budget))
    for v in values:
        if isinstance(v, int) and v > budget.max_len:       # center, ljust, zfill, expandtabs, ...
            raise BudgetError(f"{method}({v}) is more than the template may build")


def _replaced_size(s: str, old: str, new: str) -> int:
    hits = s.count(old) if old else len(s) + 1
    return len(s) + hits * max(len(new) - len(old), 0)


def _joined_size(sep: str, items: Any, budget: Budget) -> int:
    if not isinstance(items, (list, tuple)):
        return 0
    budget.step(len(items))
    return sum(len(str(x)) if isinstance(x, (str, int, float)) else 0 for x in items) + len(sep) * len(items)


def _steps(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = _budget()
    for item in iterable:
        budget.step()
        yield item


def _concat(parts: list[Any]) -> str:
    texts = [str(p) for p in parts]
    _budget().build(sum(map(len, texts)))
    return "".join(texts)


@pass_eval_context
def _join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: str | int | None = None) -> str:
    budget = _budget()
    items = list(_steps(value))
    if attribute is None:
        budget.build(_joined_size(str(d), [str(x) for x in items], budget))
    out = str(do_join(eval_ctx, items, d, attribute))
    budget.build(len(out))
    return out


@pass_eval_context
def _replace(eval_ctx: Any, s: str, old: str, new: str, count: int | None = None) -> str:
    _budget().build(_replaced_size(str(s), str(old), str(new)))
    return str(do_replace(eval_ctx, s, old, new, count))


def _format(value: str, *args: Any, **kwargs: Any) -> str:
    _check_widths(str(value), args)
    return str(do_format(value, *args, **kwargs))


def _with_unit(value: Any, unit: str | None = None) -> str:
    """`{{ value | with_unit(rule.unit) }}`: 2 GiB, 95%, 1h30m (vmrules.units); text that is no number as it is."""
    from vmrules.units import UNITS, format_value

    if unit is not None and unit not in UNITS:
        raise ValueError(f"with_unit: unknown unit {unit!r}; known: {', '.join(UNITS)}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return format_value(number, unit)


BOUNDED_FILTERS = {"join": _join, "replace": _replace, "format": _format, "vmrules_steps": _steps,
                   "vmrules_concat": _concat, "with_unit": _with_unit}
