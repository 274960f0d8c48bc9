"""What every netinfo backend returns, and the pure rules they share (kinds, interface-name words).
So no caller depends on one OS's module.
Design notes: docs/agent-internals.md, "agent/netinfo/_model.py".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import urlsplit, urlunsplit

__all__ = ["KINDS", "DefaultRoute", "kind_by_name", "kind_by_words", "proxy_from_environ", "strip_credentials"]

KINDS = ("wifi", "ethernet", "cellular", "vpn", "loopback", "other")


class DefaultRoute(NamedTuple):
    """A default route via a gateway; ``metric`` is lower-is-preferred, as each backend ranks it."""

    gateway: str
    interface: str
    metric: int


# Unix interface names say their kind by prefix.
VPN_PREFIXES = ("tun", "tap", "wg", "ppp", "utun", "ipsec", "gpd", "cscotun", "vpn", "zt", "tailscale")
CELLULAR_PREFIXES = ("wwan", "wwp", "rmnet", "ccmni")
WIFI_PREFIXES = ("wlan", "wlp", "wlx", "wifi")
# Windows names adapters after their connection or driver: "Wi-Fi 2", "Ethernet", "Cellular",
# "Cisco AnyConnect Secure Mobility Client Connection". Virtual adapters come first: Hyper-V's
# "vEthernet (WSL)" is no cable, "Local Area Connection* 3" (with the star) is Wi-Fi Direct, and a
# Bluetooth PAN adapter reports itself as Ethernet.
NAME_WORDS = (
    ("other", ("vethernet", "local area connection*", "virtualbox", "vmware", "hyper-v", "wi-fi direct", "bluetooth")),
    (
        "vpn",
        (
            "vpn",
            "anyconnect",
            "globalprotect",
            "pangp",
            "fortinet",
            "forticlient",
            "wireguard",
            "openvpn",
            "tap-windows",
            "juniper",
            "pulse secure",
            "zscaler",
            "wintun",
            "nordlynx",
            "tunnel",
        ),
    ),
    ("cellular", ("cellular", "mobile broadband", "wwan", "lte", "5g modem")),
    ("wifi", ("wi-fi", "wifi", "wlan", "wireless", "802.11")),
    ("ethernet", ("ethernet", "local area connection", "gigabit", "gbe", "realtek pcie", "intel(r) i2")),
)


def kind_by_words(text: str, kinds: tuple[str, ...] = KINDS) -> str | None:
    """The first of ``kinds`` whose words occur in ``text`` (a name, a driver description), in NAME_WORDS order."""
    lower = text.lower()
    for kind, words in NAME_WORDS:
        if kind in kinds and any(word in lower for word in words):
            return kind
    return None


def kind_by_name(name: str) -> str:
    """The kind an interface name suggests when the OS says nothing better; "other" when it suggests none."""
    lower = name.lower()
    if lower in ("lo", "lo0") or lower.startswith("loopback"):
        return "loopback"
    if lower.startswith(VPN_PREFIXES):
        return "vpn"
    if lower.startswith(CELLULAR_PREFIXES):
        return "cellular"
    if lower.startswith(WIFI_PREFIXES):
        return "wifi"
    return kind_by_words(lower) or "other"


def strip_credentials(url: str) -> str:
    """``url`` without a ``user:password@`` part, otherwise as written: the value travels to the collector."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if "@" not in parts.netloc:
        return url
    host_port = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, host_port, parts.path, "", ""))


def proxy_from_environ(environ: Mapping[str, str]) -> str | None:
    """The HTTPS proxy from the environment (``https_proxy``, then ``HTTPS_PROXY``), without credentials."""
    value = (environ.get("https_proxy") or environ.get("HTTPS_PROXY") or "").strip()
    return strip_credentials(value) if value else None
