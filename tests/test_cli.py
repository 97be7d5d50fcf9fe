"""The command line through click's CliRunner: exact output and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from vmrules.cli import main

BAD = "version: 1\nrules:\n  - name: r\n    query: up\n    where: 'value >'\n"


@pytest.fixture
def bad_dir(tmp_path: Path) -> Path:
    (tmp_path / "bad.yaml").write_text(BAD)
    return tmp_path


def run(*args: str) -> click.testing.Result:
    return CliRunner().invoke(main, list(args))


def test_validate_text(bad_dir: Path) -> None:
    res = run("validate", str(bad_dir))
    assert res.exit_code == 1
    assert res.stdout == f"{bad_dir}/bad.yaml:5:20: error: where: expected a value, got end of expression\n"
    assert res.stderr == "1 file(s), 1 problem(s)\n"


def test_validate_json(bad_dir: Path) -> None:
    res = run("validate", str(bad_dir), "--format", "json")
    assert res.exit_code == 1
    assert json.loads(res.stdout) == {"valid": False, "problems": [
        {"path": f"{bad_dir}/bad.yaml", "line": 5, "col": 20,
         "message": "where: expected a value, got end of expression", "level": "error"}]}


def test_validate_github(bad_dir: Path) -> None:
    res = run("validate", str(bad_dir), "--format", "github")
    assert res.stdout == (f"::error file={bad_dir}/bad.yaml,line=5,col=20::where%3A expected a value%2C "
                          "got end of expression\n")


def test_validate_ok_and_quiet(tmp_path: Path) -> None:
    (tmp_path / "ok.yml").write_text("version: 1\ntargets: {o: {type: csv, path: o.csv}}\n"
                                     "rules: [{name: r, query: up, route: [{to: o}]}]\n")
    res = run("validate", "-q", str(tmp_path))
    assert (res.exit_code, res.stdout, res.stderr) == (0, "", "")


def test_validate_warnings_pass_unless_strict(tmp_path: Path) -> None:
    (tmp_path / "w.yml").write_text("version: 1\nrules: [{name: r, query: up}]\n")
    warning = f"{tmp_path}/w.yml:2:16: warning: rule 'r' routes to no target"
    res = run("validate", str(tmp_path))
    assert res.exit_code == 0
    assert res.stdout.startswith(warning)
    assert res.stderr == "1 file(s), 1 warning(s)\n"
    res = run("validate", "--strict", str(tmp_path))
    assert res.exit_code == 1 and res.stdout.startswith(warning)
    res = run("validate", "--format", "github", str(tmp_path))
    assert res.exit_code == 0 and res.stdout.startswith(f"::warning file={tmp_path}/w.yml,line=2,col=16::rule 'r'")


def test_validate_verbose_says_what_metricsql_left_unchecked(tmp_path: Path) -> None:
    (tmp_path / "m.yml").write_text("version: 1\ntargets: {o: {type: csv, path: o.csv}}\n"
                                    "rules: [{name: r, query: 'rate(up)', route: [{to: o}]}]\n")
    assert run("validate", str(tmp_path)).stdout == ""
    res = run("validate", "-v", str(tmp_path))
    assert res.exit_code == 0
    assert res.stdout == (f"{tmp_path}/m.yml:3:26: note: query checked as MetricsQL (the default dialect; set "
                          "dialect: promql for a Prometheus); not checked: argument types as MetricsQL converts them "
                          "(PromQL would say: expected type range vector in call to function 'rate', got instant "
                          "vector)\n")


def test_validate_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    res = run("validate", str(tmp_path / "nope"))
    assert res.exit_code == 2
    assert "no such file or directory" in res.stderr


def test_unknown_option_exits_2() -> None:
    assert run("validate", "--formatt", "x").exit_code == 2
    assert run("apply", "--since", "yesterday").exit_code == 2


def test_apply_invalid_rules_exit_2_and_write_nothing(bad_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = run("apply", str(bad_dir), "--output-dir", str(out), "--datasource", "http://127.0.0.1:9")
    assert res.exit_code == 2
    assert "bad.yaml:5:20: error:" in res.stderr
    assert not out.exists()


def test_apply_without_datasource_exit_2(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("version: 1\nrules: [{name: r, query: up}]\n")
    res = run("apply", str(tmp_path), "--output-dir", str(tmp_path / "o"))
    assert res.exit_code == 2
    assert "rule r has no datasource" in res.stderr


def test_apply_unknown_rule_exit_2(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("version: 1\nrules: [{name: r, query: up}]\n")
    res = run("apply", str(tmp_path), "--rule", "nope", "--datasource", "http://127.0.0.1:9")
    assert res.exit_code == 2
    assert "no rule named nope" in res.stderr


def test_since_and_from_conflict(tmp_path: Path) -> None:
    res = run("apply", str(tmp_path), "--since", "1h", "--from", "now-2h")
    assert res.exit_code == 2 and "either --since or --from" in res.stderr


def test_schema_prints_the_schema() -> None:
    res = run("schema")
    assert res.exit_code == 0 and json.loads(res.stdout)["title"].startswith("vmrules")


def test_version() -> None:
    res = run("--version")
    assert res.exit_code == 0 and res.stdout.startswith("vmrules, version ")


def test_python_m_beside_a_folder_named_vmrules(tmp_path: Path) -> None:
    """A rule repository often has a folder vmrules/; `python -m vmrules` run there works (an installed package
    comes before a folder without __init__.py), or, when the folder hides an editable install's package, says so
    in one line instead of an ImportError."""
    import subprocess
    import sys

    from vmrules import __version__

    (tmp_path / "vmrules").mkdir()
    out = subprocess.run([sys.executable, "-m", "vmrules", "--version"], cwd=tmp_path, capture_output=True,
                         text=True)
    hidden = "python -m vmrules: the folder vmrules/ in this directory hides the vmrules package of an editable " \
             "install (python -m looks here first); run the vmrules command, or python -m vmrules elsewhere\n"
    assert (out.returncode, out.stdout, out.stderr) in ((0, f"vmrules, version {__version__}\n", ""),
                                                        (1, "", hidden)), out


def test_every_command_and_option_has_help() -> None:
    assert main.help
    for name, cmd in main.commands.items():
        assert cmd.help, name
        for p in cmd.params:
            if isinstance(p, click.Option):
                assert p.help, f"{name} {p.name}"


def test_the_installed_command_exits_with_its_code_and_all_its_output(tmp_path: Path) -> None:
    """The `vmrules` program skips the interpreter's teardown (cli.run): its exit status is still the command's,
    output larger than a pipe's buffer arrives whole, exit handlers still run, and a closed pipe still ends it."""
    import subprocess
    import sys

    exe = str(Path(sys.executable).parent / "vmrules")
    data = Path(__file__).resolve().parent.parent / "examples" / "data" / "node.jsonl"
    query = [exe, "query", '{__name__=~".+"}', "--datasource", f"file:{data}", "--from", "1793404800",
             "--to", "1793491200", "--step", "5m", "--format", "jsonl"]
    whole = subprocess.run(query, capture_output=True, text=True)
    lines = whole.stdout.splitlines()
    assert whole.returncode == 0 and len(whole.stdout) > 1 << 20, whole.stderr
    assert len(lines) == len(set(lines)) and all(json.loads(x)["value"] is not None for x in lines)
    in_process = CliRunner().invoke(main, query[1:])
    assert in_process.exit_code == 0 and in_process.stdout == whole.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules: 3\n")
    assert subprocess.run([exe, "validate", str(bad)], capture_output=True).returncode == 1
    assert subprocess.run([exe, "apply", "--no-such-option"], capture_output=True).returncode == 2
    assert subprocess.run([exe, "--version"], capture_output=True).returncode == 0

    # Started with stdout or stderr closed (Python then has None for it): the command's own status.
    for closed in (">&-", "2>&-"):
        assert subprocess.run(["sh", "-c", f'"$0" --version {closed}', exe]).returncode == 0, closed

    # An exit handler registered while the command runs (as logging and temporary folders do) still runs.
    marker = tmp_path / "atexit-ran"
    code = ("import atexit, pathlib, sys\n"
            f"atexit.register(pathlib.Path({str(marker)!r}).write_text, 'yes')\n"
            "from vmrules.cli import run\nsys.argv[1:] = ['--version']\nrun()\n")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
    assert marker.read_text() == "yes"

    # A reader that stops early: the command ends (no hang), by a broken pipe as Python's own exit would.
    head = subprocess.Popen(query, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert head.stdout is not None
    head.stdout.read(100)
    head.stdout.close()
    assert head.wait(timeout=60) != 0
