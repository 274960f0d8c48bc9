"""Device context on this machine's real kernel: psutil readings, a busy process, interface kinds.

Nothing here is faked except where the machine cannot show a case (a Wi-Fi radio, a modem, a
Windows adapter): those are recorded sysfs shapes and adapter names. Interfaces that a test
creates (tun, veth, dummy) live in a namespace of its own, and so does the traffic that makes a
NIC drop packets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psutil
import pytest

from cxpulse.agent.device import KINDS, DeviceCounters, read_device
from cxpulse.agent.netinfo.linux import interface_kind, system_proxy
from tests.netns import Lab
from tests.requirements import require

pytestmark = pytest.mark.timeout(30)

SPIN_NAME = "cxspin"  # < 16 bytes: the kernel keeps it whole in /proc/PID/stat, where psutil reads it

# Busy on every core it can get: hashing a large buffer releases the GIL, so its threads run in
# parallel and the process outranks single-threaded neighbours even on a loaded machine.
_SPIN = (
    "import ctypes, hashlib, sys, threading, time\n"
    f"ctypes.CDLL(None).prctl(15, {SPIN_NAME.encode()!r}, 0, 0, 0)  # PR_SET_NAME\n"
    "end = time.monotonic() + float(sys.argv[1])\n"
    "buf = bytes(1 << 20)\n"
    "def spin():\n"
    "    while time.monotonic() < end:\n"
    "        hashlib.sha256(buf).digest()\n"
    "threads = [threading.Thread(target=spin) for _ in range(int(sys.argv[2]))]\n"
    "[t.start() for t in threads]\n"
    "print('ready', flush=True)\n"
    "[t.join() for t in threads]\n"
)

# Creates the tun device ``corp0`` and holds it open (a VPN client would read and write it; this
# one never reads, so packets routed into it queue up and get dropped), for at most 25 s.
_HOLD_TUN = (
    "import fcntl, os, struct, time\n"
    "fd = os.open('/dev/net/tun', os.O_RDWR)\n"
    "fcntl.ioctl(fd, 0x400454CA, struct.pack('16sH', b'corp0', 0x0001 | 0x1000))  # TUNSETIFF, TUN|NO_PI\n"
    "print('ready', flush=True)\n"
    "time.sleep(25)\n"
)

_IN_NETNS = r"""
import json, socket, sys
from cxpulse.agent.device import read_device
from cxpulse.agent.netinfo.linux import interface_kind
never = {"cpu_threshold_pct": 101, "mem_threshold_pct": 101}
first, counters = read_device(None, "corp0", **never)
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    for _ in range(2000):
        s.sendto(b"x" * 100, ("10.253.250.2", 9))  # into corp0, whose reader never reads
second, _ = read_device(counters, "corp0", **never)
print(json.dumps({"kinds": {n: interface_kind(n) for n in sys.argv[1:]}, "vpn": second.vpn,
                  "iface_kind": second.iface_kind, "first_errors": first.nic_errors,
                  "nic_errors": second.nic_errors}))
