"""netinfo: the public API and backend contract, then the Linux backend on recorded /proc and /sys trees
and in a real namespace (the Windows backend has its own file, test_netinfo_windows.py)."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import json
import sys
from pathlib import Path

import pytest

import cxpulse.agent.netinfo as netinfo
from cxpulse.agent.netinfo import KINDS, DefaultRoute, Gateway, default_gateway
from cxpulse.agent.netinfo import linux as linux_backend
from tests.agent import _children as child
from tests.netns import Lab
from tests.requirements import require

pytestmark = pytest.mark.timeout(20)

DATA = Path(__file__).parent / "data"
SCENARIOS = sorted(p.name for p in DATA.iterdir() if (p / "expected.json").is_file())


def _on_linux() -> None:
    require(sys.platform.startswith("linux"), "the procfs reader is the Linux backend")


CONTRACT = ("default_routes", "interface_kinds", "vpn_interfaces", "system_proxy")


def test_public_api_is_the_same_on_every_os() -> None:
    assert netinfo.__all__ == [
        "KINDS",
        "DefaultRoute",
        "Gateway",
        "default_gateway",
        "default_routes",
        "interface_kinds",
        "system_proxy",
        "vpn_interfaces",
    ]
    assert [f.name for f in dataclasses.fields(Gateway)] == ["address", "interface", "metric"]
    assert DefaultRoute._fields == ("gateway", "interface", "metric")
    assert KINDS == ("wifi", "ethernet", "cellular", "vpn", "loopback", "other")


@pytest.mark.parametrize("name", ["linux", "windows", "macos"])
def test_every_backend_keeps_the_contract(name: str) -> None:
    """Each backend module imports here and has the four readers, callable without arguments."""
    if name == "macos" and importlib.util.find_spec("cxpulse.agent.netinfo.macos") is None:
        pytest.skip("the macOS backend is not in this checkout yet")
    backend = importlib.import_module(f"cxpulse.agent.netinfo.{name}")
    for fn in CONTRACT:
        reader = getattr(backend, fn)
        required = [
            p
            for p in inspect.signature(reader).parameters.values()
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        assert required == [], f"{name}.{fn} needs {required}"
    assert backend.DefaultRoute is DefaultRoute  # one record type for every OS


def test_public_readers_on_this_machine() -> None:
    kinds = netinfo.interface_kinds()
    assert set(kinds.values()) <= set(KINDS)
    vpn = netinfo.vpn_interfaces()
    assert vpn == sorted(vpn) and all(kinds.get(name) == "vpn" for name in vpn)
    assert all(isinstance(r, DefaultRoute) for r in netinfo.default_routes())
    proxy = netinfo.system_proxy()
    assert proxy is None or ("@" not in proxy and proxy.strip() == proxy)


def test_ipv4_is_preferred_and_the_lowest_metric_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """The choice among a backend's routes, whatever the OS: a fake backend returns a mixed list."""
    routes = [
        DefaultRoute("fe80::1%12", "Wi-Fi", 5),
        DefaultRoute("192.168.1.1", "Wi-Fi", 80),
        DefaultRoute("10.0.0.1", "Ethernet", 30),
        DefaultRoute("10.9.9.9", "Ethernet 2", 30),
    ]
    monkeypatch.setattr(netinfo, "default_routes", lambda proc_root="/proc": routes)
    assert default_gateway() == Gateway("10.0.0.1", "Ethernet", 30)  # the first of a tie
    monkeypatch.setattr(netinfo, "default_routes", lambda proc_root="/proc": routes[:1])
    assert default_gateway() == Gateway("fe80::1%12", "Wi-Fi", 5)
    monkeypatch.setattr(netinfo, "default_routes", lambda proc_root="/proc": [])
    assert default_gateway() is None


def test_a_backend_that_raises_gives_an_empty_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object) -> None:
        raise OSError("simulated: a reader nobody foresaw failing")

    for fn in CONTRACT:
        monkeypatch.setattr(netinfo._backend, fn, broken)
    assert default_gateway() is None
    assert netinfo.default_routes() == [] and netinfo.interface_kinds() == {} and netinfo.vpn_interfaces() == []
    assert netinfo.system_proxy() is None


def test_every_recorded_scenario_has_an_expectation() -> None:
    assert SCENARIOS, "no recorded /proc trees found"
    for name in SCENARIOS:
        assert (DATA / name / "net" / "route").is_file(), name


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_recorded_proc_trees(scenario: str) -> None:
    _on_linux()
    expected = json.loads((DATA / scenario / "expected.json").read_text())
    found = default_gateway(proc_root=DATA / scenario)
    assert (dataclasses.asdict(found) if found else None) == expected


