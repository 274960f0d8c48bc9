"""Bytes the agent puts on the wire towards the collector, counted by the kernel (nftables).

Why nftables and not the interface's tx_bytes: the desk's link also carries every probe (ICMP,
HTTP checks, the voice stream), and subtracting estimates of those would be a guess. The
collector gets an address and port of its own, so a counter rule matching exactly that
destination counts only the upload: every IP packet of the gRPC stream (HTTP/2 frames, TCP
handshakes, keepalive pings, retransmissions and bare TCP ACKs included). nftables counts IP
packet lengths (layer 3); Ethernet adds 18 bytes of header and FCS per frame, reported beside.
Packets longer than 52 bytes (20 IP + 32 TCP with timestamps) carry data; they are counted apart
to estimate TLS record overhead, since the collector speaks plain-text gRPC for now.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tests.netns import Host

TABLE = "cxbench"
ETHERNET_OVERHEAD = 18  # 14 header + 4 FCS per frame (preamble and gap not counted)
TLS13_RECORD_OVERHEAD = 22  # 5 header + 1 inner content type + 16 AEAD tag per record


@dataclass(frozen=True)
class Counts:
    up_bytes: int
    up_packets: int
    up_data_packets: int
    down_bytes: int
    down_packets: int
    all_out_bytes: int
    all_out_packets: int

    def minus(self, earlier: Counts) -> Counts:
        return Counts(*(getattr(self, f) - getattr(earlier, f) for f in self.__dataclass_fields__))


class CollectorCounter:
    """Counters in ``host``'s namespace for traffic to and from ``addr``:``port`` (TCP)."""

    def __init__(self, host: Host, addr: str, port: int, iface: str) -> None:
        self.host = host
        rules = f"""
table inet {TABLE} {{
    counter up {{}}
    counter up_data {{}}
    counter down {{}}
    counter all_out {{}}
    chain out {{
        type filter hook output priority 0; policy accept;
        ip daddr {addr} tcp dport {port} counter name "up"
        ip daddr {addr} tcp dport {port} ip length > 52 counter name "up_data"
        oifname "{iface}" counter name "all_out"
    }}
    chain in {{
        type filter hook input priority 0; policy accept;
        ip saddr {addr} tcp sport {port} counter name "down"
    }}
}}
"""
        host.exec("nft", "-f", "-", input=rules)

    def read(self) -> Counts:
        out = self.host.exec("nft", "-j", "list", "counters", "table", "inet", TABLE).stdout
        c: dict[str, tuple[int, int]] = {}
        for item in json.loads(out)["nftables"]:
            if "counter" in item:
                k = item["counter"]
                c[k["name"]] = (k["bytes"], k["packets"])
        return Counts(
            c["up"][0], c["up"][1], c["up_data"][1], c["down"][0], c["down"][1], c["all_out"][0], c["all_out"][1]
        )


def per_hour(counts: Counts, window_s: float) -> dict[str, float]:
    """Upload figures per hour and as a bit rate, at layer 3, with Ethernet, with TLS estimated."""
    scale = 3600 / window_s
    l3 = counts.up_bytes * scale
    l2 = (counts.up_bytes + ETHERNET_OVERHEAD * counts.up_packets) * scale
    tls = l3 + TLS13_RECORD_OVERHEAD * counts.up_data_packets * scale
    return {
        "up_bytes_per_hour_ip": round(l3),
        "up_bytes_per_hour_ethernet": round(l2),
        "up_bytes_per_hour_ip_tls_estimate": round(tls),
        "up_kbit_s_ip": round(l3 * 8 / 3600 / 1000, 4),
        "up_kbit_s_ethernet": round(l2 * 8 / 3600 / 1000, 4),
        "up_kbit_s_tls_estimate": round(tls * 8 / 3600 / 1000, 4),
        "up_packets_per_hour": round(counts.up_packets * scale),
        "up_data_packets_per_hour": round(counts.up_data_packets * scale),
        "down_bytes_per_hour_ip": round(counts.down_bytes * scale),
        "desk_all_out_bytes_per_hour_ip": round(counts.all_out_bytes * scale),
    }
