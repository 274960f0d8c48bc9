"""App reachability: one HTTP(S) request to an app's URL on a fresh connection, timed phase by phase.
dns, connect, tls, ttfb, total; a 4xx is an answer, a 5xx a failure; the OS trust store verifies.
Design notes: docs/agent-probes.md, "agent/probes/http.py".
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import socket
import ssl
import sys
import time
from dataclasses import dataclass
from typing import Any

import anyio
import httpx

__all__ = [
    "BODY_CAP",
    "ERROR_DNS",
    "ERROR_ERROR",
    "ERROR_HTTP",
    "ERROR_REFUSED",
    "ERROR_TIMEOUT",
    "ERROR_TLS",
    "AppResult",
    "check_app",
]

ERROR_DNS = "dns"
ERROR_TIMEOUT = "timeout"
ERROR_REFUSED = "refused"
ERROR_TLS = "tls"
ERROR_HTTP = "http"
ERROR_ERROR = "error"

BODY_CAP = 256 * 1024  # bytes read at most: enough to time a page, bounded for an endless stream
USER_AGENT = "cxpulse-agent (app reachability check)"
_DETAIL_MAX = 160
_DEFAULT_PORTS = {"https": 443, "http": 80}

# Phases as the trace sees them; the names are also what a timeout's detail reports.
_PHASE_TEXT = {
    "start": "before DNS",
    "dns": "resolving the host name",
    "connect": "TCP connect",
    "tls": "TLS handshake",
    "ttfb": "waiting for response headers",
    "body": "reading the body",
    "done": "closing",
}


@dataclass
class AppResult:
    """One check of one app. Durations are integer microseconds; None where a phase never ran.

    ``ts_us`` is the wall clock at the start (for the time series); the durations come from a
    monotonic clock. ``total_us`` is also set for a failed check: the time it took to fail.
    """

    name: str
    url: str
    address: str | None
    ts_us: int
    dns_us: int | None = None
    connect_us: int | None = None
    tls_us: int | None = None
    ttfb_us: int | None = None
    total_us: int | None = None
    status: int | None = None
    http_version: str | None = None
    cert_days: int | None = None
    error: str | None = None
    detail: str | None = None


class _Timeline:
    """Collects httpcore trace events: when each phase started and ended, and the TLS peer."""

    def __init__(self) -> None:
        self.start()
        self.phase = "start"
        self.marks: dict[str, int] = {}
        self.cert_days: int | None = None

    def start(self) -> None:
        self.t0 = time.perf_counter_ns()

    def mark(self, event: str) -> None:
        self.marks[event] = time.perf_counter_ns()

    def span_us(self, start: str, end: str) -> int | None:
        if start in self.marks and end in self.marks:
            return (self.marks[end] - self.marks[start]) // 1000
        return None

    def elapsed_us(self) -> int:
        return (time.perf_counter_ns() - self.t0) // 1000

    async def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's ``trace`` extension: called at every started/complete/failed step."""
        self.mark(event)
        if event == "connection.connect_tcp.started":
            self.phase = "connect"
        elif event == "connection.start_tls.started":
            self.phase = "tls"
        elif event == "connection.start_tls.complete":
            self.cert_days = _cert_days(info.get("return_value"))
        elif event == "http11.send_request_headers.started":
            self.phase = "ttfb"
        elif event == "http11.receive_response_headers.complete":
            self.phase = "body"


def _cert_days(stream: Any) -> int | None:
    """Whole days until the server certificate expires (0 on its last day)."""
    try:
        cert = stream.get_extra_info("ssl_object").getpeercert()
        expires = ssl.cert_time_to_seconds(cert["notAfter"])
    except Exception:  # no TLS object, or a cert without the field: unknown, not a failure
        return None
    return math.floor((expires - time.time()) / 86400)


# The OS verifies the chain itself (truststore) where OpenSSL cannot see its trust store.
OS_VERIFIER = sys.platform in ("win32", "darwin")
# Where Linux distributions keep their CA bundle, for a build whose OpenSSL was compiled with
# other default paths (a frozen agent built on another distribution).
_LINUX_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",  # Fedora, RHEL
    "/etc/pki/tls/certs/ca-bundle.crt",  # older RHEL, CentOS
    "/etc/ssl/ca-bundle.pem",  # SUSE
    "/etc/ssl/cert.pem",  # Alpine, Arch
)


def trust_context(ca_file: str | None = None, *, os_verifier: bool | None = None) -> ssl.SSLContext:
    """A client context that trusts what the OS trusts, and ``ca_file`` in addition.

    ``os_verifier``: verify through the OS (truststore), as on Windows and macOS; otherwise
    through OpenSSL with the OS's default CA paths, as on Linux. None: this OS's way.
    """
    if os_verifier is None:
        os_verifier = OS_VERIFIER
    ctx: ssl.SSLContext
    if os_verifier:
        import truststore

        ctx = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    else:
        ctx = ssl.create_default_context()  # OpenSSL's default paths, SSL_CERT_FILE/SSL_CERT_DIR honoured
        if not ctx.cert_store_stats()["x509_ca"]:
            bundle = next((b for b in _LINUX_BUNDLES if os.path.isfile(b)), None)
            if bundle is not None:
                ctx.load_verify_locations(cafile=bundle)
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    return ctx


@functools.lru_cache(maxsize=8)
def _ssl_context(ca_file: str | None, _mtime_ns: int) -> ssl.SSLContext:
    """Loading a trust store costs tens of milliseconds of CPU: do it once, not per check.

    The file's mtime is part of the cache key, so a replaced CA file is loaded again.
    """
    return trust_context(ca_file)


