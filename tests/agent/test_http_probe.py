"""App reachability probe against a real local HTTPS app: phases, failures, and name resolution.

Two settings, both with real TLS and a test CA made by ``openssl`` at test time:

* loopback: the app runs in a thread of this process on 127.0.0.1 / ::1 and is addressed by IP,
  so these tests need no privileges and no name resolution;
* a namespace pair (``desk`` runs the probe, ``app`` runs the HTTPS server and a DNS responder)
  for everything that needs a host name: a namespace-private /etc/hosts, and a resolv.conf that
  points at tests/agent/dns_lab.py, which can be slow, fail, or stay silent on request.

No traffic leaves loopback or the namespaces made here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cxpulse.agent.probes import http as http_probe
from cxpulse.agent.probes.http import BODY_CAP, AppResult, check_app
from tests.agent import dns_lab, https_lab
from tests.agent.https_lab import AppServer, Pki, SilentListener, make_ca, make_pki
from tests.netns import Host, Lab, require_netns
from tests.requirements import require

pytestmark = pytest.mark.timeout(20)

HOST = "crm.test"  # in the desk's /etc/hosts
DNS_HOST = "dns.crm.test"  # answered by the DNS responder
SLOW_DNS_HOST = "slow.crm.test"  # answered after DNS_DELAY_MS
WRONG_HOST = "wrong.test"  # resolves to the app, but the certificate does not name it
DNS_DELAY_MS = 300
# Scheduling slack on top of a timeout (a loaded 2-core machine): below the 5 s a resolver or socket default would take.
SLACK_S = 2.0

PHASES = ("dns_us", "connect_us", "tls_us", "ttfb_us", "total_us")


def _as_dict(result: AppResult | dict[str, Any]) -> dict[str, Any]:
    return dataclasses.asdict(result) if isinstance(result, AppResult) else result


def assert_phases(result: AppResult | dict[str, Any]) -> None:
    """Every phase measured, and the phases fit inside the total (they happen one after another)."""
    r = _as_dict(result)
    for phase in PHASES:
        assert isinstance(r[phase], int) and r[phase] >= 0, (phase, r)
    assert r["dns_us"] + r["connect_us"] + r["tls_us"] + r["ttfb_us"] <= r["total_us"], r


def assert_answered(result: AppResult | dict[str, Any], status: int = 200) -> None:
    r = _as_dict(result)
    assert (r["error"], r["detail"], r["status"]) == (None, None, status), r
    assert r["http_version"] == "HTTP/1.1"


def run_check(url: str, timeout_s: float = 3.0, ca_file: Path | str | None = None) -> tuple[AppResult, float]:
    started = time.monotonic()
    result = asyncio.run(check_app("test-app", url, timeout_s, ca_file=str(ca_file) if ca_file else None))
    return result, time.monotonic() - started


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """Keys, certificates and ready files; removed when the module is done."""
    with tempfile.TemporaryDirectory(prefix="cxpulse-https-") as d:
        yield Path(d)


@pytest.fixture(scope="module")
def pki(workdir: Path) -> Pki:
    require(shutil.which("openssl") is not None, "the openssl CLI is not installed")
    return make_pki(workdir / "pki", [HOST, DNS_HOST, SLOW_DNS_HOST], ["127.0.0.1", "::1"])


@pytest.fixture(scope="module")
def local_app(pki: Pki) -> Iterator[AppServer]:
    with AppServer(pki, "127.0.0.1") as server:
        yield server


# --- loopback: the request itself ------------------------------------------------------------------


def test_result_fields_are_the_wire_names() -> None:
    """The lead maps these names into the payload: renaming one is a wire change."""
    assert [f.name for f in dataclasses.fields(AppResult)] == [
        "name",
        "url",
        "address",
        "ts_us",
        "dns_us",
        "connect_us",
        "tls_us",
        "ttfb_us",
        "total_us",
        "status",
        "http_version",
        "cert_days",
        "error",
        "detail",
    ]


def test_phases_status_version_and_certificate(pki: Pki, loopback: str) -> None:
    with AppServer(pki, loopback) as server:
        before_us = time.time_ns() // 1000
        result, _ = run_check(server.url("/"), ca_file=pki.ca_cert)
    assert_answered(result)
    assert_phases(result)
    assert result.address == loopback
    assert result.name == "test-app" and result.url == server.url("/")
    assert before_us <= result.ts_us <= time.time_ns() // 1000
    assert result.cert_days in (https_lab.CERT_DAYS - 1, https_lab.CERT_DAYS)


def test_plain_http_has_no_tls_phase() -> None:
    with AppServer(None) as server:
        result, _ = run_check(server.url("/"))
    assert_answered(result)
    assert result.connect_us is not None and result.ttfb_us is not None
    assert result.tls_us is None and result.cert_days is None


def test_closed_port_is_refused() -> None:
    # Bound but not listening: the kernel answers the SYN with a RST, and no one else can take it.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        result, _ = run_check(f"https://127.0.0.1:{closed.getsockname()[1]}/")
    assert result.error == "refused" and result.detail
    assert result.dns_us is not None and result.connect_us is None and result.tls_us is None


def test_unknown_ca_is_a_tls_failure(local_app: AppServer, workdir: Path) -> None:
    other_ca, _ = make_ca(workdir, "other-ca")
    result, _ = run_check(local_app.url("/"), ca_file=other_ca)
    assert result.error == "tls"
    assert "certificate verify failed" in result.detail and "issuer" in result.detail
    assert result.connect_us is not None and result.tls_us is None and result.status is None


def test_server_error_is_http_failure_with_status(local_app: AppServer, pki: Pki) -> None:
    result, _ = run_check(local_app.url("/status/503"), ca_file=pki.ca_cert)
    assert (result.error, result.status) == ("http", 503)
    assert result.detail == "503 Service Unavailable"
    assert_phases(result)


@pytest.mark.parametrize("status", [401, 404, 302])
def test_client_errors_and_redirects_are_answers(local_app: AppServer, pki: Pki, status: int) -> None:
    """The platform answered; a 302 is not followed (its Location would be refused)."""
    result, _ = run_check(local_app.url(f"/status/{status}"), ca_file=pki.ca_cert)
    assert_answered(result, status)
    assert_phases(result)


def test_slow_server_shows_in_ttfb(local_app: AppServer, pki: Pki) -> None:
    result, _ = run_check(local_app.url("/sleep/200"), ca_file=pki.ca_cert)
    assert_answered(result)
    assert_phases(result)
    assert result.ttfb_us >= 200_000
    assert result.connect_us < 100_000 and result.tls_us < 200_000


def test_server_that_never_answers_times_out(local_app: AppServer, pki: Pki) -> None:
    result, elapsed = run_check(local_app.url("/hang"), timeout_s=1.0, ca_file=pki.ca_cert)
    assert result.error == "timeout" and "response headers" in result.detail
    assert elapsed < 1.0 + SLACK_S
    assert result.tls_us is not None and result.ttfb_us is None and result.status is None
    assert 1_000_000 <= result.total_us < (1.0 + SLACK_S) * 1e6


def test_listener_that_never_speaks_tls_times_out_in_handshake(pki: Pki) -> None:
    with SilentListener() as silent:
        result, elapsed = run_check(f"https://127.0.0.1:{silent.port}/", timeout_s=1.0, ca_file=pki.ca_cert)
    assert result.error == "timeout" and "TLS handshake" in result.detail
    assert elapsed < 1.0 + SLACK_S
    assert result.connect_us is not None and result.tls_us is None


def test_endless_body_read_is_capped(local_app: AppServer, pki: Pki) -> None:
    """Without the BODY_CAP stop the check would read until its timeout."""
    result, elapsed = run_check(local_app.url("/endless"), timeout_s=5.0, ca_file=pki.ca_cert)
    assert_answered(result)
    assert elapsed < 4.0, f"read {BODY_CAP} bytes too slowly or not capped (5 s timeout): {elapsed:.2f}s"


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "https://", "not a url", ""])
def test_bad_url_is_an_error_not_an_exception(url: str) -> None:
    result, _ = run_check(url, timeout_s=1.0)
    assert result.error == "error" and result.detail
    assert result.address is None and result.status is None


def test_missing_ca_file_is_an_error(local_app: AppServer, workdir: Path) -> None:
    result, _ = run_check(local_app.url("/"), ca_file=workdir / "no-such-ca.pem")
    assert result.error == "error" and "No such file" in result.detail


# --- the OS trust store ---------------------------------------------------------------------------
# On Linux the OS store is OpenSSL's default CA file: SSL_CERT_FILE points it at a bundle made here
# (and SSL_CERT_DIR at an empty directory), for the Linux way and for truststore's Linux backend
# alike. Windows and macOS verify through the OS: emulated below with truststore's own hooks.


@pytest.fixture
def os_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Put these CA files, and only these, in the trust store the OS shows OpenSSL."""
    empty = tmp_path / "no-certs"
    empty.mkdir()
    monkeypatch.setenv("SSL_CERT_DIR", str(empty))
    http_probe._ssl_context.cache_clear()

    def put(*ca_files: Path) -> None:
        bundle = tmp_path / "os-bundle.pem"
        bundle.write_bytes(b"".join(Path(c).read_bytes() for c in ca_files))
        monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
        http_probe._ssl_context.cache_clear()

    yield put
    http_probe._ssl_context.cache_clear()


