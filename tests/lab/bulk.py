"""A bulk upload for the lab: the desk sends as fast as TCP lets it to a sink beyond the ISP.

What a user does when "the screen freezes" at home: a backup or a large file upload that fills
the home uplink, so every other packet of the desk (calls, app clicks) queues behind it. Bounded
in time on both ends. Stdlib only: runs as a script inside a namespace.

    python bulk.py sink --listen 10.253.2.2 --port 5001 --seconds 300
    python bulk.py send --to 10.253.2.2 --port 5001 --seconds 150
"""

from __future__ import annotations

import argparse
import socket
import sys
import time

CHUNK = b"\0" * 65536


def sink(host: str, port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    with socket.create_server((host, port)) as srv:
        srv.settimeout(1.0)
        while time.monotonic() < deadline:
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(1.0)
                while time.monotonic() < deadline:
                    try:
                        if not conn.recv(1 << 20):
                            break
                    except TimeoutError:
                        continue


def send(host: str, port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    with socket.create_connection((host, port), timeout=5) as s:
        s.settimeout(2.0)
        while time.monotonic() < deadline:
            try:
                s.send(CHUNK)
            except TimeoutError:
                continue


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("role", choices=("sink", "send"))
    p.add_argument("--listen", default="")
    p.add_argument("--to", default="")
    p.add_argument("--port", type=int, default=5001)
    p.add_argument("--seconds", type=float, required=True)
    a = p.parse_args(argv)
    if a.role == "sink":
        sink(a.listen, a.port, a.seconds)
    else:
        send(a.to, a.port, a.seconds)


if __name__ == "__main__":
    sys.exit(main())
