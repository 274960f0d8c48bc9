"""One path trace in a throw-away process: the only place where scapy is imported.
Prints one JSON object; exit 0 ran, 1 failed, 2 bad arguments, 3 no raw sockets.
Design notes: docs/agent-internals.md, "agent/path/trace_child.py".
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import resource
import socket
import sys
from collections import Counter
from typing import Any, NoReturn

from cxpulse.extras import MissingExtra, require

__all__ = ["main"]

METHODS = ("icmp", "udp", "tcp")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_PRIVILEGE = 0, 1, 2, 3

_UDP_BASE_PORT = 33434  # traceroute's customary range, so firewalls that allow traceroute allow us
_ICMP_ECHO_REPLY, _ICMP_UNREACHABLE, _ICMP_TIME_EXCEEDED = 0, 3, 11
_ETH_P_IP = 0x0800


class _Parser(argparse.ArgumentParser):
    """argparse that answers bad arguments in JSON too: the caller parses stdout, not stderr."""

    def error(self, message: str) -> NoReturn:
        _emit({"target": None, "method": None, "reached": False, "hops": [], "error": f"usage: {message}"})
        sys.exit(EXIT_USAGE)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(prog="python -m cxpulse.agent.path.trace_child", description="TTL-limited path trace, JSON out")
    p.add_argument("--target", required=True, help="IPv4 address (no names: resolution is the parent's job)")
    p.add_argument("--port", type=int, default=443, help="TCP destination port for --method tcp")
    p.add_argument("--max-hops", type=int, default=20)
    p.add_argument("--probes", type=int, default=2, help="probes per TTL")
    p.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for answers after the last probe")
    p.add_argument("--method", choices=METHODS, default="icmp")
    args = p.parse_args(argv)
    try:
        if ipaddress.ip_address(args.target).version != 4:
            p.error("--target must be an IPv4 address (IPv6 traces are not supported yet)")
    except ValueError:
        p.error(f"--target {args.target!r} is not an IP address")
    if not 1 <= args.max_hops <= 64:
        p.error("--max-hops must be between 1 and 64")
    if not 1 <= args.probes <= 5:
        p.error("--probes must be between 1 and 5")
    if not 0.05 <= args.timeout <= 10:
        p.error("--timeout must be between 0.05 and 10 seconds")
    if not 1 <= args.port <= 65535:
        p.error("--port must be between 1 and 65535")
    return args


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _cost() -> dict[str, float | int]:
    """This process's own CPU and peak memory, so the agent can account for what a trace costs."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": round(ru.ru_utime + ru.ru_stime, 4), "max_rss_kb": ru.ru_maxrss}


def _raw_sockets_error() -> str | None:
    """The two sockets scapy's L3RawSocket opens; None when both can be had."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW).close()
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_IP)).close()
    except (OSError, AttributeError) as exc:  # AttributeError: no AF_PACKET (not Linux)
        return f"raw sockets need root or CAP_NET_RAW (Linux): {exc}"
    return None


def _source_address(target: str) -> str:
    """The address the kernel would send from, asked of the kernel itself.

    Connecting a UDP socket sends nothing; it only runs route selection, policy routing and VPN
    rules included, which scapy's own reading of the main table would miss. Probes carry this
    source, so the answers come back to where the kernel expects them.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((target, _UDP_BASE_PORT))
        return s.getsockname()[0]


def _probes(target: str, method: str, port: int, max_hops: int, rounds: int) -> list[Any]:
    """Probe packets, round after round, each identifiable in the quote of an ICMP error.

    ICMP: one identifier for this process, the sequence number tells probes apart. TCP: a
    distinct source port and sequence number per probe. UDP: a distinct destination port.
    """
    from scapy.layers.inet import ICMP, IP, TCP, UDP

    src = _source_address(target)
    ident = os.getpid() & 0xFFFF
    sport = random.randint(33000, 60999)
    packets = []
    for rnd in range(rounds):
        for ttl in range(1, max_hops + 1):
            index = rnd * max_hops + ttl - 1
            ip = IP(src=src, dst=target, ttl=ttl)
            if method == "icmp":
                packets.append(ip / ICMP(type=8, id=ident, seq=index))
            elif method == "tcp":
                packets.append(
                    ip / TCP(sport=(sport + index) % 65536 or 1, dport=port, flags="S", seq=random.getrandbits(32))
                )
            else:
                packets.append(ip / UDP(sport=sport, dport=_UDP_BASE_PORT + index))
    return packets


