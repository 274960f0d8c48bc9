"""A CCaaS platform of the lab's own: plain HTTP whose behaviour a mode file sets, per request.

Why a file: the test switches a running platform between healthy, slow (seconds to first byte)
and broken (5xx) without restarting it, so the desk's checks see one server change its mind, as
a real platform does. The file holds ``ok``, ``slow <ms>`` or ``status <code>``; read on every
request (a few bytes). Stdlib only: it runs as a script inside the platform's namespace.

    python platform.py --listen 10.253.2.2 --port 80 --mode-file /tmp/x/mode
"""

from __future__ import annotations

import argparse
import http.server
import sys
import time
from pathlib import Path

BODY = b"<html><body>platform ok</body></html>\n"


def _mode(path: Path) -> tuple[str, int]:
    try:
        words = path.read_text().split()
    except OSError:
        return "ok", 0
    if len(words) == 2 and words[0] in ("slow", "status") and words[1].isdigit():
        return words[0], int(words[1])
    return "ok", 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--mode-file", type=Path, required=True)
    args = parser.parse_args(argv)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            kind, n = _mode(args.mode_file)
            if kind == "slow":
                time.sleep(min(n, 30_000) / 1000)
            status = n if kind == "status" else 200
            self.send_response(status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(BODY)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(BODY)

        def log_message(self, *a: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((args.listen, args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
