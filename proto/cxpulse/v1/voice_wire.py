"""The voice-cadence probe's UDP packet, shared by the agent (sender) and the collector's reflector.
Signed, fixed layout, voice-frame sized; the reply is the same bytes, so it can never amplify.
Layout and design notes: docs/voice.md, "proto/cxpulse/v1/voice_wire.py".
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

__all__ = [
    "HEADER_FIXED",
    "MAC_BYTES",
    "MAGIC",
    "MAX_AGENT_ID_BYTES",
    "MAX_PACKET_BYTES",
    "VERSION",
    "Packet",
    "WireError",
    "decode",
    "encode_request",
    "header_size",
    "make_reply",
    "verify",
]

MAGIC = b"CXV"
VERSION = 1
MAC_BYTES = 16
MAX_AGENT_ID_BYTES = 255
# Voice frames are small; anything near the MTU is not ours. Also bounds the reflector's work.
MAX_PACKET_BYTES = 1200

_PREFIX = struct.Struct("!3sBB")  # magic, version, agent id length
_FIELDS = struct.Struct("!IIQ")  # stream id, seq, send time ns
_STAMP = struct.Struct("!Q")  # reflector receive time ns
# Everything but the agent id: prefix, fields, MAC, reflector stamp.
HEADER_FIXED = _PREFIX.size + _FIELDS.size + MAC_BYTES + _STAMP.size


class WireError(ValueError):
    """Not a voice probe packet of a version we speak (garbage, truncated, oversized)."""


@dataclass(frozen=True)
class Packet:
    """A decoded packet; ``signed`` is the byte range the MAC covers, kept for ``verify``."""

    agent_id: str
    stream_id: int
    seq: int
    send_ns: int
    mac: bytes
    reflected_ns: int
    signed: bytes
    stamp_offset: int


def header_size(agent_id: str) -> int:
    """Bytes before the padding for this agent id: the smallest packet the agent can send."""
    return HEADER_FIXED + len(agent_id.encode())


def _mac(key: bytes, signed: bytes) -> bytes:
    return hmac.digest(key, signed, hashlib.sha256)[:MAC_BYTES]


def encode_request(key: bytes, agent_id: str, stream_id: int, seq: int, send_ns: int, size: int = 0) -> bytes:
    """A signed request, padded with zeros to ``size`` bytes (never smaller than the header)."""
    aid = agent_id.encode()
    if not 1 <= len(aid) <= MAX_AGENT_ID_BYTES:
        raise WireError(f"agent id must be 1..{MAX_AGENT_ID_BYTES} bytes of UTF-8, not {len(aid)}")
    signed = _PREFIX.pack(MAGIC, VERSION, len(aid)) + aid + _FIELDS.pack(stream_id, seq, send_ns)
    head = signed + _mac(key, signed) + _STAMP.pack(0)
    if size > MAX_PACKET_BYTES:
        raise WireError(f"packet size {size} exceeds {MAX_PACKET_BYTES} bytes")
    return head + bytes(max(0, size - len(head)))


def decode(data: bytes) -> Packet:
    """Parse without checking the MAC (the reflector looks the key up by the id parsed here)."""
    if not HEADER_FIXED < len(data) <= MAX_PACKET_BYTES:
        raise WireError(f"size {len(data)} out of range")
    magic, version, n = _PREFIX.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise WireError("not a voice probe packet of version 1")
    if n == 0 or len(data) < HEADER_FIXED + n:
        raise WireError("truncated header")
    fields_at = _PREFIX.size + n
    mac_at = fields_at + _FIELDS.size
    stamp_at = mac_at + MAC_BYTES
    try:
        agent_id = bytes(data[_PREFIX.size : fields_at]).decode()
    except UnicodeDecodeError:
        raise WireError("agent id is not UTF-8") from None
    stream_id, seq, send_ns = _FIELDS.unpack_from(data, fields_at)
    (reflected_ns,) = _STAMP.unpack_from(data, stamp_at)
    return Packet(
        agent_id, stream_id, seq, send_ns, bytes(data[mac_at:stamp_at]), reflected_ns, bytes(data[:mac_at]), stamp_at
    )


def verify(packet: Packet, key: bytes) -> bool:
    """Whether the packet was signed with ``key`` (constant-time comparison)."""
    return hmac.compare_digest(packet.mac, _mac(key, packet.signed))


def make_reply(data: bytes, packet: Packet, received_ns: int) -> bytes:
    """The request's bytes with the reflector's receive time written in: same length, by design."""
    reply = bytearray(data)
    _STAMP.pack_into(reply, packet.stamp_offset, received_ns)
    return bytes(reply)
