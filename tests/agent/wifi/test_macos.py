"""The macOS reader without a Mac: a fake CoreWLAN with CWInterface's method names, and the tool
chain fed recorded outputs on a fake clock (which source answers, and how often each is run)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from cxpulse.agent.wifi import HIDDEN, macos
from cxpulse.agent.wifi.parsers._model import NO_WIFI_INTERFACE

FIXTURES = Path(__file__).parent / "fixtures"


class _Channel:
    def __init__(self, number: int, band: int, width: int):
        self._n, self._b, self._w = number, band, width

    def channelNumber(self):
        return self._n

    def channelBand(self):
        return self._b

    def channelWidth(self):
        return self._w


class _Interface:
    """CWInterface as PyObjC shows it: methods named after the Objective-C selectors, nil as None."""

    def __init__(
        self,
        power=True,
        mode=1,
        channel=_Channel(44, 2, 3),  # noqa: B008 - immutable, shared by design
        ssid="Office",
        bssid="0:1b:2c:3d:4e:5f",
        rssi=-61,
        noise=-92,
        rate=866.0,
        phy=5,
    ):
        self.v = {
            "power": power,
            "mode": mode,
            "channel": channel,
            "ssid": ssid,
            "bssid": bssid,
            "rssi": rssi,
            "noise": noise,
            "rate": rate,
            "phy": phy,
        }

    def interfaceName(self):
        return "en0"

    def powerOn(self):
        return self.v["power"]

    def interfaceMode(self):
        return self.v["mode"]

    def wlanChannel(self):
        return self.v["channel"]

    def ssid(self):
        return self.v["ssid"]

    def bssid(self):
        return self.v["bssid"]

    def rssiValue(self):
        return self.v["rssi"]

    def noiseMeasurement(self):
        return self.v["noise"]

    def transmitRate(self):
        return self.v["rate"]

    def activePHYMode(self):
        return self.v["phy"]


class _Client:
    def __init__(self, iface):
        self.iface, self.calls = iface, 0

    def interface(self):
        self.calls += 1
        return self.iface


@pytest.mark.skipif(sys.platform == "darwin", reason="on macOS CoreWLAN is meant to load")
def test_corewlan_is_not_imported_off_macos() -> None:
    assert macos._load_corewlan() is None and "CoreWLAN" not in sys.modules


def test_corewlan_connected_is_read_on_every_look() -> None:
    client = _Client(_Interface())
    reader = macos.MacReader(client=client, run=lambda cmd: pytest.fail(f"no tool may run: {cmd}"))
    readings = [reader.read() for _ in range(3)]
    assert client.calls == 3 and reader.source == "corewlan"
    r = readings[-1]
    assert (r.connected, r.source, r.interface, r.ssid, r.bssid) == (
        True,
        "corewlan",
        "en0",
        "Office",
        "00:1b:2c:3d:4e:5f",
    )
    assert (
        r.rssi_dbm,
        r.noise_dbm,
        r.snr_db,
        r.channel,
        r.band,
        r.frequency_mhz,
        r.width_mhz,
        r.phy,
        r.tx_rate_mbps,
    ) == (-61, -92, 31, 44, "5", 5220, 80, "802.11ac", 866.0)


def test_corewlan_without_location_permission_hides_identity_once(caplog) -> None:
    reader = macos.MacReader(client=_Client(_Interface(ssid=None, bssid=None)))
    with caplog.at_level("WARNING"):
        a, b = reader.read(), reader.read()
    assert (a.connected, a.ssid, a.bssid, a.hidden_by_os, a.rssi_dbm) == (True, HIDDEN, None, True, -61)
    assert b == a
    assert sum("Location Services" in rec.message for rec in caplog.records) == 1


@pytest.mark.parametrize(
    "iface, note",
    [
        (_Interface(power=False), "Wi-Fi is off"),
        (_Interface(mode=0, channel=None, ssid=None, bssid=None, rssi=0, noise=0, rate=0.0), None),
        (_Interface(mode=0), None),  # stale channel while not associated
    ],
)
def test_corewlan_off_or_not_associated_is_not_connected(iface, note) -> None:
    r = macos.MacReader(client=_Client(iface)).read()
    assert (r.connected, r.interface, r.note, r.rssi_dbm, r.ssid) == (False, "en0", note, None, None)


def test_corewlan_without_a_wifi_interface() -> None:
    r = macos.MacReader(client=_Client(None)).read()
    assert (r.connected, r.note) == (False, NO_WIFI_INTERFACE)


class _Tools:
    """Recorded outputs per tool name; counts the runs."""

    def __init__(self, outputs: dict[str, str | None]):
        self.outputs, self.runs = outputs, []

    def __call__(self, cmd: list[str]) -> str | None:
        name = Path(cmd[0]).name
        self.runs.append(name)
        return self.outputs.get(name)


def _fixture(rel: str) -> str:
    return (FIXTURES / rel).read_text(encoding="utf-8")


def _reader(tools: _Tools, clock: list[float], root: bool = True) -> macos.MacReader:
    return macos.MacReader(client=None, run=tools, is_root=root, have=lambda tool: True, clock=lambda: clock[0])


def test_wdutil_every_10s_and_nothing_in_between() -> None:
    tools = _Tools({"wdutil": _fixture("wdutil/macos15-5ghz-redacted.txt")})
    clock = [1000.0]
    reader = _reader(tools, clock)
    seen = []
    for _ in range(7):  # 30 s of 5 s looks
        seen.append(reader.read())
        clock[0] += 5
    assert tools.runs == ["wdutil"] * 4  # at 0, 10, 20, 30 s
    fresh = [r for r in seen if r.connected is not None]
    assert len(fresh) == 4 and all(r.source == "wdutil" and r.rssi_dbm == -79 for r in fresh)
    assert [r.note for r in seen if r.connected is None] == [macos.NOT_DUE] * 3
    assert reader.source == "wdutil"


def test_without_root_system_profiler_every_60s() -> None:
    tools = _Tools({"system_profiler": _fixture("system_profiler/json-macos-15.5-connected.json")})
    clock = [0.0]
    reader = _reader(tools, clock, root=False)
    looks = []
    for _ in range(25):  # 120 s of 5 s looks
        looks.append(reader.read())
        clock[0] += 5
    assert tools.runs.count("wdutil") == 0
    assert tools.runs.count("system_profiler") == 3  # at 0, 60 and 120 s
    assert sum(r.connected is True for r in looks) == 3


def test_a_tool_that_stops_answering_moves_down_the_chain() -> None:
    tools = _Tools(
        {
            "wdutil": _fixture("wdutil/macos12-2.4ghz.txt"),
            "system_profiler": _fixture("system_profiler/json-macos-15.5-wifi-off.json"),
        }
    )
    clock = [0.0]
    reader = _reader(tools, clock)
    assert reader.read().source == "wdutil"
    tools.outputs["wdutil"] = None  # e.g. wdutil removed by an OS update
    tools.outputs["airport"] = _fixture("airport/macos-14.4-deprecated-stub.txt")  # a stub: no answer
    clock[0] += 10
    r = reader.read()
    assert (r.source, r.connected) == ("system_profiler", False)
    assert tools.runs == ["wdutil", "wdutil", "airport", "system_profiler"]
    assert reader.source == "system_profiler"


@pytest.mark.parametrize(
    "tool, rel",
    [
        ("wdutil", "wdutil/macos-power-off-from-not-associated.txt"),
        ("airport", "airport/off-handmade.txt"),
        ("system_profiler", "system_profiler/json-macos-15.5-wifi-off.json"),
    ],
)
def test_radio_off_from_each_tool_is_not_connected(tool, rel) -> None:
    reader = _reader(_Tools({tool: _fixture(rel)}), [0.0], root=tool == "wdutil")
    r = reader.read()
    assert (r.connected, r.source) == (False, tool)


def test_no_tool_answers() -> None:
    reader = _reader(_Tools({}), [0.0])
    r = reader.read()
    assert r.connected is None and r.note == "no Wi-Fi tool answered"


@pytest.mark.skipif(
    os.environ.get("CXPULSE_NATIVE_OS") != "1" or sys.platform != "darwin",
    reason="the real CoreWLAN: macOS runner only",
)
def test_native_corewlan_answers_without_a_tool() -> None:
    """On a macOS runner with the macos extra, CoreWLAN loads and answers (no radio: not connected)."""
    pytest.importorskip("CoreWLAN")
    reader = macos.MacReader(run=lambda cmd: pytest.fail(f"no tool may run: {cmd}"))
    r = reader.read()
    assert reader.source == "corewlan" and r.source == "corewlan" and r.connected in (True, False)
