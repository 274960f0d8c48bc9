"""Bad input gets a clear gRPC status, the stream and other agents carry on, nothing stored is lost."""

from __future__ import annotations

import queue
import time

import grpc
import msgpack
import pytest

from cxpulse.v1 import payload
from cxpulse.v1 import telemetry_pb2 as pb
from cxpulse.v1 import telemetry_pb2_grpc as pb_grpc
from tests.conftest import agent_metadata, client_channel
from tests.stored import rtt_count, stored_count

pytestmark = pytest.mark.slow


# Samples must lie near the collector's clock (it refuses skewed ones): ten minutes ago.
START_S = int(time.time()) - 600


class RawAgent:
    """A hand-driven stream, so that a test can send exactly the bytes it wants."""

    def __init__(self, address: str, agent_id: str, epoch: int = 7):
        self.channel = client_channel(address, options=[("grpc.max_send_message_length", 64 << 20)])
        self.q: queue.Queue = queue.Queue()
        self.responses = pb_grpc.TelemetryServiceStub(self.channel).Stream(
            iter(self.q.get, None), timeout=30, metadata=agent_metadata(address, agent_id)
        )
        self.q.put(
            pb.StreamRequest(
                hello=pb.Hello(agent_id=agent_id, host="h-" + agent_id, os_user="u-" + agent_id, seq_epoch=epoch)
            )
        )
        first = next(self.responses)
        assert first.WhichOneof("kind") == "config"
        self.config = first.config

    def send(self, seq: int, data: bytes, count: int) -> pb.Ack:
        self.q.put(pb.StreamRequest(batch=pb.Batch(seq=seq, payload=data, sample_count=count)))
        return next(self.responses).ack

    def close(self) -> None:
        self.q.put(None)
        self.channel.close()


def good_payload(n: int = 5, start_s: int | None = None) -> tuple[bytes, int]:
    start_s = START_S if start_s is None else start_s
    s = payload.Series(target="loopback", address="127.0.0.1", method=payload.METHOD_ICMP_RAW)
    for i in range(n):
        s.add((start_s + i) * 1_000_000, 100 + i if i % 3 else None)
    b = payload.SampleBatch([s])
    return payload.encode(b), b.sample_count


def count(db) -> int:
    return rtt_count(db)


def test_each_bad_batch_is_rejected_with_a_status_and_the_stream_carries_on(collector):
    a = RawAgent(collector.address, "bad-input")
    other = RawAgent(collector.address, "well-behaved")
    try:
        data, n = good_payload(5)
        ack = a.send(1, data, n)
        assert ack.status == pb.ACK_STATUS_STORED and ack.committed_seq == 1 and ack.code == 0

        ack = a.send(2, b"\xff\xc1 not msgpack at all", 3)
        assert (ack.status, ack.code) == (pb.ACK_STATUS_REJECTED, grpc.StatusCode.INVALID_ARGUMENT.value[0])
        assert "not valid msgpack" in ack.detail

        wrong_version = msgpack.packb({"v": 99, "t0": 0, "s": []})
        ack = a.send(3, wrong_version, 0)
        assert (ack.status, ack.code) == (pb.ACK_STATUS_REJECTED, grpc.StatusCode.FAILED_PRECONDITION.value[0])
        assert "schema version 99" in ack.detail

        ack = a.send(4, data, n + 1)
        assert ack.status == pb.ACK_STATUS_REJECTED and "sample_count" in ack.detail

        ack = a.send(1, data, n)  # a seq from the past: already held
        assert (ack.status, ack.code) == (pb.ACK_STATUS_DUPLICATE, grpc.StatusCode.ALREADY_EXISTS.value[0])
        assert ack.committed_seq == 1

        big = b"\x00" * (2 << 20)  # over the 1 MiB payload limit, under the transport limit
        ack = a.send(5, big, 1)
        assert (ack.status, ack.code) == (pb.ACK_STATUS_REJECTED, grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])

        # Meanwhile another agent is unaffected, and the bad agent's stream still stores good batches.
        odata, on = good_payload(4, start_s=START_S + 100)
        assert other.send(1, odata, on).status == pb.ACK_STATUS_STORED
        data2, n2 = good_payload(5, start_s=START_S + 200)
        ack = a.send(6, data2, n2)
        assert ack.status == pb.ACK_STATUS_STORED and ack.committed_seq == 6
        assert count(collector.db) == n + on + n2
    finally:
        a.close()
        other.close()


