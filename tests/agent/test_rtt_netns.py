"""RTT probe inside real network namespaces: unprivileged ICMP, the fallback chain, loss, names.

Each test builds its own namespaces (tests/netns.py); all traffic stays inside them. The probe
runs in a child python inside a namespace, as root or dropped to ``nobody``.
"""

from __future__ import annotations

import pytest

from cxpulse.v1.payload import METHOD_ICMP_DGRAM, METHOD_ICMP_RAW, METHOD_TCP_CONNECT
from tests.agent import _children as child
from tests.netns import NOBODY, Host, Lab
from tests.requirements import require

pytestmark = pytest.mark.timeout(20)

PING_GROUP_ALL = "0 2147483647"  # every gid may open ICMP ping sockets
CLOSED_PORT = 9  # nothing listens in a fresh namespace: the connect is refused


def _rtts(result: dict) -> list[int | None]:
    return [s["rtt_us"] for s in result["samples"]]


def _answered(result: dict) -> bool:
    return all(isinstance(r, int) and 0 <= r < 1_000_000 for r in _rtts(result))


def _require_ipv6(host: Host) -> None:
    require("::1" in host.ip("-6", "addr", "show", "dev", "lo"), "IPv6 loopback is not available in namespaces")


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"], ids=["ipv4", "ipv6"])
def test_unprivileged_icmp_to_loopback(lab: Lab, address: str) -> None:
    desk = lab.host("desk")
    if ":" in address:
        _require_ipv6(desk)
    desk.sysctl("net.ipv4.ping_group_range", PING_GROUP_ALL)
    result = desk.call(child.measure, [METHOD_ICMP_DGRAM], [address], 1.0, 3, as_user=NOBODY)
    assert result["method"] == METHOD_ICMP_DGRAM
    assert {s["method"] for s in result["samples"]} == {METHOD_ICMP_DGRAM}
    assert {s["address"] for s in result["samples"]} == {address}
    assert _answered(result), result


def test_fallback_chain_picks_the_best_method_allowed(lab: Lab) -> None:
    desk = lab.host("desk")
    # A fresh namespace has ping sockets disabled ("1 0"), and nobody has no CAP_NET_RAW.
    plain_user = desk.call(child.measure, None, ["127.0.0.1"], 1.0, 1, CLOSED_PORT, as_user=NOBODY)
    assert plain_user["method"] == METHOD_TCP_CONNECT
    assert plain_user["samples"][0]["method"] == METHOD_TCP_CONNECT and _answered(plain_user)

    desk.sysctl("net.ipv4.ping_group_range", PING_GROUP_ALL)
    ping_group = desk.call(child.measure, None, ["127.0.0.1"], 1.0, 1, CLOSED_PORT, as_user=NOBODY)
    assert ping_group["method"] == METHOD_ICMP_DGRAM
    assert ping_group["samples"][0]["method"] == METHOD_ICMP_DGRAM and _answered(ping_group)

    admin = desk.call(child.measure, None, ["127.0.0.1"], 1.0, 1, CLOSED_PORT)
    assert admin["method"] == METHOD_ICMP_RAW
    assert admin["samples"][0]["method"] == METHOD_ICMP_RAW and _answered(admin)


def test_forced_method_the_host_refuses_reports_lost_samples(lab: Lab) -> None:
    desk = lab.host("desk")
    result = desk.call(child.measure, [METHOD_ICMP_DGRAM], ["127.0.0.1"], 1.0, 2, as_user=NOBODY)
    assert result["method"] is None
    assert [s["method"] for s in result["samples"]] == [METHOD_ICMP_DGRAM] * 2
    assert _rtts(result) == [None, None]


@pytest.mark.parametrize("method", [METHOD_ICMP_RAW, METHOD_ICMP_DGRAM])
def test_loss_when_the_far_side_stops_answering(lab: Lab, method: str) -> None:
    desk, far = lab.host("desk"), lab.host("far")
    link = lab.link(desk, far)
    desk.sysctl("net.ipv4.ping_group_range", PING_GROUP_ALL)
    user = NOBODY if method == METHOD_ICMP_DGRAM else None
    timeout_s = 0.5

    before = desk.call(child.measure, [method], [link.b_addr], timeout_s, 3, as_user=user)
    assert before["method"] == method and _answered(before), before

    far.sysctl("net.ipv4.icmp_echo_ignore_all", 1)
    silent = desk.call(child.measure, [method], [link.b_addr], timeout_s, 3, as_user=user)
    assert _rtts(silent) == [None, None, None]
    assert all(timeout_s * 0.9 <= s["elapsed_s"] <= timeout_s + 0.3 for s in silent["samples"]), silent

    far.sysctl("net.ipv4.icmp_echo_ignore_all", 0)
    after = desk.call(child.measure, [method], [link.b_addr], timeout_s, 2, as_user=user)
    assert _answered(after), after


def test_shared_socket_matches_replies_to_their_targets(lab: Lab) -> None:
    """Answering and silent targets in flight together over one socket: no reply is misattributed."""
    desk, near, silent = lab.host("desk"), lab.host("near"), lab.host("silent")
    to_near, to_silent = lab.link(desk, near), lab.link(desk, silent)
    silent.sysctl("net.ipv4.icmp_echo_ignore_all", 1)
    targets = [to_near.b_addr, to_silent.b_addr, "127.0.0.1", to_near.a_addr] * 3
    result = desk.call(child.measure_concurrently, [METHOD_ICMP_RAW], targets, 0.5)
    for target, sample in zip(targets, result["samples"]):
        assert sample["address"] == target
        assert (sample["rtt_us"] is None) == (target == to_silent.b_addr), sample
    assert result["elapsed_s"] < 0.5 + 0.3  # all in flight at once, not one after another


