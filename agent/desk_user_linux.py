"""Linux: the user of the active session on the desk's seat, read from systemd-logind's state files.
No process, no D-Bus; utmp when there is no logind; the display name is the GECOS full name.
Design notes: docs/agent-internals.md, "agent/desk_user_linux.py".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

__all__ = ["console_user", "read_session", "seat_user"]

RUN_ROOT = "/run/systemd"
SEAT = "seat0"  # the seat with the desk's screen and keyboard
DESK_TYPES = ("x11", "wayland", "tty", "mir")
MAX_SESSIONS = 256  # files looked at per read: a desk has a few; a bound for a shared server
MAX_FILE_BYTES = 16384


def read_session(path: str) -> dict[str, str]:
    """A logind state file (KEY=value lines, '#' comments) as a dict; empty if unreadable."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(MAX_FILE_BYTES)
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def _at_desk(s: dict[str, str]) -> bool:
    # CLASS: "user" ("user-early", "user-light" on newer systemd); "greeter", "lock-screen" are not a person.
    return (
        s.get("SEAT") == SEAT
        and s.get("CLASS", "user").startswith("user")
        and s.get("REMOTE", "0") != "1"
        and s.get("TYPE") in DESK_TYPES
        and bool(s.get("USER"))
        and s.get("USER") != "root"
    )


def seat_user(root: str = RUN_ROOT) -> str | None:
    """The login of the active desk session on seat0; "" when logind runs but nobody is at the desk;
    None when there is no logind state to read."""
    sessions = os.path.join(root, "sessions")
    if not os.path.isdir(sessions):
        return None
    active = read_session(os.path.join(root, "seats", SEAT)).get("ACTIVE")
    if active and "/" not in active:
        s = read_session(os.path.join(sessions, active))
        if _at_desk(s) and s.get("ACTIVE", "1") == "1":
            return s["USER"]
    try:
        names = sorted(n for n in os.listdir(sessions) if not n.endswith(".ref"))[:MAX_SESSIONS]
    except OSError:
        return None
    for name in names:  # no seat file (older logind): any active desk session on the seat
        s = read_session(os.path.join(sessions, name))
        if _at_desk(s) and s.get("ACTIVE") == "1":
            return s["USER"]
    return ""


def utmp_user(users: Iterable) -> str:
    """The first local login (no remote host, or an X display) other than root, else any other than root."""
    local: list[str] = []
    other: list[str] = []
    for u in users:
        if not u.name or u.name == "root":
            continue
        host = u.host or ""
        (local if not host or host.startswith(":") else other).append(u.name)
    return (local or other or [""])[0]


def full_name(login: str, getpwnam: Callable | None = None) -> str:
    """GECOS full name: the first comma field ("Maria Silva,Room 4,,"), else ""."""
    if getpwnam is None:
        import pwd

        getpwnam = pwd.getpwnam
    try:
        gecos = getpwnam(login).pw_gecos or ""
    except (KeyError, OSError):
        return ""
    return gecos.split(",")[0].strip()


def console_user(
    root: str = RUN_ROOT, users: Callable[[], Iterable] | None = None, getpwnam: Callable | None = None
) -> tuple[str, str] | None:
    """(login, display name) of the person at the desk; None when nobody is logged on there."""
    login = seat_user(root)
    if login is None:
        if users is None:
            import psutil

            users = psutil.users
        try:
            login = utmp_user(users())
        except Exception:  # psutil cannot read utmp: say nobody rather than fail the agent
            login = ""
    if not login:
        return None
    return login, full_name(login, getpwnam) or login
