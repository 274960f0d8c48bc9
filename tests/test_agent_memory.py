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


def test_prepare_keeps_httpx_command_line_tool_and_trio_out_and_httpx_still_works():
    out = run_py(
        "import sys\n"
        "from cxpulse.agent import memory\n"
        "memory.prepare()\n"
        "import httpx, httpcore._synchronization as sync\n"
        "assert httpx.Client and httpx.AsyncClient and httpx.Timeout(1.0) and sync.trio is None\n"
        "loaded = {m.split('.')[0] for m, mod in sys.modules.items() if mod}\n"
        "print(sorted(loaded & {'rich', 'click', 'pygments', 'trio', 'attr'}))\n"
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


SMAPS = """\
7f0000000000-7f0000100000 r--p 00000000 08:01 1234                       /usr/lib/libfoo.so
Rss:                 400 kB
Anonymous:             0 kB
7f0000100000-7f0000400000 r-xp 00100000 08:01 1234                       /usr/lib/libfoo.so
Rss:                1200 kB
Anonymous:             0 kB
7f0000400000-7f0000410000 r--p 00400000 08:01 1234                       /usr/lib/libfoo.so
Rss:                  64 kB
Anonymous:            64 kB
7f0000410000-7f0000420000 rw-p 00410000 08:01 1234                       /usr/lib/libfoo.so
Rss:                  64 kB
Anonymous:             8 kB
7f0000420000-7f0000430000 r--p 00000000 00:00 0
Rss:                  64 kB
Anonymous:            64 kB
7f0000430000-7f0000440000 r-xp 00000000 08:01 99                         /usr/lib/idle.so
Rss:                   0 kB
Anonymous:             0 kB
7ffc00000000-7ffc00002000 r-xp 00000000 00:00 0                          [vdso]
Rss:                   8 kB
Anonymous:             0 kB
"""


def test_only_clean_read_only_file_mappings_are_dropped():
    """A relocated read-only segment (RELRO: private copies), anything writable, anonymous memory
    and the vdso must never be dropped: their contents are not in the file."""
    from cxpulse.agent.memory import _clean_file_mappings

    assert _clean_file_mappings(SMAPS) == [
        (0x7F0000000000, 0x7F0000100000, 400),
        (0x7F0000100000, 0x7F0000400000, 1200),
    ]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/smaps and madvise")
def test_dropping_library_pages_shrinks_rss_and_the_code_still_runs():
    out = run_py(
        "import asyncio, grpc, httpx, msgpack\n"
        "from cxpulse.agent import memory\n"
        "def file_kb():\n"
        "    f = {l.split()[0]: int(l.split()[1]) for l in open('/proc/self/smaps_rollup') if l.endswith('kB\\n')}\n"
        "    return f['Rss:'] - f['Anonymous:']\n"
        "before = file_kb()\n"
        "dropped = memory.drop_clean_file_pages()\n"
        "after = file_kb()\n"
        "async def use():\n"
        "    async with grpc.aio.insecure_channel('127.0.0.1:9') as ch:\n"
        "        ch.get_state(try_to_connect=True)\n"
        "asyncio.run(use())\n"
        "assert msgpack.unpackb(msgpack.packb({'a': [1, None]})) == {'a': [1, None]}\n"
        "print(before, dropped, after)\n"
    )
    before, dropped, after = map(int, out.split())
    assert dropped > 5000 and after < before - 5000, (before, dropped, after)