def _is_final(answer: Any, target: str) -> tuple[bool, bool]:
    """(final, reached) for one answer: does it end the path, and did the target itself say it?"""
    from scapy.layers.inet import ICMP, IP, TCP

    src = answer[IP].src
    if answer.haslayer(TCP) and not answer.haslayer(ICMP):
        return True, src == target  # SYN-ACK or RST: only the target (or a proxy for it) answers
    if answer.haslayer(ICMP):
        kind = answer[ICMP].type
        if kind == _ICMP_ECHO_REPLY:
            return True, src == target
        if kind == _ICMP_UNREACHABLE:
            return True, src == target  # port unreachable from the target = reached (UDP method)
    return False, False


def trace(target: str, method: str, port: int, max_hops: int, probes: int, timeout: float) -> dict[str, Any]:
    """Send every probe, wait ``timeout`` s after the last (less if all are answered), build the hops.

    Scapy is imported here, not at module level, so that ``--help``, bad arguments and missing
    privileges are answered without paying for it.
    """
    from scapy.config import conf
    from scapy.layers.inet import IP
    from scapy.sendrecv import sndrcv
    from scapy.supersocket import L3RawSocket

    conf.verb = 0
    packets = _probes(target, method, port, max_hops, probes)
    # L3RawSocket sends through the kernel (its routing and ARP, works in any namespace and on
    # lo) instead of scapy's own route and ARP resolution, and receives on every interface.
    sock = L3RawSocket()
    try:
        answered, _ = sndrcv(sock, packets, timeout=timeout, verbose=0)
    finally:
        sock.close()

    by_ttl: dict[int, list[tuple[str, int]]] = {}
    end_ttl, reached = None, False
    for sent, answer in answered:
        ttl = sent[IP].ttl
        got, put = answer.time, sent.sent_time
        assert got is not None and put is not None  # sr() stamps every probe it sent and answer it got
        rtt_us = max(0, round((float(got) - float(put)) * 1e6))
        by_ttl.setdefault(ttl, []).append((answer[IP].src, rtt_us))
        final, by_target = _is_final(answer, target)
        if final and (end_ttl is None or ttl < end_ttl or (ttl == end_ttl and by_target)):
            end_ttl, reached = ttl, by_target
    last = end_ttl if end_ttl is not None else max(by_ttl, default=0)

    hops = []
    for ttl in range(1, last + 1):
        answers = by_ttl.get(ttl, [])
        # Several routers at one TTL (load balancing): name the one most probes saw.
        address = Counter(a for a, _ in answers).most_common(1)[0][0] if answers else None
        rtts: list[int | None] = [rtt for _, rtt in answers]
        rtts += [None] * (probes - len(rtts))
        hops.append({"ttl": ttl, "address": address, "rtt_us": rtts})
    return {"target": target, "method": method, "reached": reached, "hops": hops, "error": None}


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    base = {"target": args.target, "method": args.method, "reached": False, "hops": []}
    problem = _raw_sockets_error()
    if problem:
        _emit({**base, "error": problem, "cost": _cost()})
        return EXIT_NO_PRIVILEGE
    try:
        require("scapy")  # the 'trace' extra: its one line becomes the trace's error
        result = trace(args.target, args.method, args.port, args.max_hops, args.probes, args.timeout)
    except MissingExtra as exc:
        _emit({**base, "error": str(exc), "cost": _cost()})
        return EXIT_FAILED
    except Exception as exc:  # one JSON answer whatever happens; the parent logs it
        _emit({**base, "error": f"{type(exc).__name__}: {exc}", "cost": _cost()})
        return EXIT_FAILED
    _emit({**result, "cost": _cost()})
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