@pytest.fixture(params=[False, True], ids=["openssl-defaults", "truststore"])
def verifier(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Both ways a desk builds its context: Linux's (OpenSSL's default paths), and truststore's."""
    monkeypatch.setattr(http_probe, "OS_VERIFIER", request.param)
    return request.param


def test_os_trust_store_is_used_without_a_ca_file(
    local_app: AppServer, pki: Pki, workdir: Path, os_store, verifier: bool
) -> None:
    """A TLS-inspecting proxy's root is in the OS store only: the check must pass with it, and only with it."""
    other_ca, _ = make_ca(workdir, "other-ca")
    os_store(other_ca, pki.ca_cert)
    ok, _ = run_check(local_app.url("/"))
    assert_answered(ok)
    assert ok.cert_days in (https_lab.CERT_DAYS - 1, https_lab.CERT_DAYS)

    os_store(other_ca)
    failed, _ = run_check(local_app.url("/"))
    assert failed.error == "tls" and "certificate verify failed" in failed.detail, failed


def test_a_configured_ca_file_adds_to_the_os_store(
    local_app: AppServer, pki: Pki, workdir: Path, os_store, verifier: bool
) -> None:
    """``app_ca_file`` is one more CA, not a replacement: apps signed by the OS store's CAs keep passing."""
    other_ca, _ = make_ca(workdir, "other-ca")
    os_store(pki.ca_cert)
    in_os_store, _ = run_check(local_app.url("/"), ca_file=other_ca)
    assert_answered(in_os_store)

    os_store(other_ca)
    in_ca_file, _ = run_check(local_app.url("/"), ca_file=pki.ca_cert)
    assert_answered(in_ca_file)


