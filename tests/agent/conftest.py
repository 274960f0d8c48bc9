"""Fixtures for agent tests that need real kernels: a network lab, raw ICMP, IPv6 loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.netns import Lab, require_netns
from tests.requirements import require


@pytest.fixture
def lab() -> Iterator[Lab]:
    require_netns()
    with Lab() as lab:
        yield lab


@pytest.fixture
def raw_icmp() -> None:
    """Opening the socket is the test: euid 0 inside a user namespace is not enough."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
    except OSError as exc:
        require(False, f"raw ICMP sockets need root or CAP_NET_RAW ({exc})")


@pytest.fixture(params=["127.0.0.1", "::1"], ids=["ipv4", "ipv6"])
def loopback(request: pytest.FixtureRequest) -> str:
    """Each loopback address in turn; ::1 requires IPv6 on this host."""
    if request.param == "::1":
        require(_ipv6_loopback(), "IPv6 loopback (::1) is not available here")
    return request.param


def _ipv6_loopback() -> bool:
    """Whether ::1 exists here: containers and hardened hosts often disable IPv6."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True
