"""Bad input gets a clear gRPC status, the stream and other agents carry on, nothing stored is lost."""

from __future__ import annotations

import queue
import sqlite3
import time

import grpc
import msgpack
import pytest

from cxpulse.v1 import payload
from cxpulse.v1 import telemetry_pb2 as pb
from cxpulse.v1 import telemetry_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow


class RawAgent:
    """A hand-driven stream, so that a test can send exactly the bytes it wants."""

    def __init__(self, address: str, agent_id: str, epoch: int = 7):
        self.channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)])
        self.q: queue.Queue = queue.Queue()
        self.responses = pb_grpc.TelemetryServiceStub(self.channel).Stream(iter(self.q.get, None), timeout=30)
        self.q.put(pb.StreamRequest(hello=pb.Hello(agent_id=agent_id, host="h-" + agent_id, os_user="u-" + agent_id, seq_epoch=epoch)))
        first = next(self.responses)
        assert first.WhichOneof("kind") == "config"
        self.config = first.config

    def send(self, seq: int, data: bytes, count: int) -> pb.Ack:
        self.q.put(pb.StreamRequest(batch=pb.Batch(seq=seq, payload=data, sample_count=count)))
        return next(self.responses).ack

    def close(self) -> None:
        self.q.put(None)
        self.channel.close()


def good_payload(n: int = 5, start_s: int = 1_790_000_000) -> tuple[bytes, int]:
    s = payload.Series(target="loopback", address="127.0.0.1", method=payload.METHOD_ICMP_RAW)
    for i in range(n):
        s.add((start_s + i) * 1_000_000, 100 + i if i % 3 else None)
    b = payload.SampleBatch([s])
    return payload.encode(b), b.sample_count


def count(db) -> int:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT count(*) FROM samples_rtt").fetchone()[0]
    finally:
        con.close()


def test_each_bad_batch_is_rejected_with_a_status_and_the_stream_carries_on(collector):
    a = RawAgent(collector.address, "bad-input")
    other = RawAgent(collector.address, "well-behaved")
    try:
        data, n = good_payload(5)
        ack = a.send(1, data, n)
        assert ack.status == pb.ACK_STATUS_STORED and ack.committed_seq == 1 and ack.code == 0

        ack = a.send(2, b"\xc1\xff not msgpack at all", 3)
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
        odata, on = good_payload(4, start_s=1_790_000_100)
        assert other.send(1, odata, on).status == pb.ACK_STATUS_STORED
        data2, n2 = good_payload(5, start_s=1_790_000_200)
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
        data2, n2 = good_payload(3, start_s=1_790_000_100)
        assert other.send(2, data2, n2).status == pb.ACK_STATUS_STORED
        assert count(collector.db) == n + n2
    finally:
        victim.close()
        other.close()
    # And the collector takes new streams afterwards.
    again = RawAgent(collector.address, "huge-sender")
    try:
        data3, n3 = good_payload(2, start_s=1_790_000_300)
        assert again.send(1, data3, n3).status == pb.ACK_STATUS_STORED
    finally:
        again.close()


def test_stream_without_hello_is_refused(collector):
    channel = grpc.insecure_channel(collector.address)
    try:
        data, n = good_payload(2)
        reqs = iter([pb.StreamRequest(batch=pb.Batch(seq=1, payload=data, sample_count=n))])
        with pytest.raises(grpc.RpcError) as err:
            list(pb_grpc.TelemetryServiceStub(channel).Stream(reqs, timeout=10))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Hello" in err.value.details()
    finally:
        channel.close()
    assert count(collector.db) == 0


def test_hello_without_agent_id_is_refused(collector):
    channel = grpc.insecure_channel(collector.address)
    try:
        reqs = iter([pb.StreamRequest(hello=pb.Hello(host="x"))])
        with pytest.raises(grpc.RpcError) as err:
            list(pb_grpc.TelemetryServiceStub(channel).Stream(reqs, timeout=10))
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
        data2, n2 = good_payload(3, start_s=1_790_000_100)
        assert b.send(1, data2, n2).status == pb.ACK_STATUS_STORED
    finally:
        b.close()
    assert count(collector.db) == n + n2