def test_message_over_transport_limit_ends_only_that_stream(collector):
    victim = RawAgent(collector.address, "huge-sender")
    other = RawAgent(collector.address, "bystander")
    try:
        data, n = good_payload(3)
        assert other.send(1, data, n).status == pb.ACK_STATUS_STORED
        with pytest.raises(grpc.RpcError) as err:
            victim.send(1, b"\x00" * (6 << 20), 1)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        data2, n2 = good_payload(3, start_s=START_S + 100)
        assert other.send(2, data2, n2).status == pb.ACK_STATUS_STORED
        assert count(collector.db) == n + n2
    finally:
        victim.close()
        other.close()
    # And the collector takes new streams afterwards.
    again = RawAgent(collector.address, "huge-sender")
    try:
        data3, n3 = good_payload(2, start_s=START_S + 300)
        assert again.send(1, data3, n3).status == pb.ACK_STATUS_STORED
    finally:
        again.close()


def test_stream_without_hello_is_refused(collector):
    channel = client_channel(collector.address)
    try:
        data, n = good_payload(2)
        reqs = iter([pb.StreamRequest(batch=pb.Batch(seq=1, payload=data, sample_count=n))])
        with pytest.raises(grpc.RpcError) as err:
            list(
                pb_grpc.TelemetryServiceStub(channel).Stream(
                    reqs, timeout=10, metadata=agent_metadata(collector.address, "no-hello")
                )
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Hello" in err.value.details()
    finally:
        channel.close()
    assert count(collector.db) == 0


def test_hello_without_agent_id_is_refused(collector):
    channel = client_channel(collector.address)
    try:
        reqs = iter([pb.StreamRequest(hello=pb.Hello(host="x"))])
        with pytest.raises(grpc.RpcError) as err:
            list(
                pb_grpc.TelemetryServiceStub(channel).Stream(
                    reqs, timeout=10, metadata=agent_metadata(collector.address, "no-id")
                )
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "agent_id" in err.value.details()
    finally:
        channel.close()


def test_new_epoch_is_not_mistaken_for_duplicates(collector):
    """An agent that lost its state restarts at seq 1 in a new epoch; those batches are new data."""
    data, n = good_payload(3)
    a = RawAgent(collector.address, "reborn", epoch=1)
    try:
        assert a.send(1, data, n).status == pb.ACK_STATUS_STORED
    finally:
        a.close()
    time.sleep(0.2)
    b = RawAgent(collector.address, "reborn", epoch=2)
    try:
        assert b.config.committed_seq == 0
        data2, n2 = good_payload(3, start_s=START_S + 100)
        assert b.send(1, data2, n2).status == pb.ACK_STATUS_STORED
    finally:
        b.close()
    assert count(collector.db) == n + n2


def _series_payload(kind: str, method: str, start_s: int | None = None, **cols) -> tuple[bytes, int]:
    """One sample of ``kind`` with the given column values (others null)."""
    s = payload.Series(target="t", address="127.0.0.1", method=method, kind=kind)
    s.add((START_S if start_s is None else start_s) * 1_000_000, **cols)
    b = payload.SampleBatch([s])
    return payload.encode(b), b.sample_count


def count_all(db) -> int:
    return stored_count(db)


@pytest.mark.parametrize(
    "data_n, reason",
    [
        (lambda: _series_payload("rtt", "icmp_raw", rtt=61_000_000), "rtt = 61000000 is outside"),
        (lambda: _series_payload("wifi", "nl80211", rssi=12), "rssi = 12 is outside -120..0"),
        (lambda: _series_payload("wifi", "nl80211", q=101), "q = 101 is outside 0..100"),
        (lambda: _series_payload("device", "os", cpu=1001), "cpu = 1001 is outside 0..1000"),
        (lambda: _series_payload("voice", "udp_reflect", loss=2000), "loss = 2000 is outside"),
        (lambda: good_payload(3, start_s=int(time.time()) + 3600), "beyond the collector's clock"),
        (lambda: good_payload(3, start_s=int(time.time()) - 9 * 86_400), "older than the collector accepts"),
    ],
)
def test_out_of_range_values_and_skewed_clocks_are_refused_whole(collector, data_n, reason):
    a = RawAgent(collector.address, "ranges")
    try:
        good, gn = good_payload(4)
        bad, bn = data_n()
        # One batch mixing good series and one bad value: nothing of it may be stored.
        mixed = payload.decode(good)
        mixed.series += payload.decode(bad).series
        data = payload.encode(mixed)
        ack = a.send(1, data, gn + bn)
        assert (ack.status, ack.code) == (pb.ACK_STATUS_REJECTED, grpc.StatusCode.INVALID_ARGUMENT.value[0])
        assert reason in ack.detail and "nothing stored" in ack.detail
        assert a.send(2, good, gn).status == pb.ACK_STATUS_STORED
    finally:
        a.close()
    assert count_all(collector.db) == gn


@pytest.fixture
def strict_collector(tmp_path, procs):
    from tests.conftest import CollectorProc

    c = CollectorProc(
        tmp_path,
        tmp_path / "strict.sqlite",
        extra=[
            "--max-batches-per-s",
            "2",
            "--batch-burst",
            "10",
            "--max-rejects",
            "5",
            "--reject-penalty",
            "30",
            "--max-samples-per-batch",
            "100",
            "--max-streams-per-peer",
            "50",
        ],
    ).start()
    procs.append(c)
    return c


def _status(err: grpc.RpcError) -> tuple[grpc.StatusCode, dict]:
    return err.code(), dict(err.trailing_metadata() or ())


def test_flooding_agent_is_throttled_and_cut_while_another_agent_streams_on(strict_collector):
    c = strict_collector
    flood = RawAgent(c.address, "flooder")
    calm = RawAgent(c.address, "calm")
    stored_calm = 0
    try:
        big, bn = good_payload(101)
        ack = flood.send(1, big, bn)
        assert (ack.status, ack.code) == (pb.ACK_STATUS_REJECTED, grpc.StatusCode.RESOURCE_EXHAUSTED.value[0])
        assert "100-sample limit" in ack.detail
        data, n = good_payload(3)
        assert calm.send(1, data, n).status == pb.ACK_STATUS_STORED
        stored_calm += n
        # The burst is 10 batches (one already spent); the flood beyond it ends the stream.
        with pytest.raises(grpc.RpcError) as err:
            for seq in range(2, 40):
                assert flood.send(seq, *good_payload(2, start_s=START_S + seq)).status == pb.ACK_STATUS_STORED
        code, meta = _status(err.value)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "batches/s" in err.value.details()
        assert int(meta["retry-after-ms"]) >= 1000
        stored_flood = count_all(c.db) - stored_calm
        assert 0 < stored_flood <= 2 * 10  # at most the burst got in
        # The calm agent's stream was not touched.
        data, n = good_payload(3, start_s=START_S + 100)
        assert calm.send(2, data, n).status == pb.ACK_STATUS_STORED
        stored_calm += n
    finally:
        flood.close()
    # While throttled, the flooder's next stream is refused with the hint.
    with pytest.raises(grpc.RpcError) as err:
        RawAgent(c.address, "flooder")
    code, meta = _status(err.value)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "retry-after-ms" in meta
    try:
        data, n = good_payload(3, start_s=START_S + 200)
        assert calm.send(3, data, n).status == pb.ACK_STATUS_STORED
        stored_calm += n
    finally:
        calm.close()
    assert count_all(c.db) == stored_calm + stored_flood


def test_repeated_rejections_cut_the_stream_and_store_nothing(strict_collector):
    c = strict_collector
    bad = RawAgent(c.address, "garbage")
    calm = RawAgent(c.address, "calm2")
    try:
        with pytest.raises(grpc.RpcError) as err:
            for seq in range(1, 10):
                ack = bad.send(seq, b"\xff\xc1 garbage", 1)
                assert ack.status == pb.ACK_STATUS_REJECTED
        assert seq == 6  # five rejected acks arrived; the stream ended after the fifth
        code, meta = _status(err.value)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "rejected batches" in err.value.details()
        assert 25_000 <= int(meta["retry-after-ms"]) <= 30_000
        data, n = good_payload(3)
        assert calm.send(1, data, n).status == pb.ACK_STATUS_STORED
    finally:
        bad.close()
        calm.close()
    assert count_all(c.db) == n
    assert "rejected batches" in c.output()


def test_a_third_stream_of_one_agent_supersedes_its_oldest(collector):
    first = RawAgent(collector.address, "twin")
    second = RawAgent(collector.address, "twin")
    third = RawAgent(collector.address, "twin")
    try:
        with pytest.raises(grpc.RpcError) as err:
            first.send(1, *good_payload(2))
        assert err.value.code() == grpc.StatusCode.ABORTED and "superseded" in err.value.details()
        assert third.send(1, *good_payload(2)).status == pb.ACK_STATUS_STORED
        assert second.send(2, *good_payload(2, start_s=START_S + 10)).status == pb.ACK_STATUS_STORED
    finally:
        for a in (first, second, third):
            a.close()


def test_streams_per_address_are_capped(tmp_path, procs):
    from tests.conftest import CollectorProc

    c = CollectorProc(tmp_path, tmp_path / "peer.sqlite", extra=["--max-streams-per-peer", "2"]).start()
    procs.append(c)
    a, b = RawAgent(c.address, "p1"), RawAgent(c.address, "p2")
    try:
        with pytest.raises(grpc.RpcError) as err:
            RawAgent(c.address, "p3")
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "address" in err.value.details()
        assert a.send(1, *good_payload(2)).status == pb.ACK_STATUS_STORED
    finally:
        a.close()
        b.close()


def test_a_throttled_real_agent_loses_nothing(tmp_path, procs):
    """A real agent over the batch rate is cut with a retry hint, comes back after it, and once the
    limit is lifted its spool delivers the rest: every sample measured is stored exactly once."""
    import json
    import signal

    from tests.conftest import CollectorProc, start_agent, wait_for
    from tests.test_e2e import stored_samples

    db = tmp_path / "throttle.sqlite"
    c = CollectorProc(tmp_path, db, extra=["--max-batches-per-s", "0.25", "--batch-burst", "3"]).start()
    procs.append(c)
    agent = start_agent(tmp_path, procs, c.address, "--agent-id", "throttled")
    wait_for(lambda: "batches/s" in c.output(), 30, 0.2, "the collector to throttle the agent")
    wait_for(
        lambda: agent.output().count("connected to collector") >= 2, 30, 0.2, "the agent to come back after the hint"
    )
    assert agent.stop(signal.SIGTERM) == 0
    first = json.loads((tmp_path / "agent" / "last_run.json").read_text())
    assert first["batches_still_spooled"] > 0, first  # it could not deliver everything at this rate
    c.stop(signal.SIGTERM)

    c2 = CollectorProc(tmp_path, db, port=c.port).start()  # default limits
    procs.append(c2)
    agent2 = start_agent(tmp_path, procs, c2.address, "--agent-id", "throttled", name="agent")
    wait_for(lambda: "connected to collector" in agent2.output(), 30, 0.2, "the agent to reconnect")
    time.sleep(3)
    assert agent2.stop(signal.SIGTERM) == 0
    second = json.loads((tmp_path / "agent" / "last_run.json").read_text())
    rows = stored_samples(db, "throttled")
    keys = [(r[0], r[1], r[2]) for r in rows]
    assert len(keys) == len(set(keys)), "a sample was stored twice"
    assert second["batches_still_spooled"] == 0 and second["batches_rejected"] == 0, second
    assert len(rows) == first["samples_measured"] + second["samples_measured"]
