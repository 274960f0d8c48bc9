"""A minimal authoritative DNS responder for tests: real resolver timing and real DNS failures.

The app probe times name resolution through the system resolver (glibc ``getaddrinfo``), so the
tests need a name server the resolver really talks to, one that can be slow, fail or stay silent
on request. This one answers UDP queries from a table:

    {"crm.test":      {"a": ["10.253.0.2"]},
     "slow.crm.test": {"a": ["10.253.0.2"], "delay_ms": 300},
     "bad.crm.test":  {"rcode": "SERVFAIL"},
     "mute.crm.test": {"drop": true}}

A names answer A queries with their addresses and every other type (AAAA, which glibc asks in
parallel) with an empty NOERROR, so the resolver never waits for a missing answer. Names not in
the table get NXDOMAIN. ``delay_ms`` delays every answer for the name; ``drop`` never answers.

Run inside a namespace: ``python dns_lab.py --listen 10.253.0.2 --table JSON --ready FILE``.
Stdlib only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct
import sys
from pathlib import Path
from typing import Any

__all__ = ["RCODES", "answer", "main", "parse_query"]

RCODES = {"NOERROR": 0, "SERVFAIL": 2, "NXDOMAIN": 3, "REFUSED": 5}
TYPE_A = 1
CLASS_IN = 1
TTL_S = 5
_HEADER = struct.Struct("!HHHHHH")


def parse_query(data: bytes) -> tuple[int, int, str, int, bytes] | None:
    """(id, flags, lower-case name, qtype, raw question) of a one-question query, else None."""
    if len(data) < _HEADER.size:
        return None
    qid, flags, qdcount, _an, _ns, _ar = _HEADER.unpack_from(data)
    if flags & 0x8000 or qdcount != 1:  # a response, or not the one-question form resolvers send
        return None
    labels, pos = [], _HEADER.size
    while True:
        if pos >= len(data):
            return None
        length = data[pos]
        pos += 1
        if length == 0:
            break
        if length > 63 or pos + length > len(data):  # compression pointers never occur in queries
            return None
        labels.append(data[pos : pos + length].decode("ascii", "replace").lower())
        pos += length
    if pos + 4 > len(data):
        return None
    qtype, _qclass = struct.unpack_from("!HH", data, pos)
    return qid, flags, ".".join(labels), qtype, data[_HEADER.size : pos + 4]


def answer(query: tuple[int, int, str, int, bytes], table: dict[str, dict[str, Any]]) -> bytes:
    """The response to a parsed query, following the table's entry for the name."""
    qid, qflags, name, qtype, question = query
    entry = table.get(name)
    rcode = RCODES["NXDOMAIN"] if entry is None else RCODES[entry.get("rcode", "NOERROR")]
    records = b""
    count = 0
    if entry is not None and rcode == 0 and qtype == TYPE_A:
        for address in entry.get("a", []):
            # 0xC00C: a pointer to the name in the question, which starts right after the header
            records += b"\xc0\x0c" + struct.pack("!HHIH", TYPE_A, CLASS_IN, TTL_S, 4) + socket.inet_aton(address)
            count += 1
    flags = 0x8000 | 0x0400 | (qflags & 0x0100) | 0x0080 | rcode  # QR, AA, RD copied, RA, rcode
    return _HEADER.pack(qid, flags, 1, count, 0, 0) + question + records


class _Responder(asyncio.DatagramProtocol):
    def __init__(self, table: dict[str, dict[str, Any]]) -> None:
        self.table = table
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = parse_query(data)
        if query is None or self.transport is None:
            return
        entry = self.table.get(query[2], {})
        if entry.get("drop"):
            return
        reply = answer(query, self.table)
        delay = entry.get("delay_ms", 0) / 1000
        loop = asyncio.get_running_loop()
        loop.call_later(delay, self.transport.sendto, reply, addr)


async def serve(host: str, port: int, table: dict[str, dict[str, Any]], ready: Path | None) -> None:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Responder(table), local_addr=(host, port), family=family
    )
    try:
        if ready is not None:
            ready.write_text(f"{transport.get_extra_info('sockname')[1]}\n")
        await asyncio.Event().wait()  # until the process is terminated
    finally:
        transport.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--table", required=True, help="JSON: name -> {a, delay_ms, rcode, drop}")
    parser.add_argument("--ready", type=Path, help="file written once the socket is bound")
    args = parser.parse_args(argv)
    table = {name.lower().rstrip("."): entry for name, entry in json.loads(args.table).items()}
    asyncio.run(serve(args.listen, args.port, table, args.ready))


if __name__ == "__main__":
    sys.exit(main())