def _context_for(ca_file: str | None) -> ssl.SSLContext:
    mtime = os.stat(ca_file).st_mtime_ns if ca_file else 0
    return _ssl_context(ca_file, mtime)


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and everything behind it (``raise from``, context, exception groups)."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        e = todo.pop(0)
        if any(e is s for s in seen):
            continue
        seen.append(e)
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)
        for nxt in (e.__cause__, e.__context__):
            if nxt is not None:
                todo.append(nxt)
    return seen


def _short(text: object) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= _DETAIL_MAX else s[: _DETAIL_MAX - 1] + "…"


def _tls_reason(causes: list[BaseException]) -> str | None:
    for e in causes:
        if isinstance(e, ssl.SSLCertVerificationError):
            # The OS verifiers (truststore) may raise it without verify_message.
            return _short(f"certificate verify failed: {getattr(e, 'verify_message', None) or e}")
    for e in causes:
        if isinstance(e, ssl.SSLError):
            return _short(e.reason or e)
    return None


def _os_reason(causes: list[BaseException]) -> str | None:
    """The first message that names the real cause (errno text), not a wrapper's summary."""
    for e in causes:
        if isinstance(e, OSError) and e.strerror:
            return _short(e.strerror)
    return None


def _classify(exc: Exception, phase: str, timeout_s: float) -> tuple[str, str]:
    """Map an exception raised during a check to (error class, short detail)."""
    causes = _causes(exc)
    if isinstance(exc, (TimeoutError, httpx.TimeoutException)):
        text = f"no answer within {timeout_s:g} s ({_PHASE_TEXT.get(phase, phase)})"
        return (ERROR_DNS if phase == "dns" else ERROR_TIMEOUT), text
    if phase == "dns":
        if isinstance(exc, socket.gaierror):
            return ERROR_DNS, _short(exc.strerror or exc)
        return ERROR_DNS, _short(exc)
    if any(isinstance(e, ConnectionRefusedError) for e in causes):
        return ERROR_REFUSED, "connection refused"
    reason = _tls_reason(causes)
    if reason is not None:
        return ERROR_TLS, reason
    if phase == "tls":  # reset or closed mid-handshake: the TLS endpoint is what failed
        return ERROR_TLS, _os_reason(causes) or _short(exc) or "handshake failed"
    return ERROR_ERROR, _os_reason(causes) or _short(f"{type(exc).__name__}: {exc}")


async def check_app(name: str, url: str, timeout_s: float, *, ca_file: str | None = None) -> AppResult:
    """Check one app once: resolve, connect, handshake, GET ``url``, read up to BODY_CAP bytes.

    Returns within ``timeout_s`` (plus scheduling slack) and never raises; every failure is an
    ``AppResult`` with ``error`` and ``detail`` set. Only cancellation of the caller propagates.
    """
    result = AppResult(name=name, url=url, address=None, ts_us=time.time_ns() // 1000)
    timeline = _Timeline()
    try:
        async with asyncio.timeout(timeout_s):
            await _check(result, timeline, url, timeout_s, ca_file)
    except Exception as exc:
        if timeline.phase != "done":  # a late failure while closing does not undo an answer
            result.error, result.detail = _classify(exc, timeline.phase, timeout_s)
    result.connect_us = timeline.span_us("connection.connect_tcp.started", "connection.connect_tcp.complete")
    result.tls_us = timeline.span_us("connection.start_tls.started", "connection.start_tls.complete")
    result.ttfb_us = timeline.span_us("http11.send_request_headers.started", "http11.receive_response_headers.complete")
    result.cert_days = timeline.cert_days
    if result.total_us is None:
        result.total_us = timeline.elapsed_us()
    return result


async def _check(result: AppResult, timeline: _Timeline, url: str, timeout_s: float, ca_file: str | None) -> None:
    target = httpx.URL(url)
    if target.scheme not in _DEFAULT_PORTS or not target.raw_host:
        raise ValueError(f"not an http(s) URL: {url!r}")
    host = target.raw_host.decode("ascii")  # IDNA-encoded already: what DNS and SNI need
    port = target.port or _DEFAULT_PORTS[target.scheme]
    verify = _context_for(ca_file) if target.scheme == "https" else False
    client = httpx.AsyncClient(
        verify=verify,
        trust_env=False,
        follow_redirects=False,
        timeout=httpx.Timeout(timeout_s),
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=0),
    )
    async with client:
        # anyio loads its asyncio backend on first use (~40 ms of imports once per process): do
        # that before the clock starts, with the rest of the local set-up (trust store, client),
        # so that the clock starts with the first packet.
        await anyio.sleep(0)
        timeline.start()
        timeline.phase = "dns"
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        result.dns_us = timeline.elapsed_us()
        # The first address is the one the OS prefers (RFC 6724 order); a broken preferred path
        # is reported as broken rather than masked by falling back to the next address.
        address = str(infos[0][4][0])
        result.address = address
        timeline.phase = "connect"

        headers = {"Host": target.netloc.decode("ascii"), "User-Agent": USER_AGENT}
        extensions = {"sni_hostname": host, "trace": timeline.trace}
        async with client.stream(
            "GET", target.copy_with(host=address), headers=headers, extensions=extensions
        ) as response:
            result.status = response.status_code
            result.http_version = response.http_version
            received = 0
            async for chunk in response.aiter_raw():  # raw: time the transfer, not decompression
                received += len(chunk)
                if received >= BODY_CAP:
                    break
            result.total_us = timeline.elapsed_us()
            timeline.phase = "done"
    if result.status >= 500:
        result.error, result.detail = ERROR_HTTP, _short(f"{result.status} {response.reason_phrase}".strip())
