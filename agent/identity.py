"""Who this agent is: a stable id kept on disk, plus what the OS says about host and user."""

from __future__ import annotations

import json
import logging
import os
import platform
import socket
import uuid
from collections.abc import Callable
from typing import NamedTuple

from cxpulse import __version__
from cxpulse.atomicfile import write_atomic

log = logging.getLogger("cxpulse.agent.identity")


def agent_id(state_dir: str, configured: str = "") -> str:
    """Configured id, else the one generated at first start and kept in state_dir/identity.json."""
    if configured:
        return configured
    path = os.path.join(state_dir, "identity.json")
    try:
        with open(path) as f:
            value = json.load(f)["agent_id"]
        if isinstance(value, str) and value:
            return value
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        pass
    value = str(uuid.uuid4())
    os.makedirs(state_dir, exist_ok=True)
    write_atomic(path, json.dumps({"agent_id": value}).encode(), mode=0o644)
    return value


class DeskUser(NamedTuple):
    """The person at the desk: ``login`` as the OS knows it, ``display_name`` as the helpdesk does
    ("CORP\\msilva", "Maria Silva"). Both empty when nobody is logged on at the console."""

    login: str
    display_name: str


def desk_user(configured: str = "", console_user: Callable[[], tuple[str, str] | None] | None = None) -> DeskUser:
    """The configured user if any (it wins: a kiosk account, a shared login), else the console user.

    A service runs as SYSTEM/root, so the process's own user is never the answer: the per-OS
    backend (agent/desk_user.py) asks who is logged on at the desk's screen, without a fork,
    cheap enough to ask again every refresh. A backend that fails says nobody, never the service.
    """
    if configured:
        return DeskUser(configured, configured)
    if console_user is None:
        from .desk_user import console_user as from_os

        console_user = from_os
    try:
        found = console_user()
    except Exception:  # an OS call that fails must not stop the agent: nobody known at the desk
        log.debug("console user lookup failed", exc_info=True)
        found = None
    if not found or not found[0]:
        return DeskUser("", "")
    login, name = found
    return DeskUser(login, name or login)


def os_label() -> str:
    return f"{platform.system()} {platform.release()} {platform.machine()}".strip()


def host_name() -> str:
    return socket.gethostname()


def agent_version() -> str:
    return __version__
