"""Run the agent in one thread until another asks it to stop: the Windows service's core.
A service has no signals, only control messages on another thread; testable on any OS.
Design notes: docs/agent-internals.md, "agent/service_runner.py".
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING

from .config import AgentConfig

if TYPE_CHECKING:
    from .runner import Agent

__all__ = ["SERVICE_NAME", "ServiceRunner"]

SERVICE_NAME = "cxpulse-agent"  # the Windows service and the systemd unit (launchd: com.cxpulse.agent)

log = logging.getLogger("cxpulse.agent.service")


class ServiceRunner:
    """Run the agent in this thread until ``request_stop`` is called from any other thread.

    Signal handlers do the same for ``agent run`` on POSIX; a Windows service has no signals, only
    control messages arriving on another thread. A stop asked before the loop started still counts.
    """

    def __init__(self, cfg: AgentConfig):
        self.cfg = cfg
        self._lock = threading.Lock()
        self._stop_asked = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._agent: Agent | None = None

    def refresh_user(self) -> None:
        """The OS says a session changed (logon, logoff, console switch): read the desk user now."""
        with self._lock:
            loop, agent = self._loop, self._agent
        if loop is not None and agent is not None:
            loop.call_soon_threadsafe(agent.refresh_user)

    def request_stop(self) -> None:
        with self._lock:
            self._stop_asked = True
            loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        from .runner import Agent

        stop = asyncio.Event()
        with self._lock:
            self._loop, self._stop = asyncio.get_running_loop(), stop
            if self._stop_asked:
                stop.set()
        agent = Agent(self.cfg)
        with self._lock:
            self._agent = agent
        log.info(
            "agent %s starting as a service; collector %s; state %s",
            agent.agent_id,
            self.cfg.collector,
            self.cfg.state_dir,
        )
        await agent.run(stop)
        log.info("agent stopped")
