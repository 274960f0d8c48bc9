"""A tiny TCP forwarder on loopback: one address for the agent, an upstream the test can switch.

It stands in for the load balancer in front of several collectors (docs/scale-out.md): the agent
knows one address, and which collector it reaches is decided per connection. ``switch`` sends new
connections elsewhere; ``cut`` closes the open ones, as a balancer does when a backend dies.
Threads and blocking sockets: a test's handful of connections needs nothing more.
"""

from __future__ import annotations

import socket
import threading


class TcpProxy:
    def __init__(self, upstream: tuple[str, int], listen: tuple[str, int] = ("127.0.0.1", 0)):
        self.upstream = upstream
        self._srv = socket.create_server(listen)
        host, port = self._srv.getsockname()[:2]
        self.address = f"{host}:{port}"
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.connections = 0
        threading.Thread(target=self._accept, name="tcpproxy-accept", daemon=True).start()

    def switch(self, upstream: tuple[str, int], cut: bool = True) -> None:
        self.upstream = upstream
        if cut:
            self.cut()

    def cut(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, set()
        for s in conns:
            _close(s)

    def close(self) -> None:
        self._closed = True
        _close(self._srv)
        self.cut()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._srv.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(self.upstream, timeout=5)
                up.settimeout(None)
            except OSError:
                _close(client)  # nobody there: the agent sees a refused/closed connection and retries
                continue
            self.connections += 1
            with self._lock:
                self._conns |= {client, up}
            for src, dst in ((client, up), (up, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                _close(s)
            with self._lock:
                self._conns -= {src, dst}


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass
