"""The agent's process never imports the collector's web stack, and httpx only for app checks.

A plain install carries starlette, uvicorn and prometheus_client for the collector (issue 20,
step 6); they must not weigh on a desk. A real ``cxpulse agent run`` runs for a few seconds in a
fresh interpreter (no collector listening: it spools), then reports what it has imported.
"""

from __future__ import annotations

import subprocess
import sys

WEB = ("starlette", "uvicorn", "prometheus_client", "cxpulse.collector")
HTTP = ("httpx", "httpcore", "truststore")

RUN = """
import os, signal, sys, threading
def report():
    print(sorted({m.split('.')[0] if not m.startswith('cxpulse.') else '.'.join(m.split('.')[:2])
                  for m, mod in sys.modules.items() if mod}))
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGTERM)
threading.Timer(float(sys.argv[1]), report).start()
from cxpulse.cli import main
sys.exit(main(sys.argv[2:]))
"""


def run_agent(tmp_path, *extra: str, seconds: float = 3.0) -> set[str]:
    argv = [
        "agent",
        "run",
        "--insecure",
        "--collector",
        "127.0.0.1:9",
        "--state-dir",
        str(tmp_path / "state"),
        "--no-gateway",
        "--target",
        "lo=127.0.0.1",
        "--batch-interval",
        "1",
        *extra,
    ]
    r = subprocess.run([sys.executable, "-c", RUN, str(seconds), *argv], capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stderr[-2000:]
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("[")][-1]
    return set(eval(line))  # a list of module names printed by the child above


def test_agent_without_apps_imports_no_web_stack_and_no_httpx(tmp_path):
    mods = run_agent(tmp_path)
    assert "cxpulse.agent" in mods  # the agent did run in this process
    assert not mods & {*WEB, *HTTP}, mods & {*WEB, *HTTP}


def test_agent_with_an_app_check_imports_httpx_but_no_web_stack(tmp_path):
    cfg = tmp_path / "agent.toml"
    cfg.write_text('[[apps]]\nname = "local"\nurl = "http://127.0.0.1:9/"\n', encoding="utf-8")
    mods = run_agent(tmp_path, "--config", str(cfg))
    assert "httpx" in mods
    assert not mods & set(WEB), mods & set(WEB)
