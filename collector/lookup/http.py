"""Serve the lookup API, page and /metrics inside the collector's own asyncio loop.
``start_http`` binds the socket itself (a bad or busy address fails at start-up in one line; port 0 reports its port),
then runs uvicorn's server as a task of the running loop: no second process or loop; the collector keeps SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Callable, Iterator

from ..store import Store, open_store
from ..store.capabilities import FileBacked, UrlNamed

__all__ = ["HttpHandle", "parse_listen", "start_http"]

log = logging.getLogger("cxpulse.collector.http")


def parse_listen(listen: str) -> tuple[str, int]:
    """``127.0.0.1:8080``, ``[::1]:8080``, ``:8080`` (loopback) -> (host, port); ValueError otherwise."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--http must be HOST:PORT such as 127.0.0.1:8080; got {listen!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP, and without it every
    # response after a connection's first waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen for HTTP on {host}:{port}: {exc.strerror or exc}") from None
    return sock


class HttpHandle:
    """A running HTTP server: ``url``, ``port``, the ``service`` behind it, and ``await stop()``."""

    def __init__(
        self,
        server,
        task: asyncio.Task,
        sock: socket.socket,
        service,
        owned_store: Store | None,
        alerts,
        access=None,
        owned_registry=None,
    ) -> None:
        self._server = server
        self._task = task
        self._sock = sock
        self.service = service
        self.alerts = alerts
        self._owned_store = owned_store
        self.access = access
        self.registry = access.registry if access is not None else None
        self._owned_registry = owned_registry
        host, port = sock.getsockname()[:2]
        self.host = host
        self.port = port
        self.url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"

    async def stop(self, grace: float = 5.0) -> None:
        """Stop taking requests, let running ones finish (up to ``grace`` s), flush alerts, close."""
        if self.alerts is not None:
            await self.alerts.stop()
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace + 1)
        except (TimeoutError, asyncio.CancelledError):
            self._server.force_exit = True
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        self._sock.close()
        if self._owned_store is not None:
            await asyncio.to_thread(self._owned_store.close)
        if self._owned_registry is not None:
            await asyncio.to_thread(self._owned_registry.close)


def _store_url(store) -> str | None:
    """The URL the security registry opens beside a Store object (same database, its own tables)."""
    for v in (
        store.url if isinstance(store, UrlNamed) else None,
        store.path if isinstance(store, FileBacked) else None,
    ):
        if isinstance(v, str) and v:
            return v
    return None


async def start_http(
    store_url_or_store: str | Store,
    listen: str = "127.0.0.1:8080",
    *,
    stats=None,
    alerts_config=None,
    public_url: str = "",
    now_us: Callable[[], int] | None = None,
    access_log: bool = False,
    registry=None,
    pseudonymize: bool = False,
    pseudonym_secret_file: str | None = None,
    trusted_proxies: tuple[str, ...] = (),
    metrics_open: bool = False,
) -> HttpHandle:
    """Start the lookup API + page + /metrics on ``listen``; returns once it accepts connections.

    - ``store_url_or_store``: the collector's Store (shared, not closed on stop) or a store URL
      (opened here, closed on stop).
    - ``registry``: the security registry (API keys, audit log); None: opened here on the
      store's database and closed on stop. There is no way to serve the API without it.
    - ``pseudonymize``: user names replaced by pseudonyms in views that do not need them;
      ``pseudonym_secret_file`` keeps the HMAC secret (created 0600 on first use).
    - ``trusted_proxies``: reverse proxies whose X-Forwarded-For names the client in the audit log.
    - ``metrics_open``: /metrics without a key (counts per site only; default: a key is needed).
    - ``stats``: the ingest service's ``IngestStats`` for /metrics (None: ingest counters absent).
    - ``alerts_config``: an ``alerts.AlertConfig`` (webhooks to ITSM); None: no alerts.
    - ``public_url``: how analysts reach the page, for links in alerts and tickets (default: the
      bound URL; none when bound to every address, and the links are relative).
    """
    try:
        import uvicorn
    except ImportError:
        raise RuntimeError(
            "the HTTP lookup needs starlette and uvicorn, which cxpulse installs: reinstall it (pip install cxpulse)"
        ) from None
    from ..alerts import Alerter
    from ..alerts.metrics import MetricsSource
    from ..security.registry import Registry
    from .access import Access, load_pseudonym_secret
    from .api import create_app
    from .service import LookupService

    host, port = parse_listen(listen)
    secret = None
    if pseudonymize or pseudonym_secret_file:  # keys made with pseudonymize use it too
        secret = await asyncio.to_thread(load_pseudonym_secret, pseudonym_secret_file)
    access = Access(
        registry,
        pseudonymize=pseudonymize,
        trusted_proxies=trusted_proxies,  # fails fast on bad input
        pseudonym_secret=secret,
        metrics_open=metrics_open,
    )
    owned = owned_registry = None
    if isinstance(store_url_or_store, str):
        owned = store = open_store(store_url_or_store)
    else:
        store = store_url_or_store
    sock = None
    try:
        if registry is None:
            url = store_url_or_store if isinstance(store_url_or_store, str) else _store_url(store)
            if url is None:
                raise RuntimeError("the HTTP API needs the security registry (API keys, audit log): pass registry=")
            owned_registry = access.registry = await asyncio.to_thread(Registry.open, url)
        sock = _bind(host, port)
        bound = sock.getsockname()
        # Links (tickets, alerts) use the public URL; else the bound address, unless that is "any
        # address" (0.0.0.0, ::), which no analyst can open: then they stay relative ("/#/agent/...").
        base = public_url or (
            ""
            if bound[0] in ("0.0.0.0", "::")
            else f"http://{'[' + bound[0] + ']' if ':' in bound[0] else bound[0]}:{bound[1]}"
        )
        service = LookupService(store, stats=stats, now_us=now_us, public_url=base)
        alerts = None
        if alerts_config is not None:
            alerts_config.validate()
            alerts = Alerter(alerts_config, service)
            service.alerts = alerts
        source = MetricsSource(service)
        app = create_app(service, access, metrics=source.render)
        # proxy_headers off: uvicorn would otherwise take X-Forwarded-For from any loopback peer as the
        # client address; the audit log believes that header only from --trusted-proxy (access.py).
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=access_log,
            lifespan="off",
            timeout_graceful_shutdown=5,
            server_header=False,
            proxy_headers=False,
        )
        server = _EmbeddedServer(config)
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]), name="cxpulse-http")
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
                raise RuntimeError("the HTTP server stopped during start-up")
            await asyncio.sleep(0.01)
        if alerts is not None:
            await alerts.start()
    except BaseException:
        if sock is not None:
            sock.close()
        if owned is not None:
            owned.close()
        if owned_registry is not None:
            owned_registry.close()
        raise
    handle = HttpHandle(server, task, sock, service, owned, alerts, access, owned_registry)
    extras = ", pseudonymized" if pseudonymize else ""
    if _is_loopback(host):
        log.info("lookup page and API on %s (API keys required%s)", handle.url, extras)
    else:
        log.warning(
            "lookup page and API on %s: API keys required%s, but plain HTTP: keys and names cross the "
            "network readable; put it behind a TLS proxy or keep it on the helpdesk network",
            handle.url,
            extras,
        )
    return handle


def _server_class():
    import uvicorn

    class Embedded(uvicorn.Server):
        """uvicorn's server without its signal handling: the collector owns SIGINT/SIGTERM."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Embedded


def _EmbeddedServer(config):
    return _server_class()(config)
