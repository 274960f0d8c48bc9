"""The words a helpdesk person reads for the view's internal keys: event kinds, places, severities.
One place for every view's words (page, ticket, CLI, glossary, tooltips); pure data, no imports from the rest of lookup.
Design notes: docs/collector-internals.md, "collector/lookup/words.py".
"""

from __future__ import annotations

from ..score.triage import platform_name

__all__ = ["EVENT_EXPLAINED", "EVENT_WORDS", "PLACE_WORDS", "SEVERITY_WORDS", "event_place", "event_words"]

# Event kind (cxpulse.v1.kinds.EVENT_KINDS) -> a few plain words.
EVENT_WORDS: dict[str, str] = {
    "latency_spike": "delay spike",
    "loss_burst": "packets lost",
    "outage": "connection lost",
    "jitter_episode": "uneven delay (jitter)",
    "dns_failure": "name lookups failed",
    "app_failure": "app not answering",
    "path_change": "route changed",
    "device_pressure": "PC overloaded",
    "wifi_disconnect": "Wi-Fi dropped",
    "wifi_roam": "Wi-Fi switched access point",
    "wifi_weak_signal": "weak Wi-Fi signal",
    "wifi_rate_drop": "Wi-Fi slowed down",
    "wifi_band_change": "Wi-Fi changed band",
    "data_gap": "measurements lost on the desk",
    "config_rejected": "settings refused by the desk",
}

# One sentence per kind: what it means for the person at the desk (tooltips, the glossary).
EVENT_EXPLAINED: dict[str, str] = {
    "latency_spike": "Replies took much longer than usual for a few seconds: speech lags, screens hang.",
    "loss_burst": "Several packets in a row never arrived: words drop out of calls.",
    "outage": "Nothing answered for several seconds: calls break up or drop.",
    "jitter_episode": "The delay changed a lot from packet to packet: voice sounds robotic.",
    "dns_failure": "The desk could not look up a server's name: apps fail to open or load.",
    "app_failure": "An app's check failed (refused, timed out or an error page).",
    "path_change": "The route to a server changed; often harmless, sometimes the start of trouble.",
    "device_pressure": "The PC's CPU or memory was nearly full: everything on it slows down.",
    "wifi_disconnect": "The Wi-Fi connection dropped.",
    "wifi_roam": "The PC moved to another Wi-Fi access point (a short pause is normal).",
    "wifi_weak_signal": "The Wi-Fi signal was weak: too far from the access point or blocked.",
    "wifi_rate_drop": "The Wi-Fi link speed fell sharply.",
    "wifi_band_change": "The Wi-Fi moved between 2.4, 5 and 6 GHz.",
    "data_gap": "The desk had to drop measurements it could not send (offline too long).",
    "config_rejected": "The collector sent settings the desk could not use; it kept its last good ones.",
}

SEVERITY_WORDS: dict[int, str] = {1: "minor", 2: "major", 3: "critical"}

# Place key -> words. The key is what groups events; the platform's place is its name.
PLACE_WORDS: dict[str, str] = {
    "wifi": "Wi-Fi",
    "lan": "home/office network",
    "isp": "ISP",
    "internet": "internet beyond the ISP",
    "dns": "DNS",
    "device": "this PC",
    "agent": "the cxpulse agent",
    "other": "other",
}

# RTT targets the agent names by their role on the path (agent/runner.py): where they are.
_ROLE_PLACES = {"gateway": "lan", "isp": "isp", "public": "isp", "anchor": "internet"}


def event_words(kind: str) -> str:
    """'latency_spike' -> 'delay spike'; a kind this version does not know, with its underscores gone."""
    return EVENT_WORDS.get(kind) or kind.replace("_", " ")


def event_place(kind: str, target: str) -> tuple[str, str]:
    """(key, words) of where an event happened: Wi-Fi, home/office network, ISP, DNS, this PC, or
    the platform by name ('Genesys Cloud') for an app's check or an app server's path."""
    if kind.startswith("wifi_"):
        key = "wifi"
    elif kind == "device_pressure":
        key = "device"
    elif kind == "dns_failure":
        key = "dns"
    elif kind in ("data_gap", "config_rejected"):
        key = "agent"
    elif target in _ROLE_PLACES:
        key = _ROLE_PLACES[target]
    elif target:
        name = platform_name(target)
        return f"platform:{name}", name
    else:
        key = "other"
    return key, PLACE_WORDS[key]
