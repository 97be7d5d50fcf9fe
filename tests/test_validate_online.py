"""`validate --online` asks a real VictoriaMetrics whether each selector has series; plain validate never asks."""

from __future__ import annotations

import time
from pathlib import Path

from click.testing import CliRunner

from tests.support.servers import VictoriaMetrics
from vmrules.cli import main
from vmrules.commands.online import selectors

RULES = """version: 1
datasource:
  url: {url}
  headers: {{X-Scope: '${{ONLINE_TEST_TENANT}}'}}
targets: {{out: {{type: csv, path: out.csv}}}}
rules:
  - name: present
    query: 'sum by (job) (rate(online_requests_total{{job="api"}}[5m])) > 0'
    route: [{{to: out}}]
  - name: typo
    query: |
      online_requests_total{{job="api"}}
        / on(job) online_request_total{{job="api"}}
    route: [{{to: out}}]
  - name: template
    query: 'WITH (f = {{job="api"}}) online_requests_total{{f}}'
    route: [{{to: out}}]
"""


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    res = CliRunner().invoke(main, list(args), env=env)
    return res.exit_code, res.stdout


def test_selectors_as_written_once_templates_left_out() -> None:
    assert selectors('a{x="1"} + on(x) a{x="1"} / rate(b[5m]) or rate(c{y=~"z.*"}[1m])', "promql") == \
        {'a{x="1"}': 0, "b": 33, 'c{y=~"z.*"}': 48}
    assert selectors('WITH (f = {job="a"}) m{f} + n{job="b"}', "metricsql") == {'n{job="b"}': 28}
    assert selectors('WITH (e = "prod") up{env=e}', "metricsql") == {}               # its value is a template
    assert selectors('WITH (f(m) = rate(m{job="x"}[5m])) f(up)', "metricsql") == {"up": 37}   # m is a parameter


def test_online_warns_for_each_selector_without_series(vm: VictoriaMetrics, tmp_path: Path) -> None:
    now = int(time.time())
    vm.import_lines([{"metric": {"__name__": "online_requests_total", "job": "api"},
                      "values": [1.0, 2.0], "timestamps": [(now - 120) * 1000, (now - 60) * 1000]}])
    vm.wait_for('online_requests_total{job="api"}', 1, now)
    path = tmp_path / "r.yaml"
    path.write_text(RULES.format(url=vm.url))
    code, out = run("validate", str(tmp_path))                     # offline: no secrets, no requests
    assert (code, out) == (0, "")
    env = {"VMRULES_ALLOW_ENV": "ONLINE_TEST_TENANT", "ONLINE_TEST_TENANT": "a"}
    code, out = run("validate", "--online", str(tmp_path), env=env)
    assert code == 0
    assert out == (f"{path}:13:19: warning: query: online_request_total{{job=\"api\"}} has no series at {vm.url} in "
                   "the last 1h (rule 'typo'): check the metric and label names\n")
    assert run("validate", "--online", "--strict", str(tmp_path), env=env)[0] == 1


def test_online_names_a_datasource_it_cannot_ask(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(RULES.format(url="http://127.0.0.1:9"))
    env = {"VMRULES_ALLOW_ENV": "", "ONLINE_TEST_TENANT": "a"}
    code, out = run("validate", "--online", str(tmp_path), env=env)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 1, out
    assert "warning: --online: cannot ask http://127.0.0.1:9 (rule 'present'; the other rules on it are not asked): " \
           "environment variable ONLINE_TEST_TENANT may not be read by rule files" in lines[0]


def test_datasource_option_needs_online(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("version: 1\nrules: []\n")
    assert run("validate", "--datasource", "http://127.0.0.1:9", str(tmp_path))[0] == 2


def test_online_with_an_allowed_variable_unset_is_one_usage_error(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(RULES.format(url="http://127.0.0.1:9"))
    res = CliRunner().invoke(main, ["validate", "--online", str(tmp_path)],
                             env={"VMRULES_ALLOW_ENV": "ONLINE_TEST_TENANT", "ONLINE_TEST_TENANT": None})
    assert res.exit_code == 2
    assert res.stderr.count("ONLINE_TEST_TENANT") == 1 and "is not set" in res.stderr
