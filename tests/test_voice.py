"""Voice-cadence probe against a real reflector: loopback, refusals, rate limits, garbage, and an
impaired path between two namespaces whose losses, burst, reordering and duplicate are known.

Timing is never asserted tightly: counts and structure exactly, jitter and RTT within generous
bounds. Every test is bounded and closes its sockets, tasks and namespaces.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from cxpulse.agent.probes.voice import Reply, VoiceResult, run_voice_probe, summarize
from cxpulse.collector.reflector import DROP_REASONS, Reflector, derive_agent_key
from cxpulse.v1 import voice_wire
from tests.netns import Lab, require_netns
from tests.requirements import require

pytestmark = pytest.mark.timeout(20)

REPO = Path(__file__).resolve().parent.parent
MASTER = bytes(range(32))
AGENT, OTHER = "3f1c2a9e-desk-0001", "3f1c2a9e-desk-0002"


def keys(*agent_ids: str) -> Callable[[str], bytes | None]:
    """The collector's lookup: enrolled ids get their derived key, anyone else None."""
    enrolled = {a: derive_agent_key(MASTER, a) for a in agent_ids}
    return enrolled.get


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def dropped(stats: dict[str, int]) -> dict[str, int]:
    """Only the drop reasons that happened, for exact comparisons."""
    return {k.removeprefix("dropped_"): v for k, v in stats.items() if k.startswith("dropped_") and v}


async def probe_once(
    reflector: Reflector, host: str = "127.0.0.1", agent_id: str = AGENT, key: bytes | None = None, **kwargs: Any
) -> VoiceResult:
    key = derive_agent_key(MASTER, agent_id) if key is None else key
    return await run_voice_probe((host, reflector.port), agent_id, key, **kwargs)


async def started(reflector: Reflector, host: str = "127.0.0.1") -> Reflector:
    await reflector.start(host, 0)
    return reflector


# --- wire and keys -------------------------------------------------------------------------------


def test_reply_is_never_larger_than_the_request() -> None:
    refl = Reflector(keys(AGENT))
    key = derive_agent_key(MASTER, AGENT)
    now_ns = time.time_ns()
    for seq, size in enumerate([0, 60, 160, 172, 500, voice_wire.MAX_PACKET_BYTES]):
        request = voice_wire.encode_request(key, AGENT, 7, seq, now_ns, size)
        assert len(request) == max(size, voice_wire.header_size(AGENT))
        reply = refl.check(request, now_ns)
        assert reply is not None and len(reply) == len(request)
        assert voice_wire.decode(reply).reflected_ns == now_ns
    assert refl.answered == 0  # check() only decides; nothing was sent


def test_derived_keys_differ_per_agent_and_master() -> None:
    a = derive_agent_key(MASTER, AGENT)
    assert a == derive_agent_key(MASTER, AGENT) and len(a) == 32
    assert a != derive_agent_key(MASTER, OTHER)
    assert a != derive_agent_key(b"another master key", AGENT)
    with pytest.raises(ValueError):
        derive_agent_key(b"", AGENT)


def test_stale_replayed_and_reflected_packets_are_dropped() -> None:
    refl = Reflector(keys(AGENT))
    key = derive_agent_key(MASTER, AGENT)
    now_ns, second = time.time_ns(), 1_000_000_000
    fresh = voice_wire.encode_request(key, AGENT, 1, 0, now_ns - 29 * second, 160)
    assert refl.check(fresh, now_ns) is not None
    assert refl.check(fresh, now_ns) is None  # the same packet again
    assert refl.check(voice_wire.encode_request(key, AGENT, 1, 1, now_ns - 31 * second), now_ns) is None
    assert refl.check(voice_wire.encode_request(key, AGENT, 1, 2, now_ns + 31 * second), now_ns) is None
    ahead = voice_wire.encode_request(key, AGENT, 1, 5000, now_ns)
    assert refl.check(ahead, now_ns) is not None
    assert refl.check(voice_wire.encode_request(key, AGENT, 1, 3, now_ns), now_ns) is None  # behind the window
    assert refl.check(voice_wire.encode_request(key, AGENT, 1, 4999, now_ns), now_ns) is not None  # late, new
    reply = refl.check(voice_wire.encode_request(key, AGENT, 2, 0, now_ns), now_ns)
    assert reply is not None and refl.check(reply, now_ns) is None  # a reply is never answered
    assert dropped(refl.stats()) == {"replay": 2, "stale": 2, "reflected": 1}


