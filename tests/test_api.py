"""The Python API as the README shows it: every example runs, in order, and gives what it says."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

import vmrules

ROOT = Path(__file__).parent.parent


def readme_examples() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Python API")[1].split("\n## ")[0]
    return "\n".join(re.findall(r"```python\n(.*?)```", section, re.S))


def test_readme_python_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    shutil.copytree(ROOT / "examples" / "data", tmp_path / "examples" / "data")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(readme_examples(), "README.md", "exec"), scope)   # noqa: S102 - the README's own examples
    report = scope["report"]
    assert report.ok and len(report.rules) == 4
    assert isinstance(scope["history"], pa.Table) and scope["history"].num_rows == 40 * 73
    assert (tmp_path / "exports" / "api" / "node.db").exists()
    table = scope["table"]
    assert table.num_rows == 40 * 13 and table.column_names == list(vmrules.model.ROW_COLUMNS)
    ev = scope["ev"]
    assert ev.counts.alerts == ev.routed["alerts_csv"].num_rows > 0
    assert Path(scope["out"].path).exists() and scope["out"].rows == ev.counts.alerts
    with open(tmp_path / "exports" / "api" / "cpu_check.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["timestamp", "instance", "value"] and len(rows) == 40 * 13


def test_evaluate_table_agrees_with_apply(tmp_path: Path) -> None:
    """A table fetched and then evaluated gives the rows apply routes."""
    ruleset = vmrules.load_ruleset([str(ROOT / "rules")])
    data = f"file:{ROOT / 'examples' / 'data' / 'node.jsonl'}"
    rule = ruleset.rule("node_cpu")
    table = vmrules.fetch_table(rule.query, data, start=1793491200000 - rule.range_ms, end=1793491200000, step="5m")
    shuffled = table.take(pa.array(list(range(table.num_rows))[::-1]))          # order does not matter
    ev = vmrules.evaluate_table(rule, shuffled, ruleset.targets)
    report = vmrules.apply(ruleset, vmrules.ApplyOptions(output_dir=str(tmp_path), datasource=data,
                                                         to_ms=1793491200000, rules=["node_cpu"], keep_tables=True))
    def rows(t: pa.Table) -> list[dict]:
        return sorted(t.to_pylist(), key=lambda r: (r["labels"], r["timestamp"]))

    for target in ("alerts_csv", "history"):
        assert rows(ev.routed[target]) == rows(report.tables[("node_cpu", target)])
    assert ev.counts.by_severity == report.rules[0].counts.by_severity


def test_public_names() -> None:
    for name in vmrules.__all__:
        assert getattr(vmrules, name) is not None, name
    assert (Path(vmrules.__file__).parent / "py.typed").exists()
    with pytest.raises(AttributeError):
        vmrules.no_such_name  # noqa: B018
    with pytest.raises(ValueError, match="'pth' was unexpected"):
        vmrules.make_target("csv", pth="x.csv")


def test_importing_the_package_does_not_load_pyarrow() -> None:
    code = "import sys, vmrules; vmrules.load_ruleset; print('pyarrow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_apply_path_loads_pyarrow_only_after_the_request_left() -> None:
    """The first request goes out while pyarrow and numpy load (bench/README.md): keep them, and the
    service targets' requests, off the way."""
    code = ("import sys, vmrules.cli, vmrules.commands.apply, vmrules.sources.prometheus; "
            "print(sorted(m for m in ('pyarrow', 'numpy', 'jinja2', 'jsonschema', 'requests') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    code = ("import sys, vmrules.cli, vmrules.commands.apply, vmrules.sources.prometheus, vmrules.sources.parse, "
            "vmrules.evaluate.rows, vmrules.delivery.outputs; print(sorted(m for m in ('secrets', 'hmac', "
            "'multiprocessing', 'concurrent.futures.process') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", "imports a run does without (~30 ms, bench/README.md)"


def test_the_first_request_leaves_before_pyarrow_loads(tmp_path: Path) -> None:
    """At run time too: a server that never answers sees the request while pyarrow is still unloaded."""
    rules = tmp_path / "rules"
    rules.mkdir()
    code = f"""
import os, socket, sys
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
open({str(rules / 'r.yaml')!r}, "w").write(
    'version: 1\\ndatasource: {{url: "http://127.0.0.1:%d"}}\\n' % srv.getsockname()[1]
    + 'targets: {{p: {{type: parquet, path: a.parquet}}}}\\n'
    + 'rules: [{{name: r, query: \\'up{{job=~"node|vm-.*"}}\\', route: [{{to: p}}]}}]\\n')
def sendall(self, data, *a):
    print("pyarrow" in sys.modules); sys.stdout.flush(); os._exit(0)
socket.socket.sendall = sendall
from vmrules.cli import main
main(["apply", {str(rules)!r}, "-q", "--output-dir", {str(tmp_path / "out")!r}])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.strip() == "False"
