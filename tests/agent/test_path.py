"""Path traces over real routers in namespaces, and the rules that judge them.

The namespace tests build their own small topologies (desk -> r1 -> r2 -> r3 -> app, and a
diamond r1 -> r2a | r2b -> app) from ``tests.netns.Lab``; every address is in 10.253.0.0/16 and
exists only inside those namespaces. ``trace()`` runs in a fresh python inside ``desk``, exactly as
in the agent: a parent that must never import scapy, and a trace child that does.

The routers' ICMP rate limit (``net.ipv4.icmp_ratelimit``, one "time exceeded" per second per
destination after a small burst) is switched off: the tests ask "which routers are on the path",
and several traces per second from one desk would otherwise make answers depend on timing.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

import psutil
import pytest

from cxpulse.agent.path import Hop, PathTrace, PathWatcher, classify_hops, path_signature, trace
from cxpulse.agent.path.tracer import CHILD_MODULE, TraceCost
from tests.netns import Host, Lab, Link
from tests.requirements import require

pytestmark = pytest.mark.timeout(30)

# The scapy child is Linux's tracer (macOS and Windows trace in-process: test_trace_macos.py,
# test_trace_windows.py); it imports ``resource``, which Windows lacks.
scapy_child_os = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the scapy trace child is the Linux tracer"
)

APP_PORT = 8443

# Runs inside a namespace: trace once, then report what the agent process would look like after.
_TRACE_IN_CHILD = r"""
import asyncio, dataclasses, json, resource, sys
import psutil
from cxpulse.agent.path import trace
kwargs = json.loads(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_CHILDREN)
result = asyncio.run(trace(**kwargs))
after = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({
    "trace": dataclasses.asdict(result),
    "scapy_modules": sorted(m for m in sys.modules if m == "scapy" or m.startswith("scapy.")),
    "children_left": [p.pid for p in psutil.Process().children(recursive=True)],
    "children_cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
    "children_max_rss_kb": after.ru_maxrss,
}))
"""

# A TCP server for the "app", bounded in time; the lab kills it earlier at teardown.
_LISTEN = (
    "import socket, sys, time\n"
    "s = socket.create_server((sys.argv[1], int(sys.argv[2])))\n"
    "print('ready', flush=True)\n"
    "time.sleep(25)\n"
)


def _trace_in(host: Host, **kwargs: object) -> tuple[PathTrace, dict]:
    proc = host.python(_TRACE_IN_CHILD, json.dumps(kwargs), timeout=25)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    raw = report["trace"]
    hops = [Hop(**h) for h in raw.pop("hops")]
    cost = TraceCost(**raw.pop("cost")) if raw["cost"] else None
    raw.pop("cost", None)
    return PathTrace(**raw, hops=hops, cost=cost), report


@dataclass
class Chain:
    desk: Host
    routers: list[Host]
    app: Host
    links: list[Link]

    @property
    def target(self) -> str:
        return self.links[-1].b_addr

    @property
    def hop_addresses(self) -> list[str]:
        """What a trace must show: each router's address on the link facing the desk, then the app."""
        return [link.b_addr for link in self.links]


def _quiet_icmp_limits(host: Host) -> None:
    host.sysctl("net.ipv4.icmp_ratelimit", 0)


def _chain(lab: Lab, routers: int = 3) -> Chain:
    """desk -> r1 -> ... -> rN -> app, one /24 per link, routes both ways."""
    hosts = [lab.host("desk"), *(lab.host(f"r{i}") for i in range(1, routers + 1)), lab.host("app")]
    links = [lab.link(a, b) for a, b in itertools.pairwise(hosts)]
    for i, host in enumerate(hosts):
        _quiet_icmp_limits(host)
        if 0 < i < len(hosts) - 1:
            host.enable_forwarding()
        if i < len(hosts) - 1:
            host.default_route(links[i].b_addr)  # towards the app
            for far in links[: max(0, i - 1)]:  # back towards the desk
                host.route(str(far.network), links[i - 1].a_addr)
        else:
            host.default_route(links[-1].a_addr)
    return Chain(hosts[0], hosts[1:-1], hosts[-1], links)


# --- real paths ------------------------------------------------------------------------------


