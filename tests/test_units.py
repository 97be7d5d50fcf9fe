"""A rule's `unit:`: values in charts and templates read as 2 GiB, 95%, 1h30m."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import file_rules
from tests.support.data import END_S
from vmrules.cli import main
from vmrules.templates import render
from vmrules.units import format_value


@pytest.mark.parametrize(("value", "unit", "text"), [
    (2_147_483_648, "bytes", "2 GiB"), (2.5 * 2 ** 30, "bytes", "2.5 GiB"), (512, "bytes", "512 B"),
    (10 * 2 ** 40, "bytes", "10 TiB"), (95.5, "percent", "95.5%"), (0.953, "ratio", "95.3%"),
    (90, "seconds", "1m30s"), (0.25, "seconds", "250ms"), (7200, "seconds", "2h"), (5400, "seconds", "1h30m"),
    (2 * 86400 + 3600, "seconds", "2d1h"), (59.5, "seconds", "59.5s"), (0, "seconds", "0s"),
    (-90, "seconds", "-1m30s"), (2.15e9, None, "2.15G"), (12345, None, "12.3k"), (0.9, None, "0.9"),
    (math.inf, "bytes", "+Inf"), (math.nan, "ratio", "NaN"),
])
def test_values_read_in_their_unit(value: float, unit: str | None, text: str) -> None:
    assert format_value(value, unit) == text


def test_templates_format_with_the_rules_unit() -> None:
    ctx = {"value": 2_147_483_648.0, "rule": {"unit": "bytes"}}
    assert render("free {{ value | with_unit(rule.unit) }}", ctx) == "free 2 GiB"
    assert render("{{ value | with_unit }}", {"value": 2.15e9}) == "2.15G"
    assert render("{{ value | with_unit('seconds') }}", {"value": "NaN"}) == "NaN"
    with pytest.raises(Exception, match="unknown unit 'parsecs'"):
        render("{{ value | with_unit('parsecs') }}", ctx)


def test_the_report_chart_uses_the_unit(tmp_path: Path) -> None:
    body = ("targets: {f: {type: csv, path: 'f.csv'}}\n"
            "rules:\n"
            "  - {name: disk, query: disk_free, range: 4h, unit: bytes,\n"
            "     thresholds: [{severity: low, below: 2147483648}], route: [{to: f}]}\n")
    report = tmp_path / "r.html"
    folder = file_rules(tmp_path, body)
    res = CliRunner().invoke(main, ["apply", str(folder), "--output-dir", str(tmp_path / "o"), "--to", str(END_S),
                                    "-q", "--report", str(report)])
    assert res.exit_code == 0, res.output
    page = report.read_text()
    assert ">low 2 GiB</text>" in page and " GiB</text>" in page.split("low 2 GiB")[1]     # threshold and axis
    (folder / "r.yaml").write_text((folder / "r.yaml").read_text().replace("unit: bytes", "unit: furlongs"))
    res = CliRunner().invoke(main, ["validate", str(folder)])
    assert res.exit_code == 1 and "rules[0].unit" in res.output
