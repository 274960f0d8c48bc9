"""Linux backend: the kernel asked directly, no process spawned on the 5 s cadence.
nl80211 over a generic-netlink socket kept open (no scan), else /proc/net/wireless and, rarely, ``iw``.
Design notes: docs/agent-internals.md, "agent/wifi/linux.py".
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import struct
import subprocess
import time
from dataclasses import replace

from .parsers import iw as iw_parser
from .parsers import proc_wireless
from .parsers._model import NO_WIFI_INTERFACE, WifiReading, complete, norm_mac

__all__ = ["LinuxReader", "read_wifi", "wireless_interfaces"]

# include/uapi/linux/netlink.h, genetlink.h, nl80211.h
_NETLINK_GENERIC = 16
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_GENL_ID_CTRL, _CTRL_CMD_GETFAMILY, _CTRL_ATTR_FAMILY_ID, _CTRL_ATTR_FAMILY_NAME = 0x10, 3, 1, 2
_CMD_GET_INTERFACE, _CMD_GET_STATION = 5, 17
_ATTR_IFINDEX, _ATTR_IFNAME, _ATTR_MAC, _ATTR_STA_INFO = 3, 4, 6, 21
_ATTR_WIPHY_FREQ, _ATTR_SSID, _ATTR_CHANNEL_WIDTH = 38, 52, 159
_STA_SIGNAL, _STA_TX_BITRATE, _STA_SIGNAL_AVG, _STA_RX_BITRATE = 7, 8, 13, 14
_RATE_BITRATE, _RATE_MCS, _RATE_BITRATE32, _RATE_VHT_MCS, _RATE_HE_MCS, _RATE_EHT_MCS = 1, 2, 5, 6, 13, 19
_WIDTH_MHZ = {0: 20, 1: 20, 2: 40, 3: 80, 4: 160, 5: 160, 13: 320}


def wireless_interfaces(sys_root: str = "/sys") -> list[str]:
    """Interface names with a wireless personality, sorted (the kernel's view, no radio needed)."""
    base = os.path.join(sys_root, "class", "net")
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return []
    return [
        n
        for n in names
        if os.path.exists(os.path.join(base, n, "wireless")) or os.path.exists(os.path.join(base, n, "phy80211"))
    ]


def _attrs(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    i = 0
    while i + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, i)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[i + 4 : i + length]
        i += (length + 3) & ~3
    return out


def _attr(kind: int, payload: bytes) -> bytes:
    body = struct.pack("=HH", 4 + len(payload), kind) + payload
    return body + b"\0" * (-len(body) % 4)


def _rate(nested: bytes | None) -> tuple[float | None, str | None]:
    if not nested:
        return None, None
    a = _attrs(nested)
    rate = None
    if _RATE_BITRATE32 in a:
        rate = struct.unpack("=I", a[_RATE_BITRATE32][:4])[0] / 10
    elif _RATE_BITRATE in a:
        rate = struct.unpack("=H", a[_RATE_BITRATE][:2])[0] / 10
    phy = (
        "802.11be"
        if _RATE_EHT_MCS in a
        else "802.11ax"
        if _RATE_HE_MCS in a
        else "802.11ac"
        if _RATE_VHT_MCS in a
        else "802.11n"
        if _RATE_MCS in a
        else None
    )
    return rate or None, phy


class _Nl80211:
    """A generic-netlink socket speaking just enough nl80211 to read the current link."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_GENERIC)
        self.sock.settimeout(1.0)
        self.sock.bind((0, 0))
        self.seq = int(time.time()) & 0xFFFF
        reply = self._request(_GENL_ID_CTRL, _CTRL_CMD_GETFAMILY, _attr(_CTRL_ATTR_FAMILY_NAME, b"nl80211\0"))
        if not reply or _CTRL_ATTR_FAMILY_ID not in reply[0]:
            raise OSError("nl80211 family not available")
        self.family = struct.unpack("=H", reply[0][_CTRL_ATTR_FAMILY_ID][:2])[0]

    def close(self) -> None:
        self.sock.close()

    def _request(self, family: int, cmd: int, attrs: bytes, dump: bool = False) -> list[dict[int, bytes]]:
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        flags = _NLM_F_REQUEST | (_NLM_F_DUMP if dump else 0)
        body = struct.pack("=BBH", cmd, 1, 0) + attrs
        self.sock.send(struct.pack("=IHHII", 16 + len(body), family, flags, self.seq, 0) + body)
        out: list[dict[int, bytes]] = []
        while True:
            data = self.sock.recv(65536)
            i = 0
            while i + 16 <= len(data):
                length, kind, _flags, seq, _pid = struct.unpack_from("=IHHII", data, i)
                if length < 16:
                    return out
                msg = data[i + 16 : i + length]
                i += (length + 3) & ~3
                if seq != self.seq:
                    continue
                if kind == _NLMSG_DONE:
                    return out
                if kind == _NLMSG_ERROR:
                    err = struct.unpack_from("=i", msg)[0]
                    if err:
                        raise OSError(-err, os.strerror(-err))
                    return out
                out.append(_attrs(msg[4:]))
            if not dump:
                return out

    def link(self, ifindex: int, name: str) -> WifiReading:
        idx = _attr(_ATTR_IFINDEX, struct.pack("=I", ifindex))
        iface = (self._request(self.family, _CMD_GET_INTERFACE, idx) or [{}])[0]
        stations = self._request(self.family, _CMD_GET_STATION, idx, dump=True)
        ssid_raw = iface.get(_ATTR_SSID)
        freq = struct.unpack("=I", iface[_ATTR_WIPHY_FREQ][:4])[0] if _ATTR_WIPHY_FREQ in iface else None
        width = (
            _WIDTH_MHZ.get(struct.unpack("=I", iface[_ATTR_CHANNEL_WIDTH][:4])[0])
            if _ATTR_CHANNEL_WIDTH in iface
            else None
        )
        if not stations:
            return WifiReading(connected=False, source="nl80211", interface=name)
        sta = stations[0]
        info = _attrs(sta.get(_ATTR_STA_INFO, b""))
        signal = info.get(_STA_SIGNAL) or info.get(_STA_SIGNAL_AVG)
        tx, phy = _rate(info.get(_STA_TX_BITRATE))
        rx, rphy = _rate(info.get(_STA_RX_BITRATE))
        mac = sta.get(_ATTR_MAC, b"")
        return complete(
            WifiReading(
                connected=True,
                source="nl80211",
                interface=name,
                ssid=ssid_raw.decode("utf-8", "replace") if ssid_raw is not None else None,
                bssid=norm_mac(":".join(f"{b:02x}" for b in mac)) if len(mac) == 6 else None,
                rssi_dbm=struct.unpack("=b", signal[:1])[0] if signal else None,
                frequency_mhz=freq,
                width_mhz=width,
                tx_rate_mbps=tx,
                rx_rate_mbps=rx,
                phy=phy or rphy,
            )
        )


class LinuxReader:
    """Reads the current link; keeps the netlink socket and the last ``iw`` answer between calls."""

    def __init__(
        self, sys_root: str = "/sys", proc_root: str = "/proc", iw_every_s: float = 60.0, use_netlink: bool = True
    ):
        self.sys_root, self.proc_root, self.iw_every_s = sys_root, proc_root, iw_every_s
        self._nl: _Nl80211 | None = None
        self._nl_failed = not use_netlink
        self._nl_errors = 0
        self._iw_at: dict[str, float] = {}
        self._iw_last: dict[str, WifiReading] = {}

    def close(self) -> None:
        if self._nl is not None:
            self._nl.close()
            self._nl = None

    def read(self) -> WifiReading:
        names = wireless_interfaces(self.sys_root)
        if not names:
            return WifiReading(connected=False, source="proc", note=NO_WIFI_INTERFACE)
        readings = [self._read_one(n) for n in names]
        return next((r for r in readings if r.connected), readings[0])

    def _read_one(self, name: str) -> WifiReading:
        via_nl = self._netlink(name)
        if via_nl is not None:
            return via_nl
        text = self._proc_text()
        rows = {r[0]: r for r in proc_wireless.rows(text)}
        if name in rows:
            base = proc_wireless.reading_of(*rows[name])
        elif proc_wireless.detect(text):
            # cfg80211 drivers print no row for an interface without a current BSS (not associated,
            # radio off, interface down); wireless-extensions drivers always print one.
            base = WifiReading(connected=False, source="proc", interface=name)
        else:
            base = WifiReading(connected=None, source="proc", interface=name)
        extra = self._iw(name) if base.connected is not False else None
        if extra is None or extra.connected is None:
            return base
        return complete(
            replace(
                extra,
                source="iw",
                interface=name,
                rssi_dbm=base.rssi_dbm if base.rssi_dbm is not None else extra.rssi_dbm,
                noise_dbm=base.noise_dbm,
            )
        )

    def _netlink(self, name: str) -> WifiReading | None:
        if self._nl_failed:
            return None
        try:
            if self._nl is None:
                self._nl = _Nl80211()
        except (OSError, ValueError, struct.error):
            # No nl80211 here (old kernel, a sandbox without generic netlink): /proc and iw for good.
            self._nl_failed = True
            return None
        try:
            with open(os.path.join(self.sys_root, "class", "net", name, "ifindex")) as f:
                ifindex = int(f.read())
            reading = self._nl.link(ifindex, name)
        except OSError as exc:
            if exc.errno in (errno.ENETDOWN, errno.ENODEV, errno.ENOLINK):
                # The interface is down or gone (radio switched off, adapter unplugged): no link.
                self._nl_errors = 0
                return WifiReading(connected=False, source="nl80211", interface=name, note="interface down")
            self._netlink_error()
            return None
        except (ValueError, struct.error):
            self._netlink_error()
            return None
        self._nl_errors = 0
        return reading

    def _netlink_error(self) -> None:
        """One failed look falls back to /proc; three in a row and nl80211 is left for good."""
        self.close()
        self._nl_errors += 1
        self._nl_failed = self._nl_errors >= 3
        return None

    def _proc_text(self) -> str:
        try:
            with open(os.path.join(self.proc_root, "net", "wireless"), encoding="ascii", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def _iw(self, name: str) -> WifiReading | None:
        """``iw dev IF link`` at most every ``iw_every_s`` seconds: a fork+exec is not free."""
        if self.iw_every_s <= 0:
            return None
        now = time.monotonic()
        if name in self._iw_at and now - self._iw_at[name] < self.iw_every_s:
            return self._iw_last.get(name)
        self._iw_at[name] = now
        exe = shutil.which("iw")
        if exe is None:
            return None
        try:
            out = subprocess.run([exe, "dev", name, "link"], capture_output=True, text=True, timeout=3).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        reading = iw_parser.parse(out) if iw_parser.detect(out) else None
        if reading is not None:
            self._iw_last[name] = reading
        return reading


_reader: LinuxReader | None = None


def read_wifi() -> WifiReading:
    global _reader
    if _reader is None:
        _reader = LinuxReader()
    return _reader.read()