def test_global_bucket_caps_all_agents_together() -> None:
    refl = Reflector(keys(AGENT, OTHER), global_rate=10, global_burst=3)
    now_ns, now = time.time_ns(), time.monotonic()
    answers = [
        refl.check(voice_wire.encode_request(derive_agent_key(MASTER, a), a, 1, seq, now_ns), now_ns, now)
        for seq in range(3)
        for a in (AGENT, OTHER)
    ]
    assert [r is not None for r in answers] == [True, True, True, False, False, False]
    later = voice_wire.encode_request(derive_agent_key(MASTER, OTHER), OTHER, 1, 9, now_ns)
    assert refl.check(later, now_ns, now + 0.15) is not None  # a token back after 100 ms at 10/s
    assert dropped(refl.stats()) == {"global_rate": 3}


# --- figures from a made-up run ------------------------------------------------------------------


def test_summarize_counts_loss_bursts_reordering_and_late_replies() -> None:
    ms = 1_000_000
    send = [i * 20 * ms for i in range(30)]
    wall = [10**18 + t for t in send]
    rtt = dict.fromkeys(range(30), 5 * ms)
    lost = set(range(10, 16)) | {20, 22}  # a 6-packet burst, then two single losses
    order = [i for i in range(30) if i not in lost]
    order[2], order[3] = order[3], order[2]  # seq 3 arrives before seq 2
    rtt[2] = 26 * ms  # what makes 2 arrive after 3
    rtt[29] = 1500 * ms  # beyond the 1 s timeout: lost
    replies = [Reply(i, send[i] + rtt[i], wall[i] + ms) for i in order]
    result = summarize(7, "10.0.0.1", send, wall, replies, duplicates=2, interval_ms=20, timeout_s=1.0)
    assert (result.sent, result.received, result.lost, result.duplicates) == (30, 21, 9, 2)
    assert result.reordered == 1
    assert result.max_loss_run == 6
    assert result.burst_loss_max_pct == 60.0  # seqs 10..19 hold 6 losses; 13..22 only 5
    assert result.loss_pct == 30.0
    assert result.rtt_median_us == 5000 and result.error is None
    assert result.jitter_up_us == 0  # one-way up transit is constant: 1 ms
    assert result.jitter_us and result.jitter_us > 0 and result.jitter_down_us == result.jitter_us


def test_summarize_jitter_is_rfc3550_over_round_trip_transit() -> None:
    ms = 1_000_000
    send = [i * 20 * ms for i in range(4)]
    transits = [10 * ms, 12 * ms, 9 * ms, 9 * ms]
    replies = [Reply(i, send[i] + t, 0) for i, t in enumerate(transits)]
    expected = 0.0
    for d in (2 * ms, 3 * ms, 0):
        expected += (d - expected) / 16
    result = summarize(0, "x", send, send, replies)
    assert result.jitter_us == round(expected / 1000)


def test_summarize_nothing_answered_is_all_lost() -> None:
    result = summarize(0, "x", [0, 20], [0, 20], [])
    assert (result.lost, result.loss_pct, result.burst_loss_max_pct, result.max_loss_run) == (2, 100.0, 100.0, 2)
    assert result.error == "no reply from the reflector" and result.jitter_us is None


# --- real sockets on loopback --------------------------------------------------------------------


def test_loopback_run_is_fully_answered() -> None:
    async def main() -> tuple[VoiceResult, dict[str, int], float]:
        refl = await started(Reflector(keys(AGENT)))
        try:
            t0 = time.monotonic()
            result = await probe_once(refl, duration_s=5.0)
            return result, refl.stats(), time.monotonic() - t0
        finally:
            await refl.stop()

    result, stats, elapsed = run(main())
    assert (result.sent, result.received, result.lost, result.duplicates, result.reordered) == (250, 250, 0, 0, 0)
    assert (result.loss_pct, result.burst_loss_max_pct, result.max_loss_run) == (0.0, 0.0, 0)
    assert result.error is None and result.address == "127.0.0.1"
    assert result.jitter_us is not None and result.jitter_us < 5_000
    assert result.rtt_median_us is not None and 0 < result.rtt_median_us <= result.rtt_p95_us < 100_000
    assert stats["answered"] == 250 and not dropped(stats)
    assert 4.9 < elapsed < 10.0  # 250 packets at 20 ms: the 5 s schedule, bounded even on a loaded machine


def test_ipv6_loopback() -> None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        require(False, "IPv6 loopback (::1) is not available here")

    async def main() -> VoiceResult:
        refl = await started(Reflector(keys(AGENT)), "::1")
        try:
            return await probe_once(refl, "::1", duration_s=0.4)
        finally:
            await refl.stop()

    result = run(main())
    assert (result.address, result.sent, result.received, result.error) == ("::1", 20, 20, None)