def test_trace_names_three_routers_in_order(lab: Lab, raw_icmp: None) -> None:
    chain = _chain(lab)
    found, report = _trace_in(chain.desk, target_ip=chain.target)

    assert found.error is None, found.error
    assert found.reached is True
    assert [h.address for h in found.hops] == chain.hop_addresses
    assert [h.ttl for h in found.hops] == [1, 2, 3, 4]
    for hop in found.hops:
        assert len(hop.rtt_us) == 2 and any(r is not None for r in hop.rtt_us)
        assert all(r is None or 0 <= r < 1_000_000 for r in hop.rtt_us)
    assert path_signature(found) == tuple(chain.hop_addresses)

    roles = classify_hops(found, gateway_ip=chain.links[0].b_addr)
    assert {k: v.ttl for k, v in roles.items()} == {"gateway": 1, "isp": 2, "app-edge": 4, "anchor": 3}

    # The agent side stayed light: no scapy, no leftover process.
    assert report["scapy_modules"] == []
    assert report["children_left"] == []
    cost = found.cost
    assert cost is not None and cost.cpu_s is not None and cost.max_rss_kb is not None
    print(
        f"\ntrace cost: wall {cost.wall_s:.3f} s, child cpu {cost.cpu_s:.3f} s (RUSAGE_CHILDREN delta "
        f"{report['children_cpu_s']:.3f} s), child peak RSS {cost.max_rss_kb / 1024:.1f} MiB"
    )


def test_target_dropping_icmp_gets_hops_and_is_reached_over_tcp(lab: Lab, raw_icmp: None) -> None:
    chain = _chain(lab)
    chain.app.sysctl("net.ipv4.icmp_echo_ignore_all", 1)
    server = chain.app.spawn(
        sys.executable, "-c", _LISTEN, chain.target, str(APP_PORT), stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None and server.stdout.readline() == "ready\n"

    by_icmp, _ = _trace_in(chain.desk, target_ip=chain.target, reply_timeout_s=0.5)
    assert by_icmp.error is None and by_icmp.reached is False
    assert [h.address for h in by_icmp.hops] == chain.hop_addresses[:-1]  # the routers still answer
    assert classify_hops(by_icmp, chain.links[0].b_addr)["anchor"].address == chain.hop_addresses[-2]

    by_tcp, _ = _trace_in(chain.desk, target_ip=chain.target, method="tcp", port=APP_PORT)
    assert by_tcp.error is None and by_tcp.method == "tcp"
    assert by_tcp.reached is True
    assert [h.address for h in by_tcp.hops] == chain.hop_addresses


def test_rerouted_path_is_reported_with_the_ttl_where_it_changed(lab: Lab, raw_icmp: None) -> None:
    desk, r1, r2a, r2b, app = (lab.host(n) for n in ("desk", "r1", "r2a", "r2b", "app"))
    to_r1, to_a, to_b = lab.link(desk, r1), lab.link(r1, r2a), lab.link(r1, r2b)
    a_app, b_app = lab.link(r2a, app), lab.link(r2b, app)
    target = a_app.b_addr  # the app's address on the r2a side; r2b reaches it through the app's other leg
    for host in (desk, r1, r2a, r2b, app):
        _quiet_icmp_limits(host)
    for router in (r1, r2a, r2b):
        router.enable_forwarding()
    desk.default_route(to_r1.b_addr)
    r1.route(f"{target}/32", to_a.b_addr)
    r2a.route(str(to_r1.network), to_a.a_addr)
    r2b.route(str(to_r1.network), to_b.a_addr)
    r2b.route(f"{target}/32", b_app.b_addr)
    app.default_route(a_app.a_addr)  # replies go back through r2a whatever way the probes came

    watcher = PathWatcher()
    before, _ = _trace_in(desk, target_ip=target)
    assert [h.address for h in before.hops] == [to_r1.b_addr, to_a.b_addr, target]
    assert watcher.observe(before) is None  # the first path seen is not a change

    same, _ = _trace_in(desk, target_ip=target)
    assert watcher.observe(same) is None

    r1.ip("route", "replace", f"{target}/32", "via", to_b.b_addr)
    after, _ = _trace_in(desk, target_ip=target)
    assert [h.address for h in after.hops] == [to_r1.b_addr, to_b.b_addr, target]
    change = watcher.observe(after)
    assert change is not None
    assert change.target == target and change.first_ttl == 2
    assert change.old_signature == (to_r1.b_addr, to_a.b_addr, target)
    assert change.new_signature == (to_r1.b_addr, to_b.b_addr, target)
    assert change.old_hops == same.hops and change.new_hops == after.hops


def test_child_is_killed_when_the_trace_runs_out_of_time(lab: Lab, raw_icmp: None) -> None:
    chain = _chain(lab, routers=1)
    chain.app.sysctl("net.ipv4.icmp_echo_ignore_all", 1)  # the child would wait its full 5 s
    started = time.monotonic()
    found, report = _trace_in(chain.desk, target_ip=chain.target, timeout_s=1.0, reply_timeout_s=5.0)
    assert time.monotonic() - started < 4.5
    assert found.reached is False and found.hops == []
    assert found.error is not None and "killed" in found.error
    assert found.cost is not None and 1.0 <= found.cost.wall_s < 2.0
    assert report["children_left"] == []
    leftovers = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if CHILD_MODULE in (p.info["cmdline"] or []) and chain.target in (p.info["cmdline"] or [])
    ]
    assert leftovers == []


