"""A plain ``pip install`` of the wheel gives a working agent and collector (issue 20, step 6).

Builds the wheel, installs it with no extras into a fresh virtual environment (dependencies from
the package registry: skipped with the reason when pip cannot reach it; CI can), then uses only
that environment's ``cxpulse``: the help texts, a collector on loopback with SQLite serving its
helpdesk page, an agent streaming to it for a few seconds, and the one-line message a PostgreSQL
URL gets without the ``postgres`` extra.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.requirements import require

REPO = Path(__file__).resolve().parents[2]
EXTRAS_ONLY = ("psycopg", "scapy", "PyInstaller")  # what a plain install must not carry


def run(argv: list[str], timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # bounded in time; each round sleeps 0.3 s
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def plain_env(tmp_path_factory) -> Path:
    """A venv holding the wheel and its core dependencies only; its bin/ directory."""
    tmp = tmp_path_factory.mktemp("plain-install")
    wheels = tmp / "wheels"
    r = run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(REPO)],
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (wheel,) = wheels.glob("cxpulse-*.whl")
    venv = tmp / "venv"
    r = run([sys.executable, "-m", "venv", str(venv)])
    assert r.returncode == 0, r.stderr
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    probe = run(
        [
            str(bindir / "python"),
            "-m",
            "pip",
            "download",
            "--no-deps",
            "-q",
            "-d",
            str(tmp / "probe"),
            "msgpack>=1.0,<2",
        ],
        timeout=120,
    )
    require(
        probe.returncode == 0,
        "pip cannot reach the package registry (the plain install needs it): "
        + (probe.stderr.strip().splitlines() or ["no output"])[-1],
    )
    r = run([str(bindir / "python"), "-m", "pip", "install", "-q", str(wheel)], timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return bindir


def cxpulse(bindir: Path, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return run([str(bindir / "cxpulse"), *argv], timeout=timeout, env=env, cwd=bindir.parent)


@pytest.mark.slow
def test_plain_install_has_no_extras_and_answers_help(plain_env):
    r = run(
        [
            str(plain_env / "python"),
            "-c",
            f"import importlib.util as u; print([m for m in {EXTRAS_ONLY!r} if u.find_spec(m)])",
        ]
    )
    assert r.stdout.strip() == "[]", r.stdout + r.stderr
    for argv in (["--help"], ["lookup", "--help"], ["collector", "serve", "--help"], ["agent", "run", "--help"]):
        r = cxpulse(plain_env, *argv)
        assert r.returncode == 0 and "usage: cxpulse" in r.stdout and "Traceback" not in r.stderr, (argv, r.stderr)


@pytest.mark.slow
def test_plain_install_collector_page_and_agent(plain_env, tmp_path):
    db = tmp_path / "collector.sqlite"
    ready = tmp_path / "ready"
    http_port = free_port()
    token = cxpulse(plain_env, "collector", "tokens", "create", "--db", str(db), "--uses", "5")
    assert token.returncode == 0, token.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    collector = subprocess.Popen(
        [
            str(plain_env / "cxpulse"),
            "collector",
            "serve",
            "--insecure",
            "--listen",
            "127.0.0.1:0",
            "--db",
            str(db),
            "--ready-file",
            str(ready),
            "--http",
            f"127.0.0.1:{http_port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    agent = None
    try:
        wait_until(
            lambda: (ready.exists() and ready.read_text().strip()) or collector.poll() is not None,
            30,
            "the collector to listen",
        )
        assert collector.poll() is None, collector.communicate(timeout=10)[0][-3000:]
        grpc_port = int(ready.read_text())
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/", timeout=10) as page:
            body = page.read().decode("utf-8", "replace")
            assert page.status == 200 and page.headers.get_content_type() == "text/html"
        assert "<html" in body.lower()

        agent = subprocess.Popen(
            [
                str(plain_env / "cxpulse"),
                "agent",
                "run",
                "--insecure",
                "--collector",
                f"127.0.0.1:{grpc_port}",
                "--enroll-token",
                token.stdout.split()[0],
                "--state-dir",
                str(tmp_path / "agent"),
                "--no-gateway",
                "--target",
                "lo=127.0.0.1",
                "--batch-interval",
                "1",
                "--user",
                "plain.install",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=tmp_path,
        )

        def delivered():
            if agent.poll() is not None:
                return True
            r = cxpulse(plain_env, "lookup", "--db", str(db), "--json", "plain.install")
            return r.returncode == 0 and r.stdout.strip()

        found = wait_until(delivered, 60, "the agent's samples in the collector")
        assert agent.poll() is None, agent.communicate(timeout=10)[0][-3000:]
        assert json.loads(found), found  # the lookup's JSON for the desk the agent reported as
    finally:
        for proc in (agent, collector):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
    out = collector.stdout.read() if collector.stdout else ""
    assert collector.returncode == 0 and "Traceback" not in out, out[-3000:]
    if agent is not None:
        agent_out = agent.stdout.read() if agent.stdout else ""
        assert agent.returncode == 0 and "Traceback" not in agent_out, agent_out[-3000:]


@pytest.mark.slow
def test_plain_install_postgres_url_names_the_extra(plain_env, tmp_path):
    for argv in (
        ["collector", "serve", "--insecure", "--listen", "127.0.0.1:0", "--db", "postgresql://u@127.0.0.1:9/x"],
        ["collector", "tokens", "list", "--db", "postgresql://u@127.0.0.1:9/x"],
    ):
        r = cxpulse(plain_env, *argv)
        assert r.returncode == 2, (argv, r.stderr)
        assert r.stderr == "cxpulse: PostgreSQL needs the 'postgres' extra: pip install 'cxpulse[postgres]'\n", r.stderr
