"""The installers workflow (packaging/ci/installers.yml) cannot run here; check what can be checked:
it parses, every job has steps, and every repository path it runs exists."""

from __future__ import annotations

import re

import pytest

from .conftest import PACKAGING, REPO

WORKFLOW = PACKAGING.parent / ".github" / "workflows" / "installers.yml"


def test_workflow_parses_and_its_jobs_chain():
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load(WORKFLOW.read_text())
    jobs = doc["jobs"]
    assert {"windows-freeze", "msi", "windows-install", "macos", "deb"} <= set(jobs)
    assert jobs["msi"]["needs"] == "windows-freeze" and jobs["windows-install"]["needs"] == "msi"
    for name, job in jobs.items():
        assert job["steps"] and "runs-on" in job, name


def test_paths_it_runs_exist():
    text = WORKFLOW.read_text()
    paths = set(re.findall(r"packaging/[\w./-]+\.(?:sh|py)", text))
    assert paths >= {"packaging/freeze.py", "packaging/windows/build-msi.sh", "packaging/macos/build.sh",
                     "packaging/linux/build-deb.sh"}
    for p in paths:
        assert (REPO / p).is_file(), p