def test_missing_or_unknown_files_mean_no_gateway(tmp_path: Path) -> None:
    _on_linux()
    assert default_gateway(proc_root=tmp_path) is None
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "route").write_text("Some\tOther\tFormat\nx\ty\tz\n")
    (tmp_path / "net" / "ipv6_route").write_text("not a route line\n")
    assert default_gateway(proc_root=tmp_path) is None


def test_ipv4_wins_over_a_lower_metric_ipv6_default(tmp_path: Path) -> None:
    _on_linux()
    (tmp_path / "net").mkdir()
    laptop = DATA / "laptop_dock_and_wifi" / "net"
    (tmp_path / "net" / "ipv6_route").write_text((laptop / "ipv6_route").read_text())
    assert default_gateway(proc_root=tmp_path) == Gateway("fe80::2%enp0s31f6", "enp0s31f6", 100)
    (tmp_path / "net" / "route").write_text((DATA / "vpn_full_tunnel" / "net" / "route").read_text())
    assert default_gateway(proc_root=tmp_path) == Gateway("10.253.1.1", "wlp2s0", 600)


def test_default_gateway_in_a_real_namespace(lab: Lab) -> None:
    desk, router, backup = lab.host("desk"), lab.host("router"), lab.host("backup")
    assert desk.call(child.gateway) is None  # a fresh namespace has no default route

    main, spare = lab.link(desk, router), lab.link(desk, backup)
    desk.default_route(via=main.b_addr, metric=200)
    assert desk.call(child.gateway) == {"address": main.b_addr, "interface": main.a_if, "metric": 200}

    desk.default_route(via=spare.b_addr, metric=100)  # e.g. a cable plugged in next to Wi-Fi
    assert desk.call(child.gateway) == {"address": spare.b_addr, "interface": spare.a_if, "metric": 100}


def test_linux_kinds_and_vpn_from_a_recorded_sysfs(tmp_path: Path) -> None:
    """A laptop's /sys/class/net: Wi-Fi, docked NIC, loopback, a connected tun VPN and a tun nobody holds."""

    def nic(
        name: str, arphrd: int, flags: str, carrier: str | None, *, device: bool = False, wireless: bool = False
    ) -> None:
        base = tmp_path / name
        base.mkdir()
        (base / "type").write_text(f"{arphrd}\n")
        (base / "uevent").write_text(f"INTERFACE={name}\n")
        (base / "flags").write_text(f"{flags}\n")
        if carrier is not None:
            (base / "carrier").write_text(f"{carrier}\n")
        if device:
            (base / "device").mkdir()
        if wireless:
            (base / "wireless").mkdir()

    nic("lo", 772, "0x9", "1")
    nic("wlp2s0", 1, "0x1003", "1", device=True, wireless=True)
    nic("enp0s31f6", 1, "0x1003", "0", device=True)
    nic("corp0", 65534, "0x1091", "1")  # held by a VPN client
    nic("tun1", 65534, "0x1091", "0")  # up, but no client: no carrier
    nic("wg0", 65534, "0x1090", None)  # down: carrier unreadable
    root = str(tmp_path)
    assert linux_backend.interface_kinds(root) == {
        "corp0": "vpn",
        "enp0s31f6": "ethernet",
        "lo": "loopback",
        "tun1": "vpn",
        "wg0": "vpn",
        "wlp2s0": "wifi",
    }
    assert linux_backend.vpn_interfaces(root) == ["corp0"]
    (tmp_path / "tun1" / "carrier").write_text("1\n")  # its client connected
    assert linux_backend.vpn_interfaces(root) == ["corp0", "tun1"]
    nic("ppp0", 512, "0x10d1", "1")  # a new interface: kinds are read again
    assert linux_backend.interface_kinds(root)["ppp0"] == "vpn"
    assert linux_backend.vpn_interfaces(root) == ["corp0", "ppp0", "tun1"]


def test_linux_default_routes_list_both_families() -> None:
    _on_linux()
    routes = linux_backend.default_routes(DATA / "laptop_dock_and_wifi")
    assert routes == linux_backend.ipv4_default_routes(
        DATA / "laptop_dock_and_wifi"
    ) + linux_backend.ipv6_default_routes(DATA / "laptop_dock_and_wifi")
    assert any(":" in r.gateway for r in routes) and any(":" not in r.gateway for r in routes)
