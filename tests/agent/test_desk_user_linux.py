"""The Linux console-user reader on logind state files laid out as systemd writes them."""

from __future__ import annotations

from collections import namedtuple

from cxpulse.agent import desk_user_linux as lx

Pw = namedtuple("Pw", "pw_name pw_gecos")
Utmp = namedtuple("Utmp", "name terminal host started pid")

PASSWD = {
    "maria": Pw("maria", "Maria Silva,Floor 2,,"),
    "joao": Pw("joao", "João Conceição"),
    "gdm": Pw("gdm", "Gnome Display Manager"),
    "ops": Pw("ops", ""),
}


def getpwnam(name):
    return PASSWD[name]


# Written by systemd-logind (session_save / seat_save): KEY=value lines under a comment.
SEAT0 = """# This is private data. Do not parse.
IS_SEAT0=1
CAN_MULTI_SESSION=1
CAN_TTY=1
CAN_GRAPHICAL=1
ACTIVE={active}
ACTIVE_UID=1000
SESSIONS={sessions}
UIDS=1000 125
"""

SESSION = """# This is private data. Do not parse.
UID={uid}
USER={user}
ACTIVE={active}
IS_DISPLAY={active}
STATE={state}
REMOTE={remote}
TYPE={type}
ORIGINAL_TYPE={type}
CLASS={cls}
SCOPE=session-{id}.scope
FIFO=/run/user/{uid}/systemd/sessions/{id}.ref
SEAT={seat}
TTY=tty2
VTNR=2
LEADER=1834
SERVICE={service}
REALTIME=1764930000000000
MONOTONIC=61234567
"""


def session(
    root, id, user, *, active=1, remote=0, type="wayland", cls="user", seat="seat0", service="gdm-password", uid=1000
):
    (root / "sessions").mkdir(parents=True, exist_ok=True)
    state = "active" if active else "online"
    (root / "sessions" / id).write_text(
        SESSION.format(
            id=id,
            user=user,
            active=active,
            remote=remote,
            type=type,
            cls=cls,
            seat=seat,
            service=service,
            uid=uid,
            state=state,
        )
    )


def seat(root, active, sessions):
    (root / "seats").mkdir(parents=True, exist_ok=True)
    (root / "seats" / "seat0").write_text(SEAT0.format(active=active, sessions=sessions))


def no_utmp():
    raise AssertionError("utmp read although logind state exists")


def test_active_wayland_session_on_seat0(tmp_path):
    session(tmp_path, "c1", "gdm", active=0, cls="greeter", service="gdm-launch-environment", uid=125)
    session(tmp_path, "3", "maria")
    seat(tmp_path, "3", "3 c1")
    assert lx.console_user(str(tmp_path), no_utmp, getpwnam) == ("maria", "Maria Silva")


def test_login_screen_is_nobody(tmp_path):
    session(tmp_path, "c1", "gdm", cls="greeter", service="gdm-launch-environment", uid=125)
    seat(tmp_path, "c1", "c1")
    assert lx.console_user(str(tmp_path), no_utmp, getpwnam) is None


def test_hot_desk_switch_follows_the_seat(tmp_path):
    session(tmp_path, "3", "maria", active=0)
    session(tmp_path, "7", "joao")
    seat(tmp_path, "7", "3 7")
    assert lx.console_user(str(tmp_path), no_utmp, getpwnam) == ("joao", "João Conceição")


def test_ssh_session_and_root_are_not_the_desk(tmp_path):
    session(tmp_path, "5", "ops", remote=1, type="tty", seat="")
    session(tmp_path, "6", "root", type="tty")
    assert lx.console_user(str(tmp_path), no_utmp, getpwnam) is None


def test_without_a_seat_file_any_active_desk_session(tmp_path):
    session(tmp_path, "2", "ops", type="x11")
    (tmp_path / "sessions" / "2.ref").write_text("")  # logind's FIFO beside the file
    assert lx.console_user(str(tmp_path), no_utmp, getpwnam) == ("ops", "ops")  # empty GECOS: the login


def test_seat_naming_an_unreadable_session_falls_back_to_the_scan(tmp_path):
    session(tmp_path, "4", "maria", type="tty")
    seat(tmp_path, "9", "4 9")
    assert lx.console_user(str(tmp_path), no_utmp, getpwnam) == ("maria", "Maria Silva")


def test_no_logind_uses_utmp_local_logins_first(tmp_path):
    users = [Utmp("root", "tty1", "", 0, 1), Utmp("ops", "pts/0", "10.1.2.3", 0, 2), Utmp("maria", "tty2", ":0", 0, 3)]
    assert lx.console_user(str(tmp_path / "absent"), lambda: users, getpwnam) == ("maria", "Maria Silva")
    assert lx.console_user(str(tmp_path / "absent"), lambda: users[:2], getpwnam) == ("ops", "ops")
    assert lx.console_user(str(tmp_path / "absent"), lambda: users[:1], getpwnam) is None


def test_unknown_user_in_passwd_is_its_login(tmp_path):
    session(tmp_path, "3", "ldapuser")
    seat(tmp_path, "3", "3")
    assert lx.console_user(str(tmp_path), no_utmp, getpwnam) == ("ldapuser", "ldapuser")


def test_full_name_first_gecos_field():
    assert lx.full_name("maria", getpwnam) == "Maria Silva"
    assert lx.full_name("nobody-here", getpwnam) == ""