@pytest.mark.parametrize(
    "agent_id, key, reason",
    [
        (OTHER, None, "unknown_agent"),
        (AGENT, b"not the key the collector derived", "bad_mac"),
    ],
    ids=["unknown-agent", "wrong-key"],
)
def test_refused_agents_get_nothing_back(agent_id: str, key: bytes | None, reason: str) -> None:
    async def main() -> tuple[VoiceResult, dict[str, int]]:
        refl = await started(Reflector(keys(AGENT)))
        try:
            result = await run_voice_probe(
                ("127.0.0.1", refl.port),
                agent_id,
                key or derive_agent_key(MASTER, agent_id),
                duration_s=0.2,
                timeout_s=0.3,
            )
            return result, refl.stats()
        finally:
            await refl.stop()

    result, stats = run(main())
    assert (result.sent, result.received, result.lost, result.loss_pct) == (10, 0, 10, 100.0)
    assert (result.burst_loss_max_pct, result.max_loss_run) == (100.0, 10)
    assert result.error == "no reply from the reflector"
    assert stats["answered"] == 0 and dropped(stats) == {reason: 10}


def test_unreachable_reflector_is_a_result_not_an_exception() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    result = run(run_voice_probe(("127.0.0.1", closed_port), AGENT, b"k", duration_s=0.1, timeout_s=0.2))
    assert (result.sent, result.received, result.loss_pct) == (5, 0, 100.0)
    assert result.error and "ConnectionRefused" in result.error

    for bad_id in ["", "x" * (voice_wire.MAX_AGENT_ID_BYTES + 1)]:
        invalid = run(run_voice_probe(("127.0.0.1", closed_port), bad_id, b"k", duration_s=0.1))
        assert invalid.sent == 0 and invalid.loss_pct == 100.0 and invalid.error


