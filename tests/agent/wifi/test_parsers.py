"""Every recorded tool output parses to its expected JSON, and the parser is found from the text alone."""

from __future__ import annotations

import argparse
import io
import json
import re
from pathlib import Path

import pytest

from cxpulse.agent.wifi import UnrecognizedOutput, cli, parse_text
from cxpulse.agent.wifi.parsers import PARSERS, detect

FIXTURES = Path(__file__).parent / "fixtures"
CASES = sorted(
    p for p in FIXTURES.glob("*/*") if p.is_file() and not p.name.endswith(".expected.json") and p.name != "SOURCES.md"
)
KEYS = [
    "connected",
    "ssid",
    "bssid",
    "rssi_dbm",
    "noise_dbm",
    "channel",
    "frequency_mhz",
    "band",
    "tx_rate_mbps",
    "signal_percent",
    "source",
]
TOOL_SOURCE = {
    "netsh": "netsh",
    "airport": "airport",
    "system_profiler": "system_profiler",
    "wdutil": "wdutil",
    "iw": "iw",
    "proc": "proc",
    "nmcli": "nmcli",
    "iwconfig": "iwconfig",
}


def _expected(path: Path) -> dict:
    return json.loads((path.parent / (path.stem + ".expected.json")).read_text(encoding="utf-8"))


def _id(p: Path) -> str:
    return f"{p.parent.name}/{p.name}"


def test_every_tool_has_several_fixtures() -> None:
    for tool in TOOL_SOURCE:
        assert len([c for c in CASES if c.parent.name == tool]) >= 2, tool


def test_every_fixture_is_cited_in_sources() -> None:
    sources = (FIXTURES / "SOURCES.md").read_text(encoding="utf-8")
    for case in CASES:
        assert f"`{_id(case)}`" in sources, f"{_id(case)} has no entry in SOURCES.md"


@pytest.mark.parametrize("path", CASES, ids=_id)
def test_fixture_gives_expected_json(path: Path) -> None:
    reading = parse_text(path.read_text(encoding="utf-8"))
    got = cli.reading_json(reading)
    assert list(got) == KEYS
    assert got == _expected(path)
    assert got["source"] == TOOL_SOURCE[path.parent.name]


@pytest.mark.parametrize("path", CASES, ids=_id)
def test_expected_json_is_well_formed(path: Path) -> None:
    exp = _expected(path)
    assert list(exp) == KEYS
    if exp["bssid"] is not None:
        assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", exp["bssid"])
    assert exp["band"] in (None, "2.4", "5", "6")
    if exp["connected"] is False:
        assert exp["rssi_dbm"] is None and exp["bssid"] is None


@pytest.mark.parametrize("path", CASES, ids=_id)
def test_windows_line_endings_and_bom_change_nothing(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert parse_text("\ufeff" + text.replace("\n", "\r\n")) == parse_text(text)


def test_only_one_parser_claims_each_fixture_family() -> None:
    """The detection order matters only where it must: each fixture's own tool is the first to claim it."""
    for case in CASES:
        module = detect(case.read_text(encoding="utf-8"))
        assert module is not None and module.SOURCE == TOOL_SOURCE[case.parent.name], _id(case)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello world\n",
        "PING 127.0.0.1 (127.0.0.1) 56(84) bytes of data.\n",
        "Name: value\nOther: thing\n",
        '{"a": 1}',
    ],
)
def test_unrecognised_text_raises(text: str) -> None:
    with pytest.raises(UnrecognizedOutput):
        parse_text(text)


def test_netsh_ignores_labels_entirely() -> None:
    """Scrambling every label of a real output (as another language would) leaves the reading unchanged."""
    text = (FIXTURES / "netsh" / "en-win11-ax201.txt").read_text(encoding="utf-8")
    scrambled = re.sub(
        r"^(\s*)([^:\n]+?)(\s*:)", lambda m: m.group(1) + "Q" * len(m.group(2)) + m.group(3), text, flags=re.M
    )
    assert parse_text(scrambled) == parse_text(text)


def test_netsh_rssi_line_and_two_interfaces() -> None:
    """Recent Windows 11 adds an Rssi line; with two adapters the connected one is reported."""
    text = (FIXTURES / "netsh" / "en-disconnected-ax201.txt").read_text(encoding="utf-8")
    connected = (FIXTURES / "netsh" / "en-win11-ax201.txt").read_text(encoding="utf-8")
    connected = connected.replace(
        "    Signal               : 42%\n", "    Signal               : 42%\n    Rssi                 : -71\n"
    )
    r = parse_text(text + "\n" + connected)
    assert (r.connected, r.ssid, r.rssi_dbm, r.signal_percent) == (True, "SSID-1", -71, 42)


def _run_cli(argv: list[str], capsys, stdin: bytes | None = None, monkeypatch=None) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    args = parser.parse_args(argv)
    rc = args.func(args)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_parse_file(capsys) -> None:
    path = FIXTURES / "netsh" / "zh-cn-ac3165.txt"
    rc, out, _ = _run_cli(["wifi", "--parse", str(path)], capsys)
    assert rc == 0 and json.loads(out) == _expected(path)


def test_cli_parse_stdin_utf16(capsys, monkeypatch) -> None:
    """PowerShell's ``netsh ... > file`` writes UTF-16; a paste through stdin may be anything."""
    path = FIXTURES / "netsh" / "fr-win11-ax201.txt"
    data = path.read_text(encoding="utf-8").encode("utf-16")
    rc, out, _ = _run_cli(["wifi", "--parse", "-"], capsys, stdin=data, monkeypatch=monkeypatch)
    assert rc == 0 and json.loads(out) == _expected(path)


def test_cli_rejects_unknown_text(capsys, tmp_path) -> None:
    junk = tmp_path / "junk.txt"
    junk.write_text("this is not the output of any Wi-Fi tool\n")
    rc, out, err = _run_cli(["wifi", "--parse", str(junk)], capsys)
    assert rc == 2 and out == "" and "not recognised" in err


def test_cli_missing_file(capsys, tmp_path) -> None:
    rc, _, err = _run_cli(["wifi", "--parse", str(tmp_path / "nope.txt")], capsys)
    assert rc == 2 and "cannot read" in err


def test_parsers_all_have_the_same_shape() -> None:
    for module in PARSERS:
        assert callable(module.detect) and callable(module.parse) and isinstance(module.SOURCE, str)