def test_no_route_is_reported_not_raised(lab: Lab, raw_icmp: None) -> None:
    desk = lab.host("desk")  # only lo: nothing is sent, the kernel refuses to pick a route
    found, report = _trace_in(desk, target_ip="10.253.99.1")
    assert found.reached is False and found.hops == []
    assert found.error is not None and "unreachable" in found.error.lower()
    assert report["children_left"] == []


@scapy_child_os
def test_loopback_trace_keeps_scapy_out_of_this_process(raw_icmp: None) -> None:
    """The same promise in the test process itself, on 127.0.0.1 (one hop, no namespace needed)."""
    import asyncio
    import resource

    had_scapy = "scapy" in sys.modules  # another test module may have imported it; then say nothing
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    found = asyncio.run(trace("127.0.0.1", max_hops=4))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert found.error is None and found.reached is True
    assert [h.address for h in found.hops] == ["127.0.0.1"]
    if not had_scapy:
        assert "scapy" not in sys.modules
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    assert found.cost is not None
    print(
        f"\nloopback trace: wall {found.cost.wall_s:.3f} s, child cpu {cpu:.3f} s, "
        f"child peak RSS {found.cost.max_rss_kb} kB"
    )


# --- the child's own contract ------------------------------------------------------------------


def _child(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", CHILD_MODULE, *args], capture_output=True, text=True, timeout=20
    )


@scapy_child_os
def test_child_without_raw_sockets_answers_json_and_fails() -> None:
    """Root without CAP_NET_RAW: nothing is sent, so this runs in the root namespace."""
    require(shutil.which("setpriv") is not None, "setpriv (util-linux) is needed to drop CAP_NET_RAW")
    proc = _child(
        "--target", "127.0.0.1", prefix=("setpriv", "--bounding-set", "-net_raw", "--inh-caps", "-net_raw", "--")
    )
    assert proc.returncode == 3, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["reached"] is False and doc["hops"] == []
    assert "CAP_NET_RAW" in doc["error"]


@scapy_child_os
@pytest.mark.parametrize(
    "args",
    [
        ("--target", "not-an-ip"),
        ("--target", "::1"),
        ("--target", "127.0.0.1", "--max-hops", "0"),
        ("--target", "127.0.0.1", "--method", "carrier-pigeon"),
    ],
)
def test_child_rejects_bad_arguments_in_json(args: tuple[str, ...]) -> None:
    proc = _child(*args)
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["error"].startswith("usage:")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"target_ip": "app.example"},
        {"target_ip": "::1"},
        {"target_ip": "127.0.0.1", "method": "ping"},
        {"target_ip": "127.0.0.1", "max_hops": 0},
        {"target_ip": "127.0.0.1", "reply_timeout_s": 60},
    ],
)
def test_trace_refuses_bad_arguments_at_once(kwargs: dict) -> None:
    import asyncio

    with pytest.raises(ValueError):
        asyncio.run(trace(**kwargs))


# --- judging traces (recorded shapes, no network) ----------------------------------------------


def _path(
    *addresses: str | None, reached: bool = True, target: str = "10.9.9.9", error: str | None = None
) -> PathTrace:
    hops = [Hop(ttl, a, [100 if a else None]) for ttl, a in enumerate(addresses, start=1)]
    return PathTrace(target, "icmp", reached, hops, ts_us=1, error=error)


