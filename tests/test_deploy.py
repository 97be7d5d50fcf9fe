"""Deployment files: the Dockerfile builds a wheel from what it copies; the CronJob and crontab commands run."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
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


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from exactly what the Dockerfile copies (the build context)."""
    tmp_path = tmp_path_factory.mktemp("wheel")
    src = tmp_path / "src"
    src.mkdir()
    for line in re.findall(r"^COPY (?!--from)(.+) \S+$", (ROOT / "Dockerfile").read_text(), re.M):
        for name in line.split():
            (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "--wheel-dir", str(tmp_path / "wheels"), str(src)], check=True, timeout=300)
    (built,) = (tmp_path / "wheels").glob("vmrules-*.whl")
    return built


def test_dockerfile_is_slim_non_root_and_builds(wheel: Path) -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert stages and all(s.endswith("-slim") or " AS " in s for s in stages) and stages[-1].endswith("-slim")
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["vmrules"]' in text
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


def test_the_wheel_installed_in_a_fresh_virtualenv_runs_without_the_checkout(wheel: Path, tmp_path: Path) -> None:
    """README "Installing without the repository": the wheel in a new virtualenv. Its dependencies come from
    this environment's site-packages (a .pth file), so that the test needs no package index."""
    import site
    import venv

    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    py = env / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   timeout=300)
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    (Path(purelib) / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    work = tmp_path / "work"
    shutil.copytree(ROOT / "rules", work / "rules")
    shutil.copy(ROOT / "examples" / "data" / "node.jsonl", work / "node.jsonl")
    exe = str(env / "bin" / "vmrules")
    version = subprocess.run([exe, "--version"], cwd=work, check=True, capture_output=True, text=True).stdout
    assert "0.1.0" in version
    located = subprocess.run([str(py), "-c", "import vmrules; print(vmrules.__file__)"], cwd=work, check=True,
                             capture_output=True, text=True).stdout
    assert located.startswith(str(env))                  # the installed package, not the checkout
    subprocess.run([exe, "validate", "rules/"], cwd=work, check=True, timeout=120)
    res = subprocess.run([exe, "apply", "rules/", "--datasource", "file:node.jsonl", "--to", "2026-11-01T00:00:00Z",
                          "--output-dir", "exports", "-q"], cwd=work, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert (work / "exports" / "node.db").exists() and list((work / "exports" / "history").rglob("*.parquet"))
