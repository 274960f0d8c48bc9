"""Series kinds of the sample payload: which columns each kind carries, and their types.
One table for agent and collector: tasks write these columns, the collector validates and stores each kind apart.
Adding a kind: docs/agent-tasks.md.
"""

from __future__ import annotations

# Column types. All numbers are integers: microseconds, counts, permille.
US = "us"  # integer microseconds >= 0, or null (not measured / failed)
INT = "int"  # integer, or null
STR = "str"  # short string (<= 128 chars), or null

# Column names are short because they are repeated once per series in every batch.
KINDS: dict[str, dict[str, str]] = {
    # Round-trip time to a host (gateway, hop, anchor, app edge).
    "rtt": {"rtt": US},
    # One application check: DNS, TCP connect, TLS handshake, time to first byte, total;
    # HTTP status and version, certificate days left, failure class (dns, timeout, refused, tls, http, error).
    "http": {
        "dns": US,
        "tcp": US,
        "tls": US,
        "ttfb": US,
        "total": US,
        "status": INT,
        "ver": STR,
        "cert": INT,
        "err": STR,
    },
    # One voice-cadence run (20 ms UDP stream through the collector's reflector).
    # loss and burst are permille; burst = worst share lost in any 200 ms window; run = longest loss run.
    "voice": {
        "sent": INT,
        "recv": INT,
        "dup": INT,
        "reord": INT,
        "rtt": US,
        "rtt95": US,
        "jit": US,
        "loss": INT,
        "burst": INT,
        "run": INT,
        "err": STR,
    },
    # Device context: CPU and memory in permille, top processes when under pressure,
    # NIC errors+drops since the last reading, active interface and its kind, VPN tunnels, proxy;
    # the desk's own traffic on the active interface since the last reading (up/dn, kbit/s), the
    # most it carried at best lately (upb/dnb: a decaying maximum of rates held two readings, kbit/s) and its link speed
    # (spd, Mbit/s; null when the OS does not say).
    "device": {
        "cpu": INT,
        "mem": INT,
        "top": STR,
        "nicerr": INT,
        "if": STR,
        "ifk": STR,
        "vpn": STR,
        "proxy": STR,
        "up": INT,
        "dn": INT,
        "upb": INT,
        "dnb": INT,
        "spd": INT,
    },
    # Wi-Fi link as the desk sees it (never from a scan). conn: 1 connected, 0 not; ssid/bssid may be
    # "<hidden-by-os>" (no location permission) or hashed; rssi/noise dBm; snr dB; ch channel;
    # mhz frequency; band "2.4"/"5"/"6"; phy e.g. "802.11ax"; tx/rx rate in kbit/s; q signal quality % (Windows).
    "wifi": {
        "conn": INT,
        "ssid": STR,
        "bssid": STR,
        "rssi": INT,
        "noise": INT,
        "snr": INT,
        "ch": INT,
        "mhz": INT,
        "band": STR,
        "phy": STR,
        "tx": INT,
        "rx": INT,
        "q": INT,
    },
}

# Columns a kind gained after agents already sent it: a payload without them is valid (the
# columns read as null), so older agents keep working against a newer collector.
ADDED_COLUMNS: dict[str, frozenset[str]] = {
    "device": frozenset({"up", "dn", "upb", "dnb", "spd"}),  # issue 17: the desk's own traffic
}

# Which methods a kind may report.
KIND_METHODS: dict[str, tuple[str, ...]] = {
    "rtt": ("icmp_raw", "icmp_dgram", "tcp_connect"),
    "http": ("https", "http"),
    "voice": ("udp_reflect",),
    "device": ("os",),
    "wifi": (
        "wlanapi",
        "netsh",
        "corewlan",
        "system_profiler",
        "airport",
        "wdutil",
        "nl80211",
        "iw",
        "proc",
        "nmcli",
        "iwconfig",
    ),
}

# Micro-disruption events the agent's detector reports.
EVENT_KINDS = (
    "latency_spike",
    "loss_burst",
    "outage",
    "jitter_episode",
    "dns_failure",
    "app_failure",
    "path_change",
    "device_pressure",
    "wifi_disconnect",
    "wifi_roam",
    "wifi_weak_signal",
    "wifi_rate_drop",
    "wifi_band_change",
    # Reported by the agent's spool, not the detector: batches it had to drop (spool full, too old,
    # damaged on disk); the event's time range is the dropped samples' and its evidence the counts.
    "data_gap",
    # Reported by the agent itself: the collector pushed a config it cannot run (the evidence says
    # why); the last good config keeps running.
    "config_rejected",
)

MAX_STR = 128
MAX_EVIDENCE = 512
