"""The Linux reader's no-link answers on recorded trees, and nl80211 errors that are about one
interface (down, gone) versus nl80211 itself (missing, failing)."""

from __future__ import annotations

import errno
from pathlib import Path

from cxpulse.agent.wifi import linux
from cxpulse.agent.wifi.parsers._model import WifiReading

FIXTURES = Path(__file__).parent / "fixtures"


def _tree(tmp_path: Path, proc: str | None) -> tuple[str, str]:
    net = tmp_path / "sys" / "class" / "net"
    (net / "wlan0" / "phy80211").mkdir(parents=True)
    (net / "wlan0" / "ifindex").write_text("3\n")
    (tmp_path / "proc" / "net").mkdir(parents=True)
    if proc is not None:
        (tmp_path / "proc" / "net" / "wireless").write_text(proc)
    return str(tmp_path / "sys"), str(tmp_path / "proc")


def _reader(tmp_path: Path, proc: str | None) -> linux.LinuxReader:
    sys_root, proc_root = _tree(tmp_path, proc)
    return linux.LinuxReader(sys_root=sys_root, proc_root=proc_root, iw_every_s=0, use_netlink=False)


def test_no_proc_row_for_a_cfg80211_interface_is_not_connected(tmp_path: Path) -> None:
    header = (FIXTURES / "proc" / "header-only-handmade.txt").read_text()
    r = _reader(tmp_path, header).read()
    assert (r.connected, r.interface, r.source) == (False, "wlan0", "proc")


def test_not_associated_proc_row_is_not_connected(tmp_path: Path) -> None:
    r = _reader(tmp_path, (FIXTURES / "proc" / "not-associated-handmade.txt").read_text()).read()
    assert (r.connected, r.rssi_dbm) == (False, None)


def test_unreadable_proc_leaves_the_state_unknown(tmp_path: Path) -> None:
    assert _reader(tmp_path, None).read().connected is None


class _FakeNl:
    def __init__(self, outcomes: list):
        self.outcomes, self.closed = outcomes, 0

    def link(self, ifindex: int, name: str) -> WifiReading:
        out = self.outcomes.pop(0)
        if isinstance(out, Exception):
            raise out
        return out

    def close(self) -> None:
        self.closed += 1


def _nl_reader(tmp_path: Path, fake: _FakeNl) -> linux.LinuxReader:
    sys_root, proc_root = _tree(tmp_path, (FIXTURES / "proc" / "one-interface-grideye.txt").read_text())
    reader = linux.LinuxReader(sys_root=sys_root, proc_root=proc_root, iw_every_s=0)
    reader._nl = fake
    return reader


def test_interface_down_is_not_connected_and_keeps_netlink(tmp_path: Path) -> None:
    up = WifiReading(connected=True, source="nl80211", interface="wlan0", rssi_dbm=-50)
    reader = _nl_reader(tmp_path, _FakeNl([OSError(errno.ENETDOWN, "down"), up]))
    first, second = reader._read_one("wlan0"), reader._read_one("wlan0")
    assert (first.connected, first.source, first.note) == (False, "nl80211", "interface down")
    assert second == up and not reader._nl_failed


def test_a_failing_netlink_falls_back_per_look_then_for_good(tmp_path: Path) -> None:
    fake = _FakeNl([OSError(errno.EIO, "io")])
    reader = _nl_reader(tmp_path, fake)
    r = reader._read_one("wlan0")
    assert (r.source, r.connected, r.rssi_dbm) == ("proc", True, -59)  # /proc for this look
    assert not reader._nl_failed and reader._nl is None and fake.closed == 1
    for _ in range(2):
        reader._nl = _FakeNl([OSError(errno.EIO, "io")])
        reader._read_one("wlan0")
    assert reader._nl_failed  # three in a row: nl80211 is left for good
