"""``cxpulse demo`` serves the helpdesk page on loopback with a one-time key (issue 17).

The real command as a person (and .ci/run) runs it: its printed URL answers with the page, its
printed key opens /api while the demo runs and is refused afterwards (revoked at the end), and
the loopback figures that .ci/run greps for are still printed.
"""

from __future__ import annotations

import queue
import re
import subprocess
import threading
import time

import httpx
import pytest

from tests.conftest import CXPULSE, REPO

pytestmark = pytest.mark.slow


def test_demo_prints_a_working_page_url_and_a_key_revoked_at_the_end(tmp_path):
    data = tmp_path / "demo"
    proc = subprocess.Popen(
        CXPULSE + ["demo", "--duration", "12", "--local-only", "--batch-interval", "1", "--data-dir", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )
    lines: queue.Queue = queue.Queue()
    out: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            out.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        url = key = None
        deadline = time.monotonic() + 60
        while (url is None or key is None) and time.monotonic() < deadline:  # bounded by time and by EOF
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            if m := re.search(r"helpdesk page: (http://127\.0\.0\.1:\d+)/", line):
                url = m.group(1)
            if m := re.search(r"one-time API key .*: (\S+)$", line.strip()):
                key = m.group(1)
        assert url and key, "".join(out)

        page = httpx.get(url + "/", timeout=10)
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert httpx.get(url + "/api/v1/fleet", timeout=10).status_code == 401  # no key, no data
        fleet = httpx.get(
            url + "/api/v1/fleet", params={"window": "5m"}, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        assert fleet.status_code == 200, fleet.text
        assert fleet.json()["agents_total"] >= 1

        assert proc.wait(90) == 0, "".join(out)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = "".join(out)
    assert re.search(r"(?m)^ +loopback +127\.0\.0\.1 +icmp", text), text  # what .ci/run checks

    from cxpulse.collector.security.registry import Registry

    reg = Registry.open(str(data / "collector.sqlite"))
    try:
        assert reg.verify_api_key(key) is None, "the demo's key must be revoked when the demo ends"
    finally:
        reg.close()
