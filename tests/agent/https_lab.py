"""A local HTTPS app for the app-reachability tests: a test CA, a server, and misbehaviours.

The probe must be tested against real TLS (real handshakes, real certificate checks), so this
module makes a throw-away CA and server certificate with the ``openssl`` CLI and serves HTTPS with
the standard library, either in a thread of the test process (loopback tests) or as a process
inside a test namespace (``python https_lab.py serve ...``, for tests that need host names).

Paths select the behaviour, so one server covers every case:

    /                 200 with a small body
    /status/<code>    that status (503, 404, 302 ...)
    /sleep/<ms>       wait, then 200: a slow backend
    /hang             read the request, never answer: a stuck backend
    /endless          200 with a body that never ends: the probe must stop reading on its own
    /expect-host      200 only if the Host header names the TLS server name (SNI), else 421

A ``SilentListener`` accepts TCP (the kernel does) but never speaks TLS: a hung TLS terminator.

Imports are stdlib and cxpulse only: ``Host.call`` loads this file in a child python to run
``check`` inside a namespace.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import http.server
import os
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

from cxpulse.agent.probes.http import check_app

__all__ = ["AppServer", "Pki", "SilentListener", "check", "make_ca", "make_pki"]

CERT_DAYS = 30
_CHUNK = b"x" * 65536


# --- certificates -------------------------------------------------------------------------------


class Pki(NamedTuple):
    """A CA and one server certificate it signed (PEM files in one directory).

    A NamedTuple, not a dataclass: ``Host.call`` loads this file without registering it in
    ``sys.modules``, which dataclasses need.
    """

    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path


def _openssl(*args: str | Path) -> None:
    proc = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, timeout=20)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))} failed:\n{proc.stderr}")


def make_ca(directory: Path, stem: str = "ca", days: int = CERT_DAYS) -> tuple[Path, Path]:
    """A self-signed CA certificate and key (EC P-256: generated in milliseconds)."""
    cert, key = directory / f"{stem}.pem", directory / f"{stem}.key"
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        key,
        "-out",
        cert,
        "-days",
        str(days),
        "-subj",
        f"/CN=cxpulse test {stem}",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    return cert, key


def make_pki(directory: Path, names: list[str], ips: list[str], days: int = CERT_DAYS) -> Pki:
    """A CA and a server certificate valid ``days`` days for ``names`` and ``ips`` (SAN)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = make_ca(directory, "ca", days)
    cert, key, csr, ext = (directory / n for n in ("server.pem", "server.key", "server.csr", "server.ext"))
    san = ",".join([f"DNS:{n}" for n in names] + [f"IP:{a}" for a in ips])
    ext.write_text(
        f"subjectAltName={san}\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    _openssl(
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        key,
        "-out",
        csr,
        "-subj",
        f"/CN={names[0] if names else ips[0]}",
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca_cert,
        "-CAkey",
        ca_key,
        "-set_serial",
        str(int.from_bytes(os.urandom(8), "big")),
        "-days",
        str(days),
        "-extfile",
        ext,
        "-out",
        cert,
    )
    return Pki(ca_cert, ca_key, cert, key)


# --- the server -----------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path.startswith("/status/"):
            self._answer(int(path.removeprefix("/status/")))
        elif path.startswith("/sleep/"):
            if not self.server.stopping.wait(int(path.removeprefix("/sleep/")) / 1000):
                self._answer(200)
        elif path == "/hang":
            self.server.stopping.wait(60)
            self.close_connection = True
        elif path == "/endless":
            self._endless()
        elif path == "/expect-host":
            sni = getattr(self.request, "sni", None)
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
            self._answer(200 if sni and host == sni else 421)
        else:
            self._answer(200)

    def _answer(self, status: int) -> None:
        body = f"{status} from cxpulse test app\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        if 300 <= status < 400:
            self.send_header("Location", "https://127.0.0.1:1/")  # loopback: harmless if ever followed
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def _endless(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Connection", "close")  # no length: the body ends when the server closes
        self.end_headers()
        self.close_connection = True
        try:
            while not self.server.stopping.is_set():
                self.wfile.write(_CHUNK)
        except OSError:  # the client stopped reading and closed: expected
            pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """HTTP(S) server; the TLS handshake runs in the connection's own thread, not in accept()."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily, tls: ssl.SSLContext | None):
        self.address_family = family
        self.tls = tls
        self.stopping = threading.Event()
        super().__init__(address, _Handler)

    def finish_request(self, request: socket.socket, client_address: object) -> None:
        request.settimeout(10)
        if self.tls is not None:
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError):  # the client rejected our certificate, or left
                request.close()
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that hang up mid-answer are part of the tests


def _server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)

    def remember_sni(sock: ssl.SSLSocket, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        sock.sni = server_name  # type: ignore[attr-defined]  read back by /expect-host

    ctx.sni_callback = remember_sni
    return ctx


class AppServer:
    """The test app on ``host``:``port`` (0: any free port), TLS unless ``pki`` is None."""

    def __init__(self, pki: Pki | None, host: str = "127.0.0.1", port: int = 0) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        tls = _server_context(pki.cert, pki.key) if pki is not None else None
        self._server = _Server((host, port), family, tls)
        self.host = host
        self.port = self._server.server_address[1]
        self.scheme = "https" if tls else "http"
        self._thread: threading.Thread | None = None

    def url(self, path: str = "/", host: str | None = None) -> str:
        host = host or self.host
        netloc = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{netloc}:{self.port}{path}"

    def start(self) -> AppServer:
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever(0.05)

    def stop(self) -> None:
        self._server.stopping.set()  # releases /hang, /sleep and /endless handlers
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()

    def __enter__(self) -> AppServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SilentListener:
    """A listening socket nobody accepts on: the kernel completes TCP handshakes, then silence."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.host = host
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SilentListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- run inside a namespace -----------------------------------------------------------------------


def check(name: str, url: str, timeout_s: float, ca_file: str | None) -> dict:
    """``Host.call`` target: one check, its result as a dict plus the wall time it took."""
    started = time.monotonic()
    result = asyncio.run(check_app(name, url, timeout_s, ca_file=ca_file))
    return {**dataclasses.asdict(result), "elapsed_s": time.monotonic() - started}


def main(argv: list[str] | None = None) -> None:
    """``serve``: the test app and a silent listener in this process until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=443)
    parser.add_argument("--silent-port", type=int, default=8443)
    parser.add_argument("--ready", type=Path, required=True, help="file written once both listen")
    args = parser.parse_args(argv)
    pki = Pki(args.cert, args.key, args.cert, args.key)
    server = AppServer(pki, args.host, args.port)
    silent = SilentListener(args.host, args.silent_port)
    args.ready.write_text(f"{server.port} {silent.port}\n")
    try:
        server.serve_forever()
    finally:
        silent.close()


if __name__ == "__main__":
    sys.exit(main())
