"""The macOS console user through a fake SystemConfiguration: who is at the screen, by login and full name."""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

import pytest

from cxpulse.agent import desk_user_macos
from cxpulse.agent.corefoundation_macos import CF
from cxpulse.agent.desk_user_macos import console_user
from tests.agent.fake_corefoundation import FakeFrameworks

pytestmark = pytest.mark.timeout(20)

ACCOUNTS = {"maria": "Maria Silva", "joão": "João Gonçalves", "kiosk": ""}


def getpwnam(login: str) -> Any:
    if login not in ACCOUNTS:
        raise KeyError(f"getpwnam(): name not found: {login!r}")
    return SimpleNamespace(pw_name=login, pw_gecos=ACCOUNTS[login], pw_uid=501)


@pytest.mark.parametrize(
    ("console", "expected"),
    [
        ("maria", ("maria", "Maria Silva")),  # the full name macOS shows at the login window
        ("joão", ("joão", "João Gonçalves")),  # UTF-8 both ways
        ("kiosk", ("kiosk", "kiosk")),  # an account without a full name: the login
        ("ldap.user", ("ldap.user", "ldap.user")),  # a network account the directory cannot resolve now
        ("loginwindow", None),  # nobody logged in: the login window owns the console
        (None, None),  # NULL: no console session at all (headless, early boot)
    ],
)
def test_console_user(console: str | None, expected: tuple[str, str] | None) -> None:
    fake = FakeFrameworks(console=console)
    assert console_user(CF(fake, fake), getpwnam=getpwnam) == expected
    assert fake.calls.count("SCDynamicStoreCopyConsoleUser") == 1
    assert fake.leaks() == [] and fake.errors == []  # the returned CFString is released once


def test_each_call_asks_again_so_a_hot_desk_follows_the_next_user() -> None:
    fake = FakeFrameworks(console="maria")
    cf = CF(fake, fake)
    assert console_user(cf, getpwnam=getpwnam) == ("maria", "Maria Silva")
    fake.console = "loginwindow"
    assert console_user(cf, getpwnam=getpwnam) is None
    fake.console = "joão"
    assert console_user(cf, getpwnam=getpwnam) == ("joão", "João Gonçalves")
    assert fake.leaks() == [] and fake.errors == []


def test_a_failing_framework_reads_as_nobody() -> None:
    class Broken(FakeFrameworks):
        def SCDynamicStoreCopyConsoleUser(self, store: Any, uid: Any, gid: Any) -> int | None:
            raise OSError("configd is not answering")

    fake = Broken(console="maria")
    assert console_user(CF(fake, fake), getpwnam=getpwnam) is None


def test_without_the_frameworks_nobody_is_known() -> None:
    if sys.platform == "darwin":
        pytest.skip("on macOS the real frameworks load")
    assert desk_user_macos.console_user(getpwnam=getpwnam) is None


def test_the_display_name_comes_from_this_hosts_password_database() -> None:
    """The default getpwnam is the real one: the account's GECOS full name, else the login."""
    import pwd

    fake = FakeFrameworks(console="root")
    expected = pwd.getpwnam("root").pw_gecos.strip() or "root"
    assert console_user(CF(fake, fake)) == ("root", expected)
    assert fake.leaks() == [] and fake.errors == []
