"""The Python API as the README shows it, and the demo data through the library."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pyarrow as pa
import pytest

ROOT = Path(__file__).parent.parent


def test_readme_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"## Python API\n\n```python\n(.*?)```", readme, re.S).group(1)
    monkeypatch.chdir(ROOT)
    code = code.replace('output_dir="exports"', f'output_dir="{tmp_path}"')
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)   # noqa: S102 - the README's own example
    report = scope["report"]
    assert report.ok and len(report.rules) == 4
    assert isinstance(scope["table"], pa.Table) and scope["table"].num_rows == 40 * 73
    assert os.path.exists(tmp_path / "node.db")


