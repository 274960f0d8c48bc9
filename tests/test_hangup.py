"""The drain's wait for agents to hang up, on real loopback sockets (collector/ingest/hangup.py)."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from collector.ingest.hangup import peer_address, still_connected, wait_hung_up


@pytest.mark.parametrize(
    ("peer", "want"),
    [
        ("ipv4:10.0.0.5:51234", ("10.0.0.5", 51234)),
        ("ipv6:[::1]:51234", ("::1", 51234)),
        ("ipv6:[fe80::1%eth0]:443", ("fe80::1", 443)),
        ("unix:/run/cxpulse.sock", None),
        ("ipv4:not-an-address:1", None),
        ("ipv4:10.0.0.5", None),
    ],
)
def test_peer_address(peer, want):
    assert peer_address(peer) == want


def _pair(family: int, host: str) -> tuple[socket.socket, socket.socket, socket.socket]:
    lsock = socket.socket(family, socket.SOCK_STREAM)
    lsock.bind((host, 0))
    lsock.listen()
    client = socket.create_connection(lsock.getsockname()[:2], timeout=5)
    server, _ = lsock.accept()
    return lsock, client, server


def _grpc_peer(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"


def test_waits_until_the_peer_closes_then_returns_at_once():
    lsock, client, server = _pair(socket.AF_INET, "127.0.0.1")
    try:
        peer = _grpc_peer(client)
        assert still_connected({peer_address(peer)}) == {peer_address(peer)}

        async def main():
            loop = asyncio.get_running_loop()
            loop.call_later(0.4, client.close)
            t0 = time.monotonic()
            left = await wait_hung_up([peer], timeout=30)
            return left, time.monotonic() - t0

        left, took = asyncio.run(main())
        assert left == 0
        assert 0.35 < took < 10, took  # after the close, long before the timeout
    finally:
        for s in (client, server, lsock):
            s.close()


def test_gives_up_after_the_timeout_and_says_how_many_were_left():
    lsock, client, server = _pair(socket.AF_INET, "127.0.0.1")
    try:
        left = asyncio.run(wait_hung_up([_grpc_peer(client)], timeout=0.2))
        assert left == 1
    finally:
        for s in (client, server, lsock):
            s.close()


def test_a_dual_stack_listener_matches_grpcs_ipv4_peer():
    """On a [::] listener an IPv4 agent's socket is an IPv4-mapped address; gRPC reports ipv4:."""
    if not socket.has_dualstack_ipv6():
        pytest.skip("no dual-stack IPv6 on this machine")
    lsock = socket.create_server(("::", 0), family=socket.AF_INET6, dualstack_ipv6=True)
    client = socket.create_connection(("127.0.0.1", lsock.getsockname()[1]), timeout=5)
    server, _ = lsock.accept()
    try:
        want = peer_address(_grpc_peer(client))
        assert still_connected({want}) == {want}
    finally:
        for s in (client, server, lsock):
            s.close()