def test_context_kind_per_os() -> None:
    truststore = pytest.importorskip("truststore")
    assert isinstance(http_probe.trust_context(os_verifier=True), truststore.SSLContext)
    assert http_probe.OS_VERIFIER == (sys.platform in ("win32", "darwin"))


class FakeOsVerifier:
    """Windows' CertGetCertificateChain / macOS' SecTrustEvaluate as truststore calls them: OpenSSL's
    own verification is off during the handshake, and the OS is handed the peer's chain and name."""

    def __init__(self, roots: list[bytes]) -> None:
        self.roots = roots
        self.seen: list[tuple[list[bytes], str | None]] = []

    @contextlib.contextmanager
    def configure(self, ctx: ssl.SSLContext):
        check_hostname, verify_mode = ctx.check_hostname, ctx.verify_mode
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            yield
        finally:
            ctx.verify_mode = verify_mode
            ctx.check_hostname = check_hostname

    def verify(self, ssl_context: ssl.SSLContext, cert_chain: list[bytes], server_hostname: str | None = None) -> None:
        self.seen.append((cert_chain, server_hostname))
        if not self.roots:  # truststore raises it this way too: without verify_message
            raise ssl.SSLCertVerificationError(
                "CERT_E_UNTRUSTEDROOT: A certificate chain processed, but "
                "terminated in a root certificate which is not trusted"
            )


def _der(pem_file: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem_file.read_text())


@pytest.mark.parametrize("trusted", [True, False], ids=["root-in-os-store", "unknown-root"])
def test_os_verifier_decides_on_windows_and_macos(
    local_app: AppServer, pki: Pki, monkeypatch: pytest.MonkeyPatch, trusted: bool
) -> None:
    truststore_api = pytest.importorskip("truststore._api")
    fake = FakeOsVerifier([_der(pki.ca_cert)] if trusted else [])
    monkeypatch.setattr(truststore_api, "_configure_context", fake.configure)
    monkeypatch.setattr(truststore_api, "_verify_peercerts_impl", fake.verify)
    monkeypatch.setattr(http_probe, "OS_VERIFIER", True)
    http_probe._ssl_context.cache_clear()
    try:
        result, _ = run_check(local_app.url("/"))
    finally:
        http_probe._ssl_context.cache_clear()
    [(chain, name)] = fake.seen
    assert chain[0] == _der(pki.cert) and name == "127.0.0.1"
    if trusted:
        assert_answered(result)
        assert_phases(result)
        assert result.cert_days in (https_lab.CERT_DAYS - 1, https_lab.CERT_DAYS)  # still read after the OS said yes
    else:
        assert result.error == "tls" and "CERT_E_UNTRUSTEDROOT" in result.detail, result
        assert result.detail.startswith("certificate verify failed")


