"""The house shows the pipeline, and its layers point one way (ARCHITECTURE.md draws them).

Every import inside the package, at module level or in a function, goes to the
same folder or to a lower layer; there are no import cycles; only cli.py
imports click; nothing below the commands loads pyarrow's parts it does not
need before the first request (checked at run time in test_api.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).parent.parent / "vmrules"
LAYERS = [                         # low to high; a module may import its own layer and those below
    {"errors", "durations", "units", "model", "expr", "thresholds", "window", "templates", "sandbox", "querylang",
     "gotemplate", "gorender"},
    {"net"},
    {"sources"},                   # below config: validate checks a datasource's scheme against the sources
    {"config"},
    {"evaluate"},
    {"targets"},
    {"delivery"},
    {"commands"},
    {"render"},
    {"cli", "api", "__init__", "__main__"},
]
# The schema lists the options of every target type, built-in or plugin: config reads the registry's
# metadata (target names and option schemas), never a target's code.
EXCEPTIONS = {("config", "vmrules.targets.registry")}


def layer_of(module: str) -> int:
    part = module.split(".")[1] if "." in module else "__init__"
    for i, names in enumerate(LAYERS):
        if part in names:
            return i
    raise AssertionError(f"{module}: in no layer; add its folder to LAYERS and ARCHITECTURE.md")


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1] if len(parts) > 1 else ["vmrules", "__init__"]
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """vmrules modules imported by a file (`from vmrules.x import y` is vmrules.x.y when that is a module)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                candidate = f"{node.module}.{a.name}"
                if (PKG.parent / candidate.replace(".", "/")).with_suffix(".py").exists() or \
                        (PKG.parent / candidate.replace(".", "/") / "__init__.py").exists():
                    out.add(candidate)                  # a module: `from vmrules.net import http`
                else:
                    out.add(node.module)                # a name in a module
    return {m for m in out if m == "vmrules" or m.startswith("vmrules.")} | ({"click"} & out)


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in PKG.rglob("*.py")}


def test_every_module_is_in_a_layer() -> None:
    for module in graph():
        layer_of(module)


def test_layers_point_one_way() -> None:
    wrong = []
    for module, deps in graph().items():
        here = layer_of(module)
        folder = module.split(".")[1] if "." in module else ""
        for dep in deps - {"click", "vmrules"}:
            if layer_of(dep) > here and (folder, dep) not in EXCEPTIONS:
                wrong.append(f"{module} -> {dep}")
    assert not wrong, "imports that point up:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles() -> None:
    full = graph()
    g = {m: {d for d in deps if d in full} for m, deps in full.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(g[m]):
            if state.get(d) == 1:
                cycle = path[path.index(d):] + [d] if d in path else [m, d]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [m])


def test_only_the_command_line_imports_click() -> None:
    assert sorted(m for m, deps in graph().items() if "click" in deps) == ["vmrules.cli"]
