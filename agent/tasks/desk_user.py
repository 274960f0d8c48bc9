"""Who sits at the desk, read again every USER_REFRESH_S or when the OS announces a session change.
Writes no rows: a change goes to the Hello (Output.desk_user) and a new stream carries it.
Why not a column on every batch: docs/agent-tasks.md.
"""

from __future__ import annotations

import asyncio
import logging

from .. import identity
from ..config import Running
from .base import Output, Pace, Shared

log = logging.getLogger("cxpulse.agent")

USER_REFRESH_S = 30.0  # console user re-read: a hot desk changes hands within half a minute


class DeskUserTask:
    kind = "desk_user"
    pace: Pace = "before"  # the runner's read at start (for the first Hello) is the first pass

    def __init__(self, shared: Shared):
        self.s = shared
        self.enabled = not shared.cfg.user  # a configured user never changes
        self.wake = asyncio.Event()  # set by refresh_user (a logon, logoff or switch the OS announced)

    def interval_s(self) -> float:
        return USER_REFRESH_S

    async def start(self) -> None:
        pass

    def reconfigured(self, old: Running, new: Running) -> None:
        pass

    async def close(self) -> None:
        pass

    async def collect(self, out: Output) -> None:
        # In a thread: on Windows a domain name lookup can wait on a domain controller.
        desk = await asyncio.to_thread(identity.desk_user, self.s.cfg.user)
        if desk == self.s.desk:
            return
        log.info("desk user changed: %r -> %r", self.s.desk.login or "(nobody)", desk.login or "(nobody)")
        out.desk_user(desk)  # the runner records it in Shared.desk and the Hello
