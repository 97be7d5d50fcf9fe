"""Deployment files: the Dockerfile builds a wheel from what it copies; the CronJob and crontab commands run."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml
from click.testing import CliRunner

from vmrules.cli import main

ROOT = Path(__file__).parent.parent
RULES = ROOT / "examples" / "rule-repo" / "rules"
DATA = f"file:{ROOT / 'examples' / 'data' / 'node.jsonl'}"


def dry_run(args: list[str], tmp_path: Path) -> None:
    """The arguments as given, with the rules and output folder of this test, planned without writing."""
    res = CliRunner(env={"VM_TOKEN": "x"}).invoke(main, [*args, "--dry-run", "--datasource", DATA])
    assert res.exit_code == 0, res.output
    assert "rule memory_pressure:" in res.stdout


def test_dockerfile_is_slim_non_root_and_builds(tmp_path: Path) -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert stages and all(s.endswith("-slim") or " AS " in s for s in stages) and stages[-1].endswith("-slim")
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["vmrules"]' in text
    src = tmp_path / "src"
    src.mkdir()
    for line in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):     # the build context it copies
        for name in line.split():
            (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "--wheel-dir", str(tmp_path / "wheels"), str(src)], check=True, timeout=300)
    (wheel,) = (tmp_path / "wheels").glob("vmrules-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "vmrules/data/vmrules.schema.json" in names and "vmrules/py.typed" in names
    assert not [n for n in names if "__pycache__" in n or n.startswith("tests/")]


def test_cronjob_manifest(tmp_path: Path) -> None:
    job = yaml.safe_load_all((ROOT / "examples" / "deploy" / "cronjob.yaml").read_text()).__next__()
    assert job["kind"] == "CronJob" and job["spec"]["concurrencyPolicy"] == "Forbid"
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["VM_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "vmrules"
    args = container["args"]
    assert "--incremental" in args and "--push-metrics" in args
    args = [str(RULES) if a == "/rules" else str(tmp_path / "data") if a == "/data" else a for a in args]
    dry_run(args, tmp_path)


def test_crontab_lines(tmp_path: Path) -> None:
    lines = [x for x in (ROOT / "examples" / "deploy" / "crontab").read_text().splitlines()
             if x.strip() and not x.startswith("#") and not re.match(r"^[A-Z_]+=", x)]
    assert len(lines) == 2
    for line in lines:
        fields = line.split(None, 5)
        assert all(re.fullmatch(r"[\d*/,-]+", f) for f in fields[:5]), line
        command = shlex.split(fields[5].split(">>")[0])
        args = command[command.index("$VMRULES") + 1:]
        args = [str(RULES) if a == "$RULES" else str(tmp_path / "vmrules.prom") if a.endswith(".prom")
                else str(tmp_path / "out") if a.startswith("/var/lib") else a for a in args]
        dry_run(args, tmp_path)
    assert "--incremental" in lines[0] and "--metrics-file" in lines[0]
