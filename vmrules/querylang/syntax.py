"""The parsed query: the nodes the checks and lints read (selectors, calls, aggregations, binary operations)."""

from __future__ import annotations

from dataclasses import dataclass, field

SCALAR, VECTOR, MATRIX, STRING = "scalar", "instant vector", "range vector", "string"
ANY = "any"          # a MetricsQL template or union: its type is not known here


@dataclass(slots=True)
class Node:
    start: int                       # 0-based offset of the node's first token
    type: str = field(default=ANY, kw_only=True)


@dataclass(slots=True)
class Number(Node):
    value: float


@dataclass(slots=True)
class String(Node):
    value: str


@dataclass(slots=True)
class Matcher:
    label: str
    op: str                          # = != =~ !~ ("" for a MetricsQL WITH filter name)
    value: str
    start: int


@dataclass(slots=True)
class Selector(Node):
    name: str | None
    groups: list[list[Matcher]]      # MetricsQL `{a="1" or b="2"}` has several; PromQL one
    offset: bool = False
    at: bool = False
    end: int = 0                     # offset just after the selector's name or closing brace


@dataclass(slots=True)
class Range(Node):
    """`inner[range]`, or a subquery `inner[range:step]`."""
    inner: Node
    subquery: bool
    offset: bool = False
    at: bool = False


@dataclass(slots=True)
class Call(Node):
    name: str
    args: list[Node]


@dataclass(slots=True)
class Aggregate(Node):
    name: str
    args: list[Node]
    grouping: tuple[str, ...] | None = None     # by/without labels; None when neither is given
    without: bool = False


@dataclass(slots=True)
class Binary(Node):
    op: str
    left: Node
    right: Node
    matching: tuple[str, ...] | None = None     # on/ignoring labels; None when neither is given
    ignoring: bool = False
    group: str = ""                              # "left" | "right" | ""
    include: tuple[str, ...] = ()
    op_start: int = 0                            # the operator's offset (`start` is the left operand's)
    bool: bool = False                           # a comparison with `bool`: 0/1 instead of a filter


@dataclass(slots=True)
class Unary(Node):
    op: str
    inner: Node


@dataclass(slots=True)
class Paren(Node):
    inner: Node


@dataclass(slots=True)
class Union(Node):
    """MetricsQL `(q1, q2, ...)`."""
    items: list[Node]


@dataclass(slots=True)
class With(Node):
    """MetricsQL `WITH (name = expr, f(x) = expr) body`."""
    names: dict[str, Node]
    body: Node


def walk(node: Node):  # type: ignore[no-untyped-def]
    """Every node below and including `node`, parents first."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        match n:
            case Range(inner=inner) | Unary(inner=inner) | Paren(inner=inner):
                stack.append(inner)
            case Call(args=args) | Aggregate(args=args) | Union(items=args):
                stack.extend(reversed(args))
            case Binary(left=left, right=right):
                stack += [right, left]
            case With(names=names, body=body):
                stack.append(body)
                stack.extend(names.values())