class _Counting(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies = 0

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.replies += 1


def test_flood_beyond_the_agent_bucket_is_dropped_and_others_are_unaffected() -> None:
    flood = 400

    async def main() -> tuple[VoiceResult, dict[str, int], int, float]:
        refl = await started(Reflector(keys(AGENT, OTHER), agent_rate=100, agent_burst=100))
        loop = asyncio.get_running_loop()
        transport, counter = await loop.create_datagram_endpoint(_Counting, remote_addr=("127.0.0.1", refl.port))
        try:
            other = asyncio.create_task(probe_once(refl, agent_id=OTHER, duration_s=1.0, timeout_s=0.5))
            await asyncio.sleep(0.3)
            key = derive_agent_key(MASTER, AGENT)
            t0 = time.monotonic()
            for seq in range(flood):  # yielding between packets keeps the flood inside socket buffers
                transport.sendto(voice_wire.encode_request(key, AGENT, 99, seq, time.time_ns(), 160))
                await asyncio.sleep(0)
            flood_s = time.monotonic() - t0
            result = await other
            await asyncio.sleep(0.1)
            return result, refl.stats(), counter.replies, flood_s
        finally:
            transport.close()
            await refl.stop()

    result, stats, flood_answered, flood_s = run(main())
    assert (result.sent, result.received, result.error) == (50, 50, None)  # the other agent: untouched
    assert stats["answered"] == 50 + flood_answered
    assert stats["dropped_agent_rate"] == flood - flood_answered
    assert 100 <= flood_answered <= 100 + 100 * flood_s + 1  # the burst, plus what refilled meanwhile
    assert set(dropped(stats)) == {"agent_rate"}


def test_garbage_and_oversized_packets_are_ignored() -> None:
    key = derive_agent_key(MASTER, AGENT)
    valid = voice_wire.encode_request(key, AGENT, 5, 0, time.time_ns(), 160)
    oversized = valid + bytes(voice_wire.MAX_PACKET_BYTES)
    as_reply = voice_wire.make_reply(valid, voice_wire.decode(valid), 1)
    junk = [b"", b"\x00" * 64, bytes(range(256)) * 4, valid[:30], b"CXV\x02" + valid[4:], oversized]

    async def main() -> tuple[list[bytes], dict[str, int], VoiceResult]:
        refl = await started(Reflector(keys(AGENT)))
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            sock.connect(("127.0.0.1", refl.port))
            for data in [*junk, as_reply]:
                await loop.sock_sendall(sock, data)
            answers = []
            try:
                while True:
                    answers.append(await asyncio.wait_for(loop.sock_recv(sock, 2048), 0.3))
            except TimeoutError:
                pass
            after = await probe_once(refl, duration_s=0.2, timeout_s=0.3)  # still serving
            return answers, refl.stats(), after
        finally:
            sock.close()
            await refl.stop()

    answers, stats, after = run(main())
    assert answers == []
    assert dropped(stats) == {"malformed": len(junk), "reflected": 1}
    assert (after.received, after.lost) == (10, 0)


def test_failing_key_lookup_is_counted_not_fatal() -> None:
    def broken(agent_id: str) -> bytes | None:
        raise RuntimeError("enrollment database is down")

    refl = Reflector(broken)
    refl._on_datagram(voice_wire.encode_request(b"k", AGENT, 1, 0, time.time_ns()), ("127.0.0.1", 9))
    assert dropped(refl.stats()) == {"internal": 1} and "internal" in DROP_REASONS


# --- an impaired path between two namespaces -----------------------------------------------------


class _ImpairedReflector(Reflector):
    """A reflector whose replies meet a known bad path, so the figures can be asserted exactly.

    Drops seqs 50..59 (a 200 ms burst), holds 100 until 101 has left (one reordering), answers
    150 twice (one duplicate) and delays every seq ending in 5 by 5 ms (jitter, too little to
    reorder at 20 ms spacing).
    """

    _held: tuple[bytes, tuple] | None = None

    def send_reply(self, reply: bytes, addr: tuple) -> None:
        seq = voice_wire.decode(reply).seq
        if 50 <= seq <= 59:
            return
        if seq == 100:
            self._held = (reply, addr)
            return
        if seq % 10 == 5:
            asyncio.get_running_loop().call_later(0.005, super().send_reply, reply, addr)
            return
        super().send_reply(reply, addr)
        if seq == 101 and self._held:
            super().send_reply(*self._held)
        if seq == 150:
            super().send_reply(reply, addr)


def _serve_impaired(host: str, agent_id: str) -> None:
    """Child process in the reflector's namespace: prints its port, serves until stdin closes,
    then prints its counters."""

    async def main() -> None:
        refl = await started(_ImpairedReflector(keys(agent_id)), host)
        print("ready", refl.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await refl.stop()
        print(json.dumps(refl.stats()), flush=True)

    asyncio.run(main())


def _probe_to(host: str, port: int, agent_id: str) -> None:
    """Child process in the desk's namespace: one 5 s run, printed as JSON."""
    result = run(run_voice_probe((host, port), agent_id, derive_agent_key(MASTER, agent_id), duration_s=5.0))
    print(json.dumps(dataclasses.asdict(result)), flush=True)


def _child_code(func: Callable[..., None], *args: Any) -> str:
    """``python -c`` code running ``func(*args)`` from this module, wherever pytest was started."""
    return (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); from tests.test_voice import {func.__name__}; "
        f"{func.__name__}(*{args!r})"
    )


def _read_line(stream: Any, timeout_s: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout_s)
    if not ready:
        raise AssertionError(f"no output from the child within {timeout_s} s")
    return stream.readline().strip()


@pytest.fixture
def voice_lab() -> Iterator[Lab]:
    require_netns()
    with Lab() as lab:
        yield lab


def test_impaired_path_between_namespaces(voice_lab: Lab) -> None:
    desk, edge = voice_lab.host("desk"), voice_lab.host("edge")
    link = voice_lab.link(desk, edge)
    reflector = edge.spawn(
        sys.executable,
        "-c",
        _child_code(_serve_impaired, link.b_addr, AGENT),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    word, port = _read_line(reflector.stdout, 10).split()
    assert word == "ready"

    probe = desk.python(_child_code(_probe_to, link.b_addr, int(port), AGENT), timeout=15)
    result = VoiceResult(**json.loads(probe.stdout.strip().splitlines()[-1]))
    reflector.stdin.close()
    stats = json.loads(_read_line(reflector.stdout, 5))
    reflector.wait(5)

    assert (result.sent, result.received, result.lost, result.error) == (250, 240, 10, None)
    assert result.address == link.b_addr
    assert (result.loss_pct, result.burst_loss_max_pct, result.max_loss_run) == (4.0, 100.0, 10)
    assert (result.reordered, result.duplicates) == (1, 1)
    assert result.jitter_us is not None and 150 <= result.jitter_us < 10_000
    assert result.jitter_down_us is not None and result.jitter_up_us is not None
    # The 5 ms delays were on the way back, so the return path shows jitter. Which direction shows
    # more is not asserted: on a loaded 2-core VM scheduler noise on the way out is of the same size.
    assert result.jitter_down_us >= 150
    assert result.rtt_median_us is not None and result.rtt_median_us < 50_000
    assert stats["answered"] == 240 + 1 and not dropped(stats)  # every reply that left, the duplicate too
