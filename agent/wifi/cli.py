"""``cxpulse agent wifi``: the current Wi-Fi reading, or the reading in a pasted tool output (``--parse FILE``).
The same fields whatever tool or Windows language produced the text; exit 2 when it is not recognised.
Design notes: docs/agent-internals.md, "agent/wifi/cli.py".
"""

from __future__ import annotations

import argparse
import json
import sys

from . import UnrecognizedOutput, WifiReading, parse_text, read_wifi

__all__ = ["reading_json", "register"]

KEYS = (
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
)


def register(agent_subparsers: argparse._SubParsersAction) -> None:
    """Add ``wifi`` to the ``cxpulse agent ...`` actions."""
    p = agent_subparsers.add_parser("wifi", help="show the current Wi-Fi link, or parse a pasted tool output")
    p.add_argument(
        "--parse", metavar="FILE", help="read tool output from FILE ('-' for standard input) and print it as JSON"
    )
    p.set_defaults(func=cmd_wifi)


def _rate(v: float | None) -> int | float | None:
    return None if v is None else int(v) if float(v).is_integer() else round(v, 1)


def reading_json(r: WifiReading) -> dict:
    """The --parse JSON object: exactly ``KEYS``, None where the text does not say."""
    return {
        "connected": r.connected,
        "ssid": r.ssid,
        "bssid": r.bssid,
        "rssi_dbm": r.rssi_dbm,
        "noise_dbm": r.noise_dbm,
        "channel": r.channel,
        "frequency_mhz": r.frequency_mhz,
        "band": r.band,
        "tx_rate_mbps": _rate(r.tx_rate_mbps),
        "signal_percent": r.signal_percent,
        "source": r.source,
    }


def cmd_wifi(args: argparse.Namespace) -> int:
    if args.parse is None:
        r = read_wifi()
        out = reading_json(r) | {
            "interface": r.interface,
            "phy": r.phy,
            "width_mhz": r.width_mhz,
            "rx_rate_mbps": _rate(r.rx_rate_mbps),
            "snr_db": r.snr_db,
            "hidden_by_os": r.hidden_by_os,
            "note": r.note,
        }
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return 0
    try:
        if args.parse == "-":
            text = sys.stdin.buffer.read()
        else:
            with open(args.parse, "rb") as f:
                text = f.read()
    except OSError as exc:
        print(f"cxpulse agent wifi: cannot read {args.parse}: {exc}", file=sys.stderr)
        return 2
    try:
        reading = parse_text(_decode(text))
    except UnrecognizedOutput as exc:
        print(f"cxpulse agent wifi: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(reading_json(reading), ensure_ascii=False, indent=2))
    return 0


def _decode(data: bytes) -> str:
    """Pasted files arrive as UTF-8, UTF-16 (PowerShell's ``>``) or a Windows code page."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")
