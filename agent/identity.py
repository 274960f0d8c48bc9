"""Who this agent is: a stable id kept on disk, plus what the OS says about host and user."""

from __future__ import annotations

import getpass
import json
import os
import platform
import socket
import uuid

import psutil

from cxpulse import __version__


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
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"agent_id": value}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return value


def desk_user(configured: str = "") -> str:
    """The person at the desk: a service runs as SYSTEM/root, so prefer the logged-in console user."""
    if configured:
        return configured
    try:
        users = [u.name for u in psutil.users() if u.name and u.name not in ("root", "SYSTEM")]
    except Exception:
        users = []
    if users:
        return users[0]
    try:
        return getpass.getuser()
    except Exception:
        return ""


def os_label() -> str:
    return f"{platform.system()} {platform.release()} {platform.machine()}".strip()


def host_name() -> str:
    return socket.gethostname()


def agent_version() -> str:
    return __version__
