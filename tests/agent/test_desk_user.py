"""The desk user: the configured one wins, else the OS backend's; re-read, and a change reaches the
collector through a new stream without losing or doubling a sample."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sqlite3
import sys
import types

import pytest

from cxpulse.agent import desk_user, desk_user_linux, identity
from cxpulse.agent.identity import DeskUser
from tests.stored import rtt_samples


def test_backend_chosen_at_import_for_this_os():
    if sys.platform.startswith("linux"):
        assert desk_user._backend is desk_user_linux
    assert callable(desk_user.console_user)


def test_configured_user_wins():
    def never():
        raise AssertionError("the OS was asked although a user is configured")

    assert identity.desk_user("kiosk-3", never) == DeskUser("kiosk-3", "kiosk-3")


def test_console_user_with_display_name():
    assert identity.desk_user("", lambda: ("CORP\\msilva", "Maria Silva")) == DeskUser("CORP\\msilva", "Maria Silva")
    assert identity.desk_user("", lambda: ("maria", "")) == DeskUser("maria", "maria")


def test_nobody_at_the_desk_is_empty_never_the_service_account():
    assert identity.desk_user("", lambda: None) == DeskUser("", "")

    def broken():
        raise OSError(5, "Access is denied")

    assert identity.desk_user("", broken) == DeskUser("", "")


# -- the Windows service's session-change notice, with pywin32 replaced by fakes --


class _FakeFramework:
    def __init__(self, args):
        self.args = args
        self.statuses = []

    def GetAcceptedControls(self):
        accepted = 0
        if hasattr(self, "SvcStop"):
            accepted |= 0x1  # SERVICE_ACCEPT_STOP
        if hasattr(self, "SvcShutdown"):
            accepted |= 0x4  # SERVICE_ACCEPT_SHUTDOWN
        return accepted

    def SvcOtherEx(self, control, event_type, data):
        return ("framework", control)

    def ReportServiceStatus(self, state, waitHint=0):
        self.statuses.append(state)


@pytest.fixture
def service_windows(monkeypatch):
    """agent/service_windows.py loaded as if pywin32 were there (fake servicemanager/win32service*)."""
    util = types.SimpleNamespace(ServiceFramework=_FakeFramework)
    monkeypatch.setitem(sys.modules, "win32serviceutil", util)
    monkeypatch.setitem(sys.modules, "win32service", types.SimpleNamespace(SERVICE_STOP_PENDING=3, error=OSError))
    monkeypatch.setitem(sys.modules, "servicemanager", types.SimpleNamespace())
    spec = importlib.util.spec_from_file_location(
        "cxpulse.agent._service_windows_faked", desk_user.__file__.replace("desk_user.py", "service_windows.py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.AVAILABLE
    return mod


class _Runner:
    def __init__(self):
        self.refreshes = 0

    def refresh_user(self):
        self.refreshes += 1

    def request_stop(self):
        pass


def test_service_accepts_session_changes_and_wakes_the_refresh(service_windows):
    svc = service_windows.AgentService(["cxpulse-agent"])
    # winsvc.h: SERVICE_ACCEPT_SESSIONCHANGE = 0x80, beside stop (0x1) and shutdown (0x4).
    assert svc.GetAcceptedControls() == 0x1 | 0x4 | 0x80
    svc.SvcOtherEx(0x0E, 0x5, (1,))  # before SvcDoRun made the runner: nothing to wake, no error
    svc.runner = _Runner()
    # SERVICE_CONTROL_SESSIONCHANGE (0x0E) with WTS_SESSION_LOGON 5, LOGOFF 6, CONSOLE_CONNECT 1.
    for event in (0x5, 0x6, 0x1, 0x2):
        assert svc.SvcOtherEx(0x0E, event, (2,)) == 0
    assert svc.runner.refreshes == 4
    svc.SvcOtherEx(0x0E, 0x7, (2,))  # WTS_SESSION_LOCK: same user, nothing to read
    assert svc.runner.refreshes == 4
    assert svc.SvcOtherEx(0x0F, 0, None) == ("framework", 0x0F)  # other controls: the framework's


def test_service_runner_refresh_reaches_the_agent_on_its_loop():
    from cxpulse.agent.config import AgentConfig
    from cxpulse.agent.service import ServiceRunner

    runner = ServiceRunner(AgentConfig())
    runner.refresh_user()  # no loop yet: ignored

    async def main():
        woke = asyncio.Event()
        runner._loop = asyncio.get_running_loop()
        runner._agent = types.SimpleNamespace(refresh_user=woke.set)
        await asyncio.to_thread(runner.refresh_user)  # from another thread, as the control handler
        await asyncio.wait_for(woke.wait(), 10)

    asyncio.run(main())


# -- a real collector process and an in-process agent whose console user changes --


@pytest.mark.slow
def test_hot_desk_change_reaches_the_collector_and_every_sample_is_stored_once(tmp_path, procs, monkeypatch):
    from cxpulse.agent import runner as runner_mod
    from cxpulse.agent.config import AgentConfig, parse_target
    from cxpulse.agent.tasks import desk_user as desk_user_task
    from cxpulse.collector.store import UserChange, open_store
    from tests.conftest import CollectorProc, wait_for

    at_desk = {"user": ("CORP\\msilva", "Maria Silva")}
    monkeypatch.setattr(desk_user, "console_user", lambda: at_desk["user"])
    monkeypatch.setattr(desk_user_task, "USER_REFRESH_S", 3600.0)  # only the wake below re-reads
    db = tmp_path / "collector.sqlite"
    col = CollectorProc(tmp_path, db, extra=["--insecure"]).start()
    procs.append(col)
    cfg = AgentConfig().with_overrides(
        collector=col.address,
        state_dir=str(tmp_path / "agent"),
        agent_id="desk-hot",
        insecure=True,
        enroll_token=col.token,
        targets=(parse_target("loopback=127.0.0.1:9"),),
        probe_interval_s=0.2,
        batch_interval_s=0.5,
        measure_gateway=False,
        trace_enabled=False,
    )

    def agent_row():
        con = sqlite3.connect(db)
        try:
            return con.execute("SELECT os_user, display_name FROM agents WHERE agent_id = 'desk-hot'").fetchone()
        except sqlite3.OperationalError:
            return None
        finally:
            con.close()

    async def main():
        agent = runner_mod.Agent(cfg)
        assert (agent.hello.os_user, agent.hello.display_name) == ("CORP\\msilva", "Maria Silva")
        stop = asyncio.Event()
        task = asyncio.ensure_future(agent.run(stop))
        await asyncio.to_thread(
            wait_for, lambda: agent_row() == ("CORP\\msilva", "Maria Silva"), 30, 0.2, "Maria at the collector"
        )
        await asyncio.to_thread(wait_for, lambda: agent.uplink.stats.batches_acked >= 2, 30, 0.2, "batches acked")
        at_desk["user"] = ("CORP\\jconceicao", "João Conceição")
        agent.refresh_user()
        await asyncio.to_thread(
            wait_for, lambda: agent_row() == ("CORP\\jconceicao", "João Conceição"), 30, 0.2, "João at the collector"
        )
        acked = agent.uplink.stats.batches_acked
        await asyncio.to_thread(
            wait_for, lambda: agent.uplink.stats.batches_acked >= acked + 2, 30, 0.2, "batches acked on the new stream"
        )
        stop.set()
        await task
        return agent

    agent = asyncio.run(main())
    assert agent.uplink.stats.connects == 2  # one new stream for the change, no backoff wait
    summary = json.loads((tmp_path / "agent" / "last_run.json").read_text())
    assert summary["batches_still_spooled"] == 0 and summary["batches_dropped"] == 0
    rows = [r[:3] for r in rtt_samples(db, "desk-hot")]
    assert len(rows) == len(set(rows)), "a sample was stored twice"
    assert summary["samples_measured"] == len(rows), (summary, len(rows))
    store = open_store(str(db))
    try:
        rec = store.agent("desk-hot")
        changes = store.user_changes(rec.key, 0, 2**62)
    finally:
        store.close()
    assert [(c.os_user, c.display_name) for c in changes] == [
        ("CORP\\msilva", "Maria Silva"),
        ("CORP\\jconceicao", "João Conceição"),
    ]
    assert all(isinstance(c, UserChange) for c in changes)
