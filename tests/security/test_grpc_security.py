"""The gRPC port as an attacker meets it: real TLS handshakes, real credentials, a real SQLite store.

Collectors run in-process (one asyncio loop in a thread) so a test can hand them TLS material the
CLI would refuse (an expired certificate); the refusal to start is checked through the CLI itself.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import queue
import sqlite3
import stat
import threading
import time
from pathlib import Path

import grpc
import pytest

from cxpulse.collector.security.registry import Registry
from cxpulse.collector.security.tls import CA_CERT, Issued, ServerTls, init_dir, issue, load_server_tls, make_ca
from cxpulse.collector.server import Collector
from cxpulse.v1 import payload
from cxpulse.v1 import telemetry_pb2 as pb
from cxpulse.v1 import telemetry_pb2_grpc as pb_grpc
from tests.conftest import CollectorProc, Proc, run_cli, start_agent, wait_for
from tests.stored import rtt_count

pytestmark = pytest.mark.slow

START_S = int(time.time()) - 600


class LiveCollector:
    """A Collector on 127.0.0.1:any in its own event loop thread; stopped by ``close``."""

    def __init__(self, db: Path, tls: ServerTls | None):
        self.db = db
        self.loop = asyncio.new_event_loop()
        self.collector = Collector(str(db), "127.0.0.1:0", tls=tls, insecure=tls is None, background=False)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.collector.start(), self.loop).result(30)
        self.address = f"127.0.0.1:{self.collector.port}"

    def close(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.collector.stop(grace=3), self.loop).result(30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture
def tls_dir(tmp_path) -> Path:
    d = tmp_path / "tls"
    init_dir(d, ["localhost"], ["127.0.0.1"])
    return d


@pytest.fixture
def live(tmp_path, tls_dir):
    c = LiveCollector(tmp_path / "c.sqlite", load_server_tls(str(tls_dir)))
    yield c
    c.close()


def secure(address: str, ca: bytes, cert: Issued | None = None) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=cert.key_pem if cert else None,
        certificate_chain=cert.cert_pem if cert else None,
    )
    return grpc.secure_channel(address, creds)


def token(db: Path, uses: int = 5, **kw) -> str:
    reg = Registry.open(str(db), **kw)
    try:
        return reg.create_token(uses=uses, ttl_s=3600)[0]
    finally:
        reg.close()


def enroll(ch: grpc.Channel, tok: str, agent_id: str) -> str:
    return (
        pb_grpc.TelemetryServiceStub(ch)
        .Enroll(pb.EnrollRequest(token=tok, agent_id=agent_id, host="h"), timeout=10)
        .credential
    )


def batch() -> pb.StreamRequest:
    s = payload.Series(target="loopback", address="127.0.0.1", method=payload.METHOD_ICMP_RAW)
    for i in range(5):
        s.add((START_S + i) * 1_000_000, 100 + i)
    b = payload.SampleBatch([s])
    return pb.StreamRequest(batch=pb.Batch(seq=1, payload=payload.encode(b), sample_count=b.sample_count))


class Stream:
    """A hand-driven agent stream: Hello, then whatever the test sends."""

    def __init__(self, ch: grpc.Channel, agent_id: str, credential: str = ""):
        self.q: queue.Queue = queue.Queue()
        md = (("authorization", f"Bearer {credential}"),) if credential else ()
        self.responses = pb_grpc.TelemetryServiceStub(ch).Stream(iter(self.q.get, None), metadata=md, timeout=30)
        self.q.put(pb.StreamRequest(hello=pb.Hello(agent_id=agent_id, host="h", os_user="u", seq_epoch=1)))

    def first(self):
        return next(self.responses)

    def close(self) -> None:
        self.q.put(None)


def stored(db: Path) -> tuple[int, list[str]]:
    con = sqlite3.connect(db)
    try:
        return (
            rtt_count(db),
            [r[0] for r in con.execute("SELECT agent_id FROM agents ORDER BY agent_id")],
        )
    finally:
        con.close()


def code_of(fn) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value.code()


# --- TLS handshakes ------------------------------------------------------------------------------


def test_right_ca_enrolls_and_stores(live, tls_dir):
    with secure(live.address, (tls_dir / CA_CERT).read_bytes()) as ch:
        cred = enroll(ch, token(live.db), "desk-1")
        s = Stream(ch, "desk-1", cred)
        assert s.first().WhichOneof("kind") == "config"
        s.q.put(batch())
        ack = next(s.responses).ack
        s.close()
    assert ack.status == pb.ACK_STATUS_STORED
    assert stored(live.db) == (5, ["desk-1"])


def test_wrong_ca_fails_the_handshake(live, tmp_path):
    other = make_ca("someone else's CA")
    with secure(live.address, other.cert_pem) as ch:
        assert code_of(lambda: enroll(ch, token(live.db), "desk-1")) == grpc.StatusCode.UNAVAILABLE
    assert Registry.open(str(live.db)).list_agents() == []


def test_plaintext_client_against_tls_server_fails(live):
    with grpc.insecure_channel(live.address) as ch:
        assert code_of(lambda: enroll(ch, token(live.db), "desk-1")) == grpc.StatusCode.UNAVAILABLE
        s = Stream(ch, "desk-1")
        assert code_of(s.first) == grpc.StatusCode.UNAVAILABLE
    assert stored(live.db) == (0, [])


def test_expired_server_certificate_fails(tmp_path):
    ca = make_ca()
    old = issue(
        ca,
        names=["localhost"],
        ips=["127.0.0.1"],
        days=30,
        not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=60),
    )
    col = LiveCollector(tmp_path / "c.sqlite", ServerTls(old.cert_pem + ca.cert_pem, old.key_pem))
    try:
        with secure(col.address, ca.cert_pem) as ch:
            assert code_of(lambda: enroll(ch, token(col.db), "desk-1")) == grpc.StatusCode.UNAVAILABLE
    finally:
        col.close()
    # and the CLI will not even serve it
    (tmp_path / "s.pem").write_bytes(old.cert_pem + ca.cert_pem)
    (tmp_path / "s.key").write_bytes(old.key_pem)
    r = run_cli(
        "collector",
        "serve",
        "--db",
        str(tmp_path / "c.sqlite"),
        "--tls-cert",
        str(tmp_path / "s.pem"),
        "--tls-key",
        str(tmp_path / "s.key"),
        timeout=60,
    )
    assert r.returncode == 2 and "expired" in r.stderr


def test_mutual_tls_requires_a_client_certificate_from_the_ca(tmp_path, tls_dir):
    ca = Issued((tls_dir / CA_CERT).read_bytes(), (tls_dir / "ca.key").read_bytes())
    tls = load_server_tls(str(tls_dir), client_ca=str(tls_dir / CA_CERT))
    col = LiveCollector(tmp_path / "c.sqlite", tls)
    try:
        with secure(col.address, ca.cert_pem) as ch:
            assert code_of(lambda: enroll(ch, token(col.db), "desk-1")) == grpc.StatusCode.UNAVAILABLE
        stranger = issue(make_ca(), client=True, common_name="desk-x")
        with secure(col.address, ca.cert_pem, stranger) as ch:
            assert code_of(lambda: enroll(ch, token(col.db), "desk-1")) == grpc.StatusCode.UNAVAILABLE
        with secure(col.address, ca.cert_pem, issue(ca, client=True, common_name="desk-1")) as ch:
            assert enroll(ch, token(col.db), "desk-1").startswith("cxp_agt_")
    finally:
        col.close()


# --- enrollment and binding ----------------------------------------------------------------------


def test_token_reuse_beyond_its_count_and_expired_token_are_refused(live, tls_dir):
    with secure(live.address, (tls_dir / CA_CERT).read_bytes()) as ch:
        once = token(live.db, uses=1)
        enroll(ch, once, "desk-1")
        with pytest.raises(grpc.RpcError) as info:
            enroll(ch, once, "desk-2")
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED and "used up" in info.value.details()
        # Created eight days ago with a one-day lifetime: expired a week ago (no sleeping in tests).
        stale = token(live.db, clock=lambda: time.time() - 8 * 86400)
        with pytest.raises(grpc.RpcError) as info:
            enroll(ch, stale, "desk-3")
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED and "expired" in info.value.details()
        with pytest.raises(grpc.RpcError) as info:
            enroll(ch, token(live.db), "desk-1")  # taking over an enrolled id
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert [a.agent_id for a in Registry.open(str(live.db)).list_agents()] == ["desk-1"]


def test_no_credential_stores_nothing(live, tls_dir):
    with secure(live.address, (tls_dir / CA_CERT).read_bytes()) as ch:
        for cred in ("", "cxp_agt_0123456789abcdef_forged", "garbage"):
            s = Stream(ch, "desk-1", cred)
            s.q.put(batch())
            assert code_of(s.first) == grpc.StatusCode.UNAUTHENTICATED
            s.close()
    assert stored(live.db) == (0, [])


def test_an_agent_cannot_send_as_another(live, tls_dir):
    with secure(live.address, (tls_dir / CA_CERT).read_bytes()) as ch:
        tok = token(live.db)
        mine = enroll(ch, tok, "desk-1")
        enroll(ch, tok, "desk-2")
        s = Stream(ch, "desk-2", mine)  # desk-1's credential, Hello claiming desk-2
        s.q.put(batch())
        with pytest.raises(grpc.RpcError) as info:
            s.first()
        s.close()
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED and "desk-1" in info.value.details()
    assert stored(live.db) == (0, [])


def test_revoked_agent_stream_is_cut_within_seconds(live, tls_dir):
    with secure(live.address, (tls_dir / CA_CERT).read_bytes()) as ch:
        cred = enroll(ch, token(live.db), "desk-1")
        s = Stream(ch, "desk-1", cred)
        assert s.first().WhichOneof("kind") == "config"
        # Revoked by another process (as by a second collector's admin): only the database is shared.
        r = run_cli("collector", "agents", "revoke", "desk-1", "--db", str(live.db))
        assert r.returncode == 0, r.stderr
        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            next(s.responses)
        cut_s = time.monotonic() - t0
        s.close()
        print(
            f"\nrevoked agent's open stream cut {cut_s:.2f}s after `collector agents revoke` returned (poll every 1 s)"
        )
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED and "revoked" in info.value.details()
        assert cut_s < 5
        again = Stream(ch, "desk-1", cred)
        assert code_of(again.first) == grpc.StatusCode.UNAUTHENTICATED
        again.close()
    entries = Registry.open(str(live.db)).audit(subject="desk-1")
    assert [e.action for e in entries] == ["enroll", "agent.revoke"]


# --- start-up and the real agent -----------------------------------------------------------------


def test_collector_refuses_to_start_without_tls_and_says_why(tmp_path):
    r = run_cli("collector", "serve", "--listen", "127.0.0.1:0", "--db", str(tmp_path / "c.sqlite"), timeout=60)
    assert r.returncode == 2
    assert "refusing to start without TLS" in r.stderr and "--insecure" in r.stderr and "collector init" in r.stderr


def test_init_then_serve_finds_its_tls_dir_and_insecure_is_loud(tmp_path, procs):
    db = tmp_path / "c.sqlite"
    r = run_cli("collector", "init", "--name", "localhost", "--ip", "127.0.0.1", "--db", str(db), "--port", "50051")
    assert r.returncode == 0, r.stderr
    assert "ENROLL_TOKEN  cxp_enr_" in r.stdout and "Admin API key" in r.stdout and "CA_CERT" in r.stdout
    assert stat.S_IMODE(os.stat(tmp_path / "tls" / "ca.key").st_mode) == 0o600
    reg = Registry.open(str(db))
    assert len(reg.list_tokens()) == 1 and [k.role for k in reg.list_api_keys()] == ["admin"]
    reg.close()
    # Without TLS options, serve uses the tls/ directory init made beside the database.
    ready = tmp_path / "ready"
    col = Proc(
        ["-v", "collector", "serve", "--listen", "127.0.0.1:0", "--db", str(db), "--ready-file", str(ready)],
        tmp_path / "serve.log",
    ).start()
    procs.append(col)
    wait_for(lambda: (ready.exists() and ready.read_text().strip()) or not col.alive(), 20, what="collector to listen")
    assert col.alive() and f"with TLS ({tmp_path / 'tls'}" in col.output()
    port = int(ready.read_text())
    with secure(f"127.0.0.1:{port}", (tmp_path / "tls" / CA_CERT).read_bytes()) as ch:
        assert enroll(ch, r.stdout.split("ENROLL_TOKEN  ")[1].split()[0], "desk-1").startswith("cxp_agt_")
    plain = CollectorProc(tmp_path / "p", tmp_path / "p.sqlite", extra=["--insecure"])
    (tmp_path / "p").mkdir()
    plain.start()
    procs.append(plain)
    assert "INSECURE" in plain.output() and "WITHOUT TLS" in plain.output()


def test_real_agent_enrolls_once_and_keeps_its_credential_private(tmp_path, procs, collector):
    agent = start_agent(tmp_path, procs, collector.address)
    cred = tmp_path / "agent" / "credential.json"
    wait_for(cred.exists, 30, what="the agent to enroll")
    assert stat.S_IMODE(cred.stat().st_mode) == 0o600
    wait_for(lambda: stored(collector.db)[0] > 0, 30, what="samples from the enrolled agent")
    reg = Registry.open(str(collector.db))
    [t] = reg.list_tokens()
    assert t.uses_total - t.uses_left == 1
    agent.stop()
    start_agent(tmp_path, procs, collector.address)  # restart: uses the kept credential, not the token
    before = stored(collector.db)[0]
    wait_for(lambda: stored(collector.db)[0] > before, 30, what="samples after the restart")
    assert reg.list_tokens()[0].uses_left == t.uses_left
    reg.close()


def test_insecure_collector_still_requires_enrollment(tmp_path, procs):
    col = CollectorProc(tmp_path, tmp_path / "c.sqlite", extra=["--insecure"]).start()
    procs.append(col)
    lone = start_agent(tmp_path, procs, col.address, "--config", str(_config(tmp_path, col.address)), name="lone")
    wait_for(lambda: "not enrolled" in lone.output(), 30, what="the agent to say it is not enrolled")
    assert stored(col.db) == (0, [])


def _config(tmp_path: Path, address: str) -> Path:
    p = tmp_path / "lone.toml"
    p.write_text(f'collector = "{address}"\ninsecure = true\n')
    return p


def test_real_agent_with_the_wrong_ca_sends_nothing_and_says_why(tmp_path, procs, collector):
    other = tmp_path / "other-ca.pem"
    other.write_bytes(make_ca("not the collector's CA").cert_pem)
    agent = start_agent(
        tmp_path, procs, collector.address, "--config", str(_wrong_ca_config(tmp_path, collector, other))
    )
    wait_for(lambda: "TLS handshake with" in agent.output(), 30, what="the agent to report the failed handshake")
    assert "CERTIFICATE_VERIFY_FAILED" in agent.output()
    assert stored(collector.db) == (0, []) and not (tmp_path / "agent" / "credential.json").exists()


def _wrong_ca_config(tmp_path: Path, collector, ca: Path) -> Path:
    p = tmp_path / "wrong-ca.toml"
    p.write_text(f'collector = "{collector.address}"\nca_file = "{ca}"\nenroll_token = "{collector.token}"\n')
    return p


def test_agent_once_reports_the_handshake_and_enrollment(tmp_path, collector):
    ok = run_cli(
        "agent",
        "once",
        "--collector",
        collector.address,
        "--ca-file",
        collector.ca_file,
        "--no-gateway",
        "--state-dir",
        str(tmp_path / "s"),
        "--count",
        "1",
        "--no-wifi",
        "--json",
    )
    sec = json.loads(ok.stdout)["collector"]["security"]
    assert sec["handshake"] == "ok" and sec["enrolled"] is False and sec["token_configured"] is False
    other = tmp_path / "other-ca.pem"
    other.write_bytes(make_ca().cert_pem)
    bad = run_cli(
        "agent",
        "once",
        "--collector",
        collector.address,
        "--ca-file",
        str(other),
        "--no-gateway",
        "--state-dir",
        str(tmp_path / "s"),
        "--count",
        "1",
        "--no-wifi",
    )
    assert "handshake failed: SSL_ERROR_SSL" in bad.stdout and "CERTIFICATE_VERIFY_FAILED" in bad.stdout
    assert "NO enroll_token configured" in bad.stdout