def test_signature_keeps_silent_hops_in_place_and_drops_trailing_ones() -> None:
    assert path_signature(_path("10.0.0.1", None, "10.9.9.9")) == ("10.0.0.1", "*", "10.9.9.9")
    assert path_signature(_path("10.0.0.1", "10.1.1.1", None, None, reached=False)) == ("10.0.0.1", "10.1.1.1")
    assert path_signature(_path()) == ()


@pytest.mark.parametrize(
    "old, new, first_ttl",
    [
        (("a", "b", "10.9.9.9"), ("a", "b", "10.9.9.9"), None),
        (("a", "b", "10.9.9.9"), ("a", None, "10.9.9.9"), None),  # a router skipped a probe
        (("a", None, "10.9.9.9"), ("a", "c", "10.9.9.9"), None),  # a silent router spoke up
        (("a", "b", "10.9.9.9"), ("a", "c", "10.9.9.9"), 2),
        (("a", "b", "10.9.9.9"), ("x", "c", "10.9.9.9"), 1),
        (("a", "b", "10.9.9.9"), ("a", "b", None, "10.9.9.9"), 3),  # a silent router appeared
        (("a", "b", "c", "10.9.9.9"), ("a", "b", "10.9.9.9"), 3),  # and left
    ],
)
def test_watcher_reports_only_real_changes(old: tuple, new: tuple, first_ttl: int | None) -> None:
    watcher = PathWatcher()
    assert watcher.observe(_path(*old)) is None
    change = watcher.observe(_path(*new))
    assert (change.first_ttl if change else None) == first_ttl


def test_watcher_ignores_traces_that_carry_no_evidence() -> None:
    watcher = PathWatcher()
    watcher.observe(_path("a", "b", "10.9.9.9"))
    assert watcher.observe(_path("a", "b", reached=False)) is None  # target went dark: loss, not a new path
    assert watcher.observe(_path(error="trace child killed after 15 s")) is None
    assert watcher.observe(_path(None, None, reached=False)) is None
    change = watcher.observe(_path("a", "x", "10.9.9.9"))  # still compared with the last good trace
    assert change is not None and change.first_ttl == 2
    assert watcher.observe(_path("a", "b", "10.9.9.9", target="10.8.8.8")) is None  # other target, first seen


def test_roles_on_a_home_path_through_carrier_nat() -> None:
    home = _path("192.168.1.1", "100.64.0.1", None, "9.9.9.1", "9.9.9.9", target="9.9.9.9")
    roles = {k: v.address for k, v in classify_hops(home, "192.168.1.1").items()}
    assert roles == {
        "gateway": "192.168.1.1",
        "isp": "100.64.0.1",
        "public": "9.9.9.1",
        "app-edge": "9.9.9.9",
        "anchor": "9.9.9.1",
    }

    silent_gateway = _path(None, "100.64.0.1", "9.9.9.1", reached=False, target="9.9.9.9")
    roles = {k: v.address for k, v in classify_hops(silent_gateway, None).items()}
    assert roles == {"isp": "100.64.0.1", "public": "9.9.9.1", "anchor": "9.9.9.1"}

    assert classify_hops(_path("fe80::1", "10.9.9.9"), "fe80::1%wlan0")["gateway"].ttl == 1


def test_watcher_traces_on_cadence_and_on_network_changes() -> None:
    w = PathWatcher(interval_s=300, min_gap_s=30)
    assert w.should_trace(0, "10.0.0.1", "wlan0") and w.reason == "first trace"
    assert not w.should_trace(10, "10.0.0.1", "wlan0")
    assert w.should_trace(300, "10.0.0.1", "wlan0") and w.reason == "interval"

    assert not w.should_trace(310, "10.0.0.1", "eth0")  # changed, but the last trace is 10 s old
    assert w.should_trace(330, "10.0.0.1", "eth0") and w.reason == "interface changed"
    assert not w.should_trace(340, "10.0.0.1", "eth0")

    assert w.should_trace(400, "192.168.1.1", "eth0") and w.reason == "gateway changed"
    assert not w.should_trace(500, "192.168.1.1", "eth0", public_ip="198.51.100.7")  # first known: no change
    assert not w.should_trace(510, "192.168.1.1", "eth0", public_ip=None)  # unknown is not "gone"
    assert w.should_trace(520, "192.168.1.1", "eth0", public_ip="198.51.100.99")
    assert w.reason == "public address changed"
