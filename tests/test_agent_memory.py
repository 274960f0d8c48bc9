"""What keeps the agent's RSS down stays in place: each check runs in a fresh interpreter,
because what matters is what a new process imports, not what this test process already holds.
The RSS figures themselves live in the benchmark (bench/footprint.py), not here."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run_py(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_prepare_keeps_httpx_command_line_tool_out_and_httpx_still_works():
    out = run_py(
        "import sys\n"
        "from cxpulse.agent import memory\n"
        "memory.prepare()\n"
        "import httpx\n"
        "assert httpx.Client and httpx.AsyncClient and httpx.Timeout(1.0)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'rich', 'click', 'pygments'}))\n"
    )
    assert out == "[]"


def test_agent_command_does_not_load_the_collector():
    out = run_py(
        "import sys\n"
        "import cxpulse.agent.cli as a\n"
        "a.cmd_run = lambda args: print(sorted(m for m in sys.modules if m.startswith('cxpulse.collector')))\n"
        "from cxpulse import cli\n"
        "cli.main(['-v', 'agent', 'run'])\n"
    )
    assert out == "[]"


def test_collector_command_still_registered_for_everything_else():
    out = run_py(
        "import cxpulse.collector.cli as c\n"
        "from cxpulse import cli\n"
        "try:\n"
        "    cli.main(['collector', '--help'])\n"
        "except SystemExit as e:\n"
        "    print(e.code)\n"
    )
    assert out.splitlines()[-1] == "0"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc arenas are glibc's")
def test_malloc_arena_cap_is_applied_on_glibc():
    out = run_py("from cxpulse.agent import memory; print(memory.limit_malloc_arenas(2))")
    assert out == "True"
