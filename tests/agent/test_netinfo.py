"""Default gateway discovery: recorded /proc trees with expected answers, then a real namespace."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

import cxpulse.agent.netinfo as netinfo
from cxpulse.agent.netinfo import Gateway, default_gateway
from tests.agent import _children as child
from tests.netns import Lab
from tests.requirements import require

pytestmark = pytest.mark.timeout(20)

DATA = Path(__file__).parent / "data"
SCENARIOS = sorted(p.name for p in DATA.iterdir() if (p / "expected.json").is_file())


def _on_linux() -> None:
    require(sys.platform.startswith("linux"), "the procfs reader is the Linux backend")


def test_public_api_is_the_same_on_every_os() -> None:
    assert netinfo.__all__ == ["Gateway", "default_gateway"]
    assert [f.name for f in dataclasses.fields(Gateway)] == ["address", "interface", "metric"]


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