# --- namespaces: host names through /etc/hosts and a real DNS server --------------------------------


@dataclasses.dataclass
class NamedApp:
    """The probe's host (``desk``) and the app host's address, plus the CA the probe trusts."""

    desk: Host
    server_ip: str
    ca_file: str

    def check(self, host: str, path: str = "/", timeout_s: float = 3.0) -> dict[str, Any]:
        return self.desk.call(https_lab.check, "test-app", f"https://{host}{path}", timeout_s, self.ca_file)


def _wait_ready(path: Path, proc: subprocess.Popen, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not (path.exists() and path.read_text().strip()):
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not ready after {timeout_s}s")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def named_app(pki: Pki, workdir: Path) -> Iterator[NamedApp]:
    require_netns()
    with Lab() as lab:
        desk, app = lab.host("desk"), lab.host("app")
        link = lab.link(desk, app)
        ip = link.b_addr
        desk.etc_file("hosts", f"127.0.0.1 localhost\n{ip} {HOST} {WRONG_HOST}\n")
        desk.etc_file("resolv.conf", f"nameserver {ip}\noptions timeout:1 attempts:1\n")
        table = {
            DNS_HOST: {"a": [ip]},
            SLOW_DNS_HOST: {"a": [ip], "delay_ms": DNS_DELAY_MS},
            "servfail.crm.test": {"rcode": "SERVFAIL"},
            "mute.crm.test": {"drop": True},
        }
        http_ready, dns_ready = workdir / "http.ready", workdir / "dns.ready"
        http_proc = app.spawn(
            sys.executable,
            https_lab.__file__,
            "serve",
            "--cert",
            str(pki.cert),
            "--key",
            str(pki.key),
            "--host",
            ip,
            "--ready",
            str(http_ready),
        )
        dns_proc = app.spawn(
            sys.executable, dns_lab.__file__, "--listen", ip, "--table", json.dumps(table), "--ready", str(dns_ready)
        )
        _wait_ready(http_ready, http_proc, "HTTPS test app")
        _wait_ready(dns_ready, dns_proc, "DNS responder")
        yield NamedApp(desk, ip, str(pki.ca_cert))


@pytest.mark.parametrize("host", [HOST, DNS_HOST], ids=["hosts-file", "dns-server"])
def test_resolves_first_then_connects_with_the_name(named_app: NamedApp, host: str) -> None:
    """/expect-host answers 200 only if SNI and Host both carry the name, not the address."""
    result = named_app.check(host, "/expect-host")
    assert_answered(result)
    assert_phases(result)
    assert result["address"] == named_app.server_ip
    assert result["cert_days"] in (https_lab.CERT_DAYS - 1, https_lab.CERT_DAYS)


def test_slow_dns_shows_in_dns_not_in_connect(named_app: NamedApp) -> None:
    result = named_app.check(SLOW_DNS_HOST)
    assert_answered(result)
    assert_phases(result)
    assert result["dns_us"] >= DNS_DELAY_MS * 1000 * 0.97
    assert result["connect_us"] < 100_000
    assert result["total_us"] >= result["dns_us"] + result["connect_us"]


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("nx.crm.test", "not known"),  # NXDOMAIN
        ("servfail.crm.test", "Temporary failure"),  # SERVFAIL
    ],
    ids=["nxdomain", "servfail"],
)
def test_resolution_failure_is_dns(named_app: NamedApp, host: str, reason: str) -> None:
    result = named_app.check(host)
    assert result["error"] == "dns" and reason in result["detail"], result
    assert result["address"] is None and result["dns_us"] is None and result["connect_us"] is None


def test_silent_dns_server_is_dns_failure_within_timeout(named_app: NamedApp) -> None:
    result = named_app.check("mute.crm.test", timeout_s=0.8)
    assert result["error"] == "dns" and "no answer within 0.8 s" in result["detail"], result
    assert result["elapsed_s"] < 0.8 + SLACK_S


def test_certificate_for_another_name_is_tls_failure(named_app: NamedApp) -> None:
    """Connecting by address must not skip the name check: the certificate names crm.test only."""
    result = named_app.check(WRONG_HOST)
    assert result["error"] == "tls" and "Hostname mismatch" in result["detail"], result
    assert WRONG_HOST in result["detail"]
    assert result["address"] == named_app.server_ip and result["status"] is None
