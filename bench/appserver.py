"""The five "apps" of the footprint run: HTTPS and HTTP servers in one process on the app host.

A desk checks several platforms (CCaaS, CRM, identity, ...); here they are ports of one process
in the app namespace, served by the project's own test server (``tests/agent/https_lab.py``),
with real TLS handshakes against a throw-away CA. Started as
``python -m bench.appserver --host IP --https-port P ... --http-port P --cert C --key K --ready F``.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from tests.agent.https_lab import AppServer, Pki


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", required=True)
    ap.add_argument("--https-port", type=int, action="append", default=[])
    ap.add_argument("--http-port", type=int, action="append", default=[])
    ap.add_argument("--cert", type=Path, required=True)
    ap.add_argument("--key", type=Path, required=True)
    ap.add_argument("--ready", type=Path, required=True)
    args = ap.parse_args(argv)
    pki = Pki(args.cert, args.key, args.cert, args.key)
    servers = [AppServer(pki, args.host, p).start() for p in args.https_port]
    servers += [AppServer(None, args.host, p).start() for p in args.http_port]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    args.ready.write_text(" ".join(str(s.port) for s in servers) + "\n")
    try:
        stop.wait(7200)  # bounded: a benchmark run never lasts this long
    finally:
        for s in servers:
            s.stop()


if __name__ == "__main__":
    main()
