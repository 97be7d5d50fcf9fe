"""Untrusted rule files, secrets that never leak, writes that never leave the output directory (README, Security)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tests.support.data import END_S, export_jsonl
from tests.support.servers import FaultServer, Reply, Seen, matrix
from vmrules.cli import main
from vmrules.delivery.state import STATE_NAME
from vmrules.net import http

ROOT = Path(__file__).parent.parent
WINDOW = ["--from", str(END_S - 600), "--to", str(END_S)]
GOOD = matrix([({"__name__": "m", "i": "a"}, [(END_S - 60, "1"), (END_S, "2")])])
TOKEN = "s3cr3t-sentinel-4b1d"

pytestmark = pytest.mark.usefixtures("fast_backoff")


def run(args: list[str], env: dict[str, str | None] | None = None) -> tuple[int, str, str]:
    res = CliRunner(env={"VMRULES_ALLOW_ENV": None, **(env or {})}).invoke(main, args)
    return res.exit_code, res.stdout, res.stderr


def rules_dir(tmp_path: Path, datasource: str, targets: str = "f: {type: csv, path: f.csv}",
              route: str = "f") -> Path:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    (folder / "r.yaml").write_text(f"version: 1\ndatasource: {datasource}\ntargets: {{{targets}}}\n"
                                   f"rules: [{{name: r, query: m, route: [{{to: {route}}}]}}]\n")
    return folder


def echo(seen: Seen) -> Reply:
    """A hostile server that sends back every header it was given."""
    return Reply(500, json.dumps(seen.headers).encode())


# -- secrets ---------------------------------------------------------------------------------------
def test_a_trailing_newline_in_a_secret_is_dropped_and_never_printed(tmp_path: Path) -> None:
    server = FaultServer(echo)
    try:
        folder = rules_dir(tmp_path, f"{{url: '{server.url}', timeout: 1s, bearer_token: '${{TOKEN}}'}}")
        env = {"TOKEN": TOKEN + "\n", "VMRULES_ALLOW_ENV": "TOKEN"}
        report = tmp_path / "report.html"
        outs = [run(["apply", str(folder), "--output-dir", str(tmp_path / "o"), *WINDOW, *extra], env)
                for extra in ([], ["-v", "--log-format", "json"], ["--report", str(report)])]
        outs.append(run(["plan", str(folder), *WINDOW, "--format", "json"], env))
        assert [o[0] for o in outs] == [1, 1, 1, 1]
        assert all(s.headers["Authorization"] == f"Bearer {TOKEN}" for s in server.seen)   # sent without the \n
        printed = "".join(o[1] + o[2] for o in outs) + report.read_text()
        assert "HTTP 500" in printed and TOKEN not in printed and "<secret>" in printed
    finally:
        server.stop()


def test_a_secret_with_a_line_break_inside_is_refused_without_echo(tmp_path: Path) -> None:
    server = FaultServer(lambda seen: Reply(200, GOOD))
    try:
        folder = rules_dir(tmp_path, f"{{url: '{server.url}', headers: {{X-Key: '${{TOKEN}}'}}}}")
        code, out, err = run(["apply", str(folder), "--output-dir", str(tmp_path / "o"), *WINDOW, "--log-format",
                              "json"], {"TOKEN": "ab\ncd-" + TOKEN, "VMRULES_ALLOW_ENV": "TOKEN"})
        assert code == 1 and "TOKEN holds a line break" in err and TOKEN not in out + err
        assert server.seen == []
        for line in err.splitlines():
            json.loads(line)
        q = CliRunner(env={"TOKEN": "x\n\ny" + TOKEN}).invoke(main, ["query", "m", "--datasource", server.url,
                                                                   "-H", "X-Key: ${TOKEN}", *WINDOW])
        assert q.exit_code == 1 and not isinstance(q.exception, Exception)      # an error, not a traceback
        assert "line break" in q.stderr and TOKEN not in q.output + q.stderr
    finally:
        server.stop()


def test_rule_files_read_only_allowed_variables(tmp_path: Path) -> None:
    server = FaultServer(lambda seen: Reply(200, GOOD))
    try:
        folder = rules_dir(tmp_path, f"{{url: '{server.url}', headers: {{X-Dashboard: '${{GH_TOKEN}}'}}}}")
        args = ["plan", str(folder), *WINDOW]
        code, _, err = run(args, {"GH_TOKEN": TOKEN})                       # nothing allowed: the default
        assert code == 1 and "GH_TOKEN may not be read by rule files" in err and server.seen == []
        code, _, err = run([*args, "--allow-env", "VM_TOKEN"], {"GH_TOKEN": TOKEN})
        assert code == 1 and server.seen == []
        code, _, err = run([*args, "--allow-env", "GH_TOKEN=https://vm.example.org/"], {"GH_TOKEN": TOKEN})
        assert code == 1 and "GH_TOKEN may not be sent to" in err and server.seen == []
        code, _, err = run(args, {"GH_TOKEN": TOKEN, "VMRULES_ALLOW_ENV": f"GH_TOKEN={server.url}/"})
        assert code == 0, err
        assert [s.headers["X-Dashboard"] for s in server.seen] == [TOKEN]
        code, _, err = run(args, {"VMRULES_ALLOW_ENV": "not a list="})
        assert code == 2 and "VMRULES_ALLOW_ENV" in err
    finally:
        server.stop()


def test_service_headers_follow_the_same_allow_list(tmp_path: Path) -> None:
    receiver = FaultServer(lambda seen: Reply(200, b"{}"))
    try:
        data = tmp_path / "data.jsonl"
        data.write_text(export_jsonl())
        folder = rules_dir(tmp_path, f"{{url: 'file:{data}'}}",
                           f"hook: {{type: webhook, url: '{receiver.url}/h', headers: {{X-T: '${{HOOK}}'}}}}",
                           "hook")
        (folder / "r.yaml").write_text((folder / "r.yaml").read_text().replace("query: m", "query: cpu_usage"))
        args = ["apply", str(folder), "--output-dir", str(tmp_path / "o"), *WINDOW]
        code, _, err = run(args, {"HOOK": TOKEN})
        assert code == 1 and "HOOK may not be read" in err and receiver.seen == []
        code, _, err = run([*args, "--allow-env", f"HOOK={receiver.url}/h"], {"HOOK": TOKEN})
        assert code == 0, err
        assert {s.headers["X-T"] for s in receiver.seen} == {TOKEN}
    finally:
        receiver.stop()


@pytest.mark.parametrize("url, prefix, ok", [
    ("http://vm:8428/api/v1/query", "http://vm:8428", True),
    ("http://vm:8428/select/0/prometheus", "http://vm:8428/select/", True),
    ("http://vm:8428/selectx", "http://vm:8428/select", False),
    ("http://vm:8428.evil.org/", "http://vm:8428", False),
    ("https://vm/", "http://vm/", False),
    ("http://vm:80/x", "http://VM/", True),
    ("http://other:8428/", "http://vm:8428", False),
])
def test_url_prefixes(url: str, prefix: str, ok: bool) -> None:
    assert http.url_within(url, prefix) is ok


def test_the_rule_repo_workflow_is_safe_for_forks() -> None:
    flow = yaml.safe_load((ROOT / "examples/rule-repo/.github/workflows/rules.yml").read_text())
    assert "pull_request_target" not in flow[True]        # yaml reads `on:` as True
    jobs = flow["jobs"]
    for name, job in jobs.items():
        steps = job["steps"]
        secrets = any("secrets." in json.dumps(s) for s in steps)
        if secrets:                      # only a pull request from the repository itself gets a secret
            assert "github.event.pull_request.head.repo.full_name == github.repository" in job["if"], name
        for step in steps:
            script = step.get("run", "")
            assert "${{" not in script, script                    # no expression pasted into a shell script
            if "vmrules" in script:
                assert "GH_TOKEN" not in json.dumps(step.get("env", {})), step
                if "secrets." in json.dumps(step.get("env", {})):
                    allow = step["env"]["VMRULES_ALLOW_ENV"]
                    assert all("=" in item for item in allow.split(",")), allow    # each bound to a URL
                    assert "--datasource" in script
        for step in steps:
            if "with" in step and "actions/checkout" in step.get("uses", ""):
                assert step["with"].get("persist-credentials") is False
    assert all("secrets." not in json.dumps(s) for s in jobs["check"]["steps"])


def test_the_deployment_examples_allow_the_token_for_the_datasource_only() -> None:
    job = next(yaml.safe_load_all((ROOT / "examples/deploy/cronjob.yaml").read_text()))
    (container,) = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    crontab = (ROOT / "examples/deploy/crontab").read_text()
    (cron_allow,) = [x.split("=", 1)[1] for x in crontab.splitlines() if x.startswith("VMRULES_ALLOW_ENV=")]
    urls = {yaml.safe_load(p.read_text())["datasource"]["url"]
            for p in (ROOT / "examples/rule-repo/rules").glob("*.yaml") if "datasource:" in p.read_text()}
    for allow in (env["VMRULES_ALLOW_ENV"], cron_allow):
        allowed = http.parse_allow_env(allow)
        assert list(allowed) == ["VM_TOKEN"] and allowed["VM_TOKEN"]
        assert all(any(http.url_within(u, p) for p in allowed["VM_TOKEN"]) for u in urls)
        assert not http.url_within("https://attacker.example/", allowed["VM_TOKEN"][0])


# -- rule files that point elsewhere ---------------------------------------------------------------
def test_a_symlinked_rule_file_outside_the_paths_is_refused_unread(tmp_path: Path) -> None:
    secret = tmp_path / "home" / ".git-credentials"
    secret.parent.mkdir()
    secret.write_text(f"https://bob:{TOKEN}@github.com\n")
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "creds.yaml").symlink_to(secret)
    (folder / "ok.yaml").write_text("version: 1\n")
    (folder / "inner.yaml").symlink_to(folder / "ok.yaml")          # a link inside the paths is fine
    for fmt in ("text", "github", "json"):
        code, out, err = run(["validate", str(folder), "--format", fmt])
        assert code == 1 and TOKEN not in out + err and "bob" not in out + err
        assert "creds.yaml" in out and "symbolic link to a file outside" in out
    assert "inner.yaml" not in run(["validate", str(folder)])[1]


def test_a_file_that_is_not_yaml_is_never_quoted(tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "a.yaml").write_text(f"https://bob:{TOKEN}@github.com\n")
    (folder / "b.yaml").write_text(f"version: 'https://bob:{TOKEN}@github.com/and/then/a/long/path'\n")
    code, out, _ = run(["validate", str(folder)])
    assert code == 1 and TOKEN not in out and "bob" not in out
    assert "a.yaml:1:1: error: expected a mapping, got a plain value" in out
    assert max(len(x.split(": error: ")[1]) for x in out.splitlines()) < 120


# -- writes that escape the output directory -------------------------------------------------------
def file_rules(tmp_path: Path, path: str = "f.csv") -> Path:
    data = tmp_path / "data.jsonl"
    data.write_text(export_jsonl())
    return rules_dir(tmp_path, f"{{url: 'file:{data}'}}", f"f: {{type: csv, path: '{path}'}}")


def test_a_symlinked_lock_file_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".vmrules.lock").symlink_to(victim)
    code, _, err = run(["apply", str(file_rules(tmp_path)), "--output-dir", str(out), *WINDOW])
    assert code == 2 and ".vmrules.lock is a symbolic link" in err
    assert victim.read_text() == "precious\n" and not (out / "f.csv").exists()


@pytest.mark.parametrize("path", [STATE_NAME, ".vmrules.lock", "./.vmrules-state.json", ".vmrules-new"])
def test_vmrules_own_files_are_no_target_path(tmp_path: Path, path: str) -> None:
    folder = file_rules(tmp_path, path)
    code, out, _ = run(["validate", str(folder)])
    assert code == 1 and "reserved for vmrules' own files" in out
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "link").symlink_to(".")             # and not through a link either
    (folder / "r.yaml").write_text((folder / "r.yaml").read_text().replace(path, "link/" + STATE_NAME))
    code, _, err = run(["apply", str(folder), "--output-dir", str(tmp_path / "out"), *WINDOW])
    assert code == 1 and "reserved for vmrules' own files" in err
    assert not (tmp_path / "out" / STATE_NAME).exists()


def journal(out: Path, renames: list[list[object]], marks: object = None) -> None:
    out.mkdir(exist_ok=True)
    (out / STATE_NAME).write_text(json.dumps({"version": 1, "rules": {"r": {"watermark_ms": 0}},
                                              "pending": {"renames": renames, "watermarks": marks or {}}}))


@pytest.mark.parametrize("entry", ["outside", "reserved", "not beside", "absolute inside, not prepared"])
def test_a_journal_entry_outside_the_output_directory_is_refused(tmp_path: Path, entry: str) -> None:
    out = tmp_path / "out"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    ready = out / ".f.csv.x.tmp"
    out.mkdir()
    ready.write_text("planted\n")
    final = {"outside": str(victim), "reserved": str(out / STATE_NAME), "not beside": str(out / "sub" / "f.csv"),
             "absolute inside, not prepared": str(out / "g.csv")}[entry]
    journal(out, [[str(ready), final, 1]])
    code, _, err = run(["apply", str(file_rules(tmp_path)), "--output-dir", str(out), *WINDOW, "--incremental"])
    assert code == 2 and "not a vmrules state file" in err
    assert victim.read_text() == "precious\n" and ready.exists()


@pytest.mark.parametrize("state", [
    '{"version": 1, "rules": {"r": {"watermark_ms": 1e400}}}',
    '{"version": 1, "rules": {"r": {"watermark_ms": "soon"}}}',
    '{"version": 1, "rules": {}, "pending": {"renames": "rm -rf", "watermarks": {}}}',
    '{"version": 1, "rules": {}, "pending": {"renames": [[1, 2]], "watermarks": {}}}',
    '{"version": 1, "rules": {}, "pending": {"renames": [], "watermarks": {"r": 1e400}}}',
    '[1, 2]',
])
def test_a_damaged_state_file_is_a_clear_error(tmp_path: Path, state: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / STATE_NAME).write_text(state)
    code, _, err = run(["apply", str(file_rules(tmp_path)), "--output-dir", str(out), *WINDOW, "--incremental"])
    assert code == 2 and f"{STATE_NAME}: not a vmrules state file" in err and "Traceback" not in err
    assert (out / STATE_NAME).read_text() == state


def test_plan_base_with_a_committed_symlink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    folder = file_rules(repo)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    (folder / "passwd.yaml").symlink_to("/etc/passwd")
    (folder / "up.yaml").symlink_to("../../../../etc/hosts")
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "rules"]):
        subprocess.run([*git, *args], cwd=repo, check=True, capture_output=True)
    (folder / "passwd.yaml").unlink()
    (folder / "up.yaml").unlink()
    monkeypatch.chdir(repo)
    code, out, err = run(["plan", "rules", *WINDOW, "--base", "main"])
    assert code == 0, err
    assert "rule r: unchanged" in out and "Traceback" not in err