@pytest.mark.parametrize("method", [METHOD_ICMP_RAW, METHOD_ICMP_DGRAM])
def test_close_ends_waiting_measurements_as_lost(lab: Lab, method: str) -> None:
    desk, far = lab.host("desk"), lab.host("far")
    link = lab.link(desk, far)
    desk.sysctl("net.ipv4.ping_group_range", PING_GROUP_ALL)
    far.sysctl("net.ipv4.icmp_echo_ignore_all", 1)
    sample = desk.call(child.close_while_waiting, method, link.b_addr, 5.0)
    assert sample["method"] == method and sample["rtt_us"] is None
    assert sample["elapsed_s"] < 1.0  # ended by close(), not by the 5 s timeout


def test_tcp_silence_and_unreachable_networks_are_lost_in_time(lab: Lab) -> None:
    desk, far = lab.host("desk"), lab.host("far")
    link = lab.link(desk, far)
    far.ip("route", "add", "blackhole", f"{link.a_addr}/32")  # far answers nothing to desk
    timeout_s = 0.5
    silent = desk.call(child.measure, [METHOD_TCP_CONNECT], [link.b_addr], timeout_s, 2, 443)
    assert _rtts(silent) == [None, None]
    assert all(s["elapsed_s"] <= timeout_s + 0.3 for s in silent["samples"]), silent

    nowhere = "10.253.250.1"  # desk has no route there: the send fails at once
    for method in (METHOD_TCP_CONNECT, METHOD_ICMP_RAW):
        unreachable = desk.call(child.measure, [method], [nowhere], timeout_s, 1)
        (sample,) = unreachable["samples"]
        assert sample["rtt_us"] is None and sample["method"] == method
        assert sample["elapsed_s"] < timeout_s


def _private_resolver(host: Host, hosts: str) -> str:
    """Names resolve from the namespace's own hosts file; DNS goes to a closed local port."""
    host.etc_file("nsswitch.conf", "hosts: files dns\n")
    host.etc_file("resolv.conf", "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    return host.etc_file("hosts", hosts)


def test_names_resolve_ipv4_first_and_failures_are_lost(lab: Lab) -> None:
    desk, far = lab.host("desk"), lab.host("far")
    link = lab.link(desk, far)
    _private_resolver(
        desk, f"127.0.0.1 localhost\n::1 dual.cxpulse.test\n{link.b_addr} far.cxpulse.test dual.cxpulse.test\n"
    )
    result = desk.call(
        child.measure, [METHOD_ICMP_RAW], ["far.cxpulse.test", "dual.cxpulse.test", "nothing.cxpulse.test"], 1.0, 1
    )
    far_s, dual_s, nothing_s = result["samples"]
    assert far_s["address"] == link.b_addr and far_s["target"] == "far.cxpulse.test" and far_s["rtt_us"] is not None
    assert dual_s["address"] == link.b_addr and dual_s["rtt_us"] is not None
    assert nothing_s["address"] == "nothing.cxpulse.test" and nothing_s["rtt_us"] is None
    assert nothing_s["method"] == METHOD_ICMP_RAW and nothing_s["elapsed_s"] < 1.5


@pytest.mark.parametrize(("ttl_s", "second"), [(60.0, "first"), (0.0, "renamed")])
def test_resolution_is_cached_for_its_ttl(lab: Lab, ttl_s: float, second: str) -> None:
    desk, far = lab.host("desk"), lab.host("far")
    link = lab.link(desk, far)
    hosts_file = _private_resolver(desk, f"{link.b_addr} app.cxpulse.test\n")
    addresses = desk.call(
        child.measure_across_rename,
        "app.cxpulse.test",
        CLOSED_PORT,
        hosts_file,
        f"{link.a_addr} app.cxpulse.test\n",
        ttl_s,
    )
    assert addresses[0] == link.b_addr
    assert addresses[1] == (link.b_addr if second == "first" else link.a_addr)


def test_icmp_blocked_target_is_timed_by_tcp_instead_of_reported_lost(lab: Lab) -> None:
    """A SaaS edge that drops ping but answers on its port is not an outage."""
    desk, far = lab.host("desk"), lab.host("far")
    link = lab.link(desk, far)
    far.sysctl("net.ipv4.icmp_echo_ignore_all", 1)
    # A closed port answers with RST: that is an answer, and its time is the round trip.
    samples = desk.call(child.measure_series, link.b_addr, 443, 4, 0.5)
    # The first loss raises the question (and stays lost); from then on the port is timed.
    assert samples[0] == {"method": "icmp_raw", "rtt_us": None}, samples
    assert [s["method"] for s in samples[1:]] == ["tcp_connect"] * 3, samples
    assert all(s["rtt_us"] is not None for s in samples[1:]), samples

    # When the host answers nothing at all, it stays ICMP and lost: a real outage is not hidden.
    far.ip("route", "add", "blackhole", f"{link.a_addr}/32")
    lost = desk.call(child.measure_series, link.b_addr, 443, 3, 0.3)
    assert lost == [{"method": "icmp_raw", "rtt_us": None}] * 3, lost