"""


def test_readings_are_in_range() -> None:
    _, counters = read_device(None)
    time.sleep(0.2)
    snap, again = read_device(counters)
    assert 0.0 <= snap.cpu_pct <= 100.0
    assert 0.0 < snap.mem_pct <= 100.0
    assert snap.nic_errors >= 0
    assert snap.iface_kind in KINDS
    assert all(isinstance(name, str) for name in snap.vpn)
    assert snap.proxy is None or isinstance(snap.proxy, str)
    assert abs(snap.ts_us / 1e6 - time.time()) < 5
    assert isinstance(again, DeviceCounters) and again.ts_mono > counters.ts_mono
    if snap.cpu_pct <= 80 and snap.mem_pct <= 90:
        assert snap.top_procs == []  # a calm machine is not scanned


def test_busy_process_shows_up_in_top_procs() -> None:
    threads = max(2, min(4, psutil.cpu_count() or 2))
    spinner = subprocess.Popen([sys.executable, "-c", _SPIN, "1.5", str(threads)], stdout=subprocess.PIPE, text=True)
    try:
        assert spinner.stdout is not None and spinner.stdout.readline() == "ready\n"
        _, counters = read_device(None, cpu_threshold_pct=0, mem_threshold_pct=0)
        time.sleep(1.2)
        snap, _ = read_device(counters, cpu_threshold_pct=0, mem_threshold_pct=0)
    finally:
        spinner.kill()
        spinner.wait(5)
    assert len(snap.top_procs) <= 3
    names = [name for name, _ in snap.top_procs]
    assert SPIN_NAME in names, snap.top_procs
    share = dict(snap.top_procs)[SPIN_NAME]
    assert 100.0 / (psutil.cpu_count() or 1) * 0.5 <= share <= 100.0  # at least half a core
    assert snap.cpu_pct > 0


def test_interface_kinds_vpn_and_drops_in_a_namespace(lab: Lab) -> None:
    desk = lab.host("desk")
    require(os.path.exists("/dev/net/tun"), "/dev/net/tun is needed to create tun devices")
    lab.link(desk, lab.host("peer"))  # veth eth0: virtual Ethernet, not a cable -> "other"
    desk.ip("tuntap", "add", "dev", "tun0", "mode", "tun")  # up, but no VPN client holds it
    desk.ip("link", "set", "tun0", "up")
    holder = desk.spawn(sys.executable, "-c", _HOLD_TUN, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
    desk.ip("addr", "add", "10.253.250.1/24", "dev", "corp0")  # exists only in this namespace
    desk.ip("link", "set", "corp0", "up")

    proc = desk.python(_IN_NETNS, "lo", "eth0", "tun0", "corp0")
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    # corp0 is named like nothing in particular: sysfs (type "none") makes it a VPN.
    assert found["kinds"] == {"lo": "loopback", "eth0": "other", "tun0": "vpn", "corp0": "vpn"}
    assert found["vpn"] == ["corp0"]  # tun0 is up without carrier: no client, not a working VPN
    assert found["iface_kind"] == "vpn"
    assert found["first_errors"] == 0
    assert found["nic_errors"] > 0  # the tun queue overflowed: tx drops on corp0


def test_kinds_from_recorded_sysfs_and_adapter_names(tmp_path) -> None:
    """Shapes of /sys/class/net on a laptop (Wi-Fi, docked NIC, LTE modem, PPP VPN) and Windows names."""

    def nic(name: str, arphrd: int, *, device: bool = False, extra: tuple[str, ...] = (), uevent: str = "") -> None:
        base = tmp_path / name
        base.mkdir()
        (base / "type").write_text(f"{arphrd}\n")
        (base / "uevent").write_text(f"INTERFACE={name}\n{uevent}")
        if device:
            (base / "device").mkdir()
        for sub in extra:
            (base / sub).mkdir()

    nic("wlp2s0", 1, device=True, extra=("wireless", "phy80211"))
    nic("enp0s31f6", 1, device=True)
    nic("wwan0", 1, device=True, uevent="DEVTYPE=wwan\n")
    nic("ppp0", 512)
    nic("br0", 1, uevent="DEVTYPE=bridge\n")
    nic("lo", 772)
    root = str(tmp_path)
    found = {n: interface_kind(n, sys_root=root) for n in ("wlp2s0", "enp0s31f6", "wwan0", "ppp0", "br0", "lo")}
    assert found == {
        "wlp2s0": "wifi",
        "enp0s31f6": "ethernet",
        "wwan0": "cellular",
        "ppp0": "vpn",
        "br0": "other",
        "lo": "loopback",
    }

    windows = {
        "Wi-Fi 2": "wifi",
        "Ethernet": "ethernet",
        "Local Area Connection 2": "ethernet",
        "Local Area Connection* 3": "other",
        "Cellular": "cellular",
        "Cisco AnyConnect Secure Mobility Client Connection": "vpn",
        "Loopback Pseudo-Interface 1": "loopback",
        "vEthernet (WSL)": "other",
        "utun3": "vpn",
        "wg0": "vpn",
        "en7": "other",
    }
    missing = str(tmp_path / "no-sysfs")
    assert {n: interface_kind(n, sys_root=missing) for n in windows} == windows


def test_proxy_comes_from_the_environment_without_credentials() -> None:
    assert system_proxy({}) is None
    assert system_proxy({"HTTPS_PROXY": "http://proxy.corp:3128"}) == "http://proxy.corp:3128"
    assert system_proxy({"https_proxy": "http://a:3128", "HTTPS_PROXY": "http://b:3128"}) == "http://a:3128"
    assert system_proxy({"https_proxy": "http://bob:p@ss@proxy.corp:3128/"}) == "http://proxy.corp:3128/"
    assert system_proxy({"https_proxy": "proxy.corp:8080"}) == "proxy.corp:8080"


def test_cost_per_call() -> None:
    """CPU time per call (process time: what the agent's own CPU pays, whatever else loads the machine),
    light and with the process scan, printed for docs/ and bounded at ten times the figures there."""
    _, counters = read_device(None)
    results = {}
    for label, threshold, calls in (("light", 101.0, 300), ("process scan", 0.0, 30)):
        started = time.process_time()
        for _ in range(calls):
            _, counters = read_device(counters, cpu_threshold_pct=threshold, mem_threshold_pct=threshold)
        results[label] = (time.process_time() - started) / calls * 1e3
    n = len(psutil.pids())
    print(
        f"\nread_device CPU per call: light {results['light']:.3f} ms, with process scan "
        f"{results['process scan']:.2f} ms ({n} processes, {os.cpu_count()} CPUs)"
    )
    assert results["light"] < 2.0, results  # about 0.2 ms
    assert results["process scan"] < 10.0 + 0.7 * n, results  # about 7 ms; some 20 ms with 300 processes


# Inside the desk's namespace: the desk's own traffic on its veth, read as the agent reads it.
# Up: UDP datagrams the desk sends to the peer, over two readings (the best is a rate held for two).
# Down: bytes a TCP server on the peer sends it, 3 MiB in each of two readings.
_TRAFFIC_IN_NETNS = r"""
import json, socket, sys, time
from cxpulse.agent.device import own_traffic_columns, read_device
iface, peer, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
never = {"cpu_threshold_pct": 101, "mem_threshold_pct": 101}
first, c = read_device(None, iface, gateway=peer, **never)
out = {"first": [first.up_kbps, first.dn_kbps], "sent": [], "got": [], "up": [], "down": []}
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    for _ in range(2):
        out["sent"].append(sum(s.sendto(b"x" * 1400, (peer, 9)) for _ in range(3000)))
        before = c.ts_mono
        snap, c = read_device(c, iface, gateway=peer, **never)
        out["up"].append([snap.up_kbps, snap.up_best_kbps, c.ts_mono - before])
with socket.create_connection((peer, port), timeout=10) as s:
    for _ in range(2):
        got = 0
        while got < 3 << 20:
            chunk = s.recv(min(1 << 16, (3 << 20) - got))
            if not chunk:
                break
            got += len(chunk)
        out["got"].append(got)
        before = c.ts_mono
        snap, c = read_device(c, iface, gateway=peer, **never)
        out["down"].append([snap.dn_kbps, snap.dn_best_kbps, c.ts_mono - before])
down = snap
calm, c = read_device(c, iface, gateway=peer, **never)
moved, _ = read_device(c, iface, gateway="10.253.99.1", **never)
out.update({"calm": [calm.up_kbps, calm.up_best_kbps, calm.dn_best_kbps],
                    "moved": [moved.up_best_kbps, moved.dn_best_kbps],
            "speed": down.link_mbps, "traffic": sorted(down.traffic), "wire": own_traffic_columns(down)})
print(json.dumps(out))
"""

_SEND_6MB = (
    "import socket, sys\n"
    "srv = socket.create_server((sys.argv[1], 0))\n"
    "srv.settimeout(15)\n"
    "print(srv.getsockname()[1], flush=True)\n"
    "conn, _ = srv.accept()\n"
    "conn.sendall(b'y' * (6 << 20))\n"
    "conn.close()\n"
)


def test_own_traffic_rate_and_best_on_a_veth(lab: Lab) -> None:
    """Real bytes through a real veth: the rates are the bytes the kernel counted, headers included;
    the best is the lower of two consecutive readings (a rate the link held), fading slowly."""
    desk, peer = lab.host("desk"), lab.host("peer")
    link = lab.link(desk, peer)
    server = peer.spawn(sys.executable, "-c", _SEND_6MB, link.b_addr, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    port = server.stdout.readline().strip()
    proc = desk.python(_TRAFFIC_IN_NETNS, link.a_if, link.b_addr, port)
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["first"] == [None, None], "no rate without a previous reading"
    for sent, (kbps, _, secs) in zip(r["sent"], r["up"]):
        # 3,000 datagrams of 1,400 bytes: on the wire each carries 42 more (UDP, IP, Ethernet headers).
        assert sent <= kbps * 1000 / 8 * secs <= 3000 * 1442 * 1.02 + 20_000, r
    (up1, best1, _), (up2, best2, _) = r["up"]
    assert best1 == 0.0, "one reading is not yet a rate the link held"
    assert best2 == min(up1, up2), r["up"]
    assert r["got"] == [3 << 20, 3 << 20]
    # Per reading the NIC may be ahead of the reader (the socket buffers what arrived); both together
    # hold all 6 MiB: once the reader has it all, the kernel counted it all.
    dn_bytes = sum(kbps * 1000 / 8 * secs for kbps, _, secs in r["down"])
    assert 6 << 20 <= dn_bytes <= (6 << 20) * 1.1 + 20_000, r  # TCP/IP headers: a few %
    (dn1, _, _), (dn2, dn_best, _) = r["down"]
    assert dn_best == min(dn1, dn2), r["down"]
    calm_up, calm_up_best, calm_dn_best = r["calm"]
    assert calm_up < up2 / 10, "an idle reading right after is near zero"
    assert best2 * 0.999 <= calm_up_best <= best2, "the best fades slowly (half-life a day), not at once"
    assert calm_dn_best >= dn_best * 0.999
    assert r["moved"] == [0.0, 0.0], "a new gateway: a new link, its best starts again"
    assert r["traffic"] == [link.a_if], "per NIC, loopback left out"
    assert r["speed"] == (_veth_speed(desk, link.a_if) or None), "the link speed psutil reads (veth: 10000 Mbit/s)"
    assert r["wire"]["dn"] == round(dn2) and r["wire"]["dnb"] == round(dn_best)


def _veth_speed(host, iface: str) -> int:
    out = host.python("import psutil, sys; print(psutil.net_if_stats()[sys.argv[1]].speed)", iface).stdout
    return int(out.strip())


# Inside a namespace whose veth carries nothing: the best kept before a "restart" of the agent.
_RESTART_IN_NETNS = r"""
import json, sys, time
from cxpulse.agent.device import BEST_HALF_LIFE_S, DeviceCounters, load_best, read_device, save_best
iface, path = sys.argv[1], sys.argv[2]
never = {"cpu_threshold_pct": 101, "mem_threshold_pct": 101}
_, c = read_device(None, iface, gateway="192.0.2.1", **never)
c = DeviceCounters(**{**c.__dict__, "best": (8000.0, 40000.0), "ts_wall": time.time() - BEST_HALF_LIFE_S})
save_best(path, c)
kept = load_best(path)
_, c1 = read_device(None, iface, gateway="192.0.2.1", remembered=kept, **never)
same, _ = read_device(c1, iface, gateway="192.0.2.1", **never)
_, c2 = read_device(None, iface, gateway="192.0.2.99", remembered=kept, **never)
other, _ = read_device(c2, iface, gateway="192.0.2.99", **never)
print(json.dumps({"kept": kept, "same": [same.up_best_kbps, same.dn_best_kbps],
                  "other": [other.up_kbps, other.up_best_kbps, other.dn_kbps, other.dn_best_kbps]}))
"""


def test_the_best_survives_a_restart_of_the_same_link_only(lab: Lab, tmp_path) -> None:
    """A restarted agent keeps its link's best (faded by its age), so a modest transfer after a
    reboot is not "the most the link carried"; another link's best is not taken."""
    from cxpulse.agent.device import load_best

    desk = lab.host("desk")
    link = lab.link(desk, lab.host("peer"))
    path = str(tmp_path / "device_best.json")
    r = json.loads(desk.python(_RESTART_IN_NETNS, link.a_if, path).stdout.strip().splitlines()[-1])
    assert r["kept"]["up"] == 8000.0 and r["kept"]["link"] == [link.a_if, "192.0.2.1"]
    up_best, dn_best = r["same"]
    assert 3_990 <= up_best <= 4_010 and 19_950 <= dn_best <= 20_050, "kept a day ago: half of it"
    _, up_best, _, dn_best = r["other"]
    assert up_best < 100 and dn_best < 100, "another gateway (the laptop went home): its own best"
    (tmp_path / "bad.json").write_text('{"link": ["x"], "up": "lots"')
    assert load_best(str(tmp_path / "bad.json")) is None and load_best(str(tmp_path / "none.json")) is None
