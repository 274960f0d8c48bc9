"""``cxpulse demo``: a collector and an agent on this machine, then the lookup for this user.
Real gRPC, TLS, enrollment and SQLite on loopback; the page's URL and a key revoked at exit are printed.
Design notes: docs/collector-internals.md, "collector/demo.py".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time

from cxpulse.agent.config import AgentConfig
from cxpulse.agent.probes.base import Target
from cxpulse.agent.runner import Agent

from .ingest.service import IngestConfig
from .lookup.report import build, render_text
from .server import Collector


def _default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "cxpulse", "demo")


async def _serve_tcp_listener() -> tuple[asyncio.base_events.Server, int]:
    """A local web 'app': something to time an HTTP check and a TCP connect against."""

    async def on_conn(reader, writer):
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            body = b"cxpulse demo app\n"
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def run_demo(args: argparse.Namespace) -> int:
    data_dir = args.data_dir or _default_data_dir()
    os.makedirs(data_dir, exist_ok=True)
    db = os.path.join(data_dir, "collector.sqlite")
    app, app_port = await _serve_tcp_listener()
    config = IngestConfig(
        apps=[("local-web", f"http://127.0.0.1:{app_port}/", 500)], app_interval_ms=10_000, voice_interval_ms=15_000
    )
    from .security.registry import Registry
    from .security.tls import init_dir, load_server_tls

    tls_dir = os.path.join(data_dir, "tls")
    init_dir(tls_dir, ["localhost"], ["127.0.0.1"])  # what `cxpulse collector init` does; keeps an existing CA
    reg = Registry.open(db)
    try:
        token, _ = reg.create_token(site="demo", uses=1, ttl_s=3600, note="demo")
        api_key, key_info = reg.create_api_key("helpdesk", "demo session (revoked when the demo ends)")
    finally:
        reg.close()
    collector = Collector(
        db,
        "127.0.0.1:0",
        config,
        reflector_listen="127.0.0.1:0",
        tls=load_server_tls(tls_dir),
        http_listen="127.0.0.1:0",
    )
    try:
        await collector.start()
        return await _measure(args, data_dir, db, tls_dir, token, app, app_port, config, collector, api_key)
    finally:
        reg = Registry.open(db)
        try:
            reg.revoke_api_key(key_info.key_id)
        finally:
            reg.close()


async def _measure(
    args: argparse.Namespace,
    data_dir: str,
    db: str,
    tls_dir: str,
    token: str,
    app,
    app_port: int,
    config: IngestConfig,
    collector: Collector,
    api_key: str,
) -> int:
    from .security.tls import CA_CERT

    # local-app always uses TCP connect time, like an app's port would.
    targets = (
        Target("loopback", "127.0.0.1", app_port),
        Target("local-app", "127.0.0.1", app_port, method="tcp_connect"),
    )
    cfg = AgentConfig(
        collector=f"127.0.0.1:{collector.port}",
        state_dir=os.path.join(data_dir, "agent"),
        site="demo",
        probe_interval_s=args.interval,
        batch_interval_s=args.batch_interval,
        measure_gateway=not args.local_only,
        targets=targets,
        reconnect_max_s=2.0,
        ca_file=os.path.join(tls_dir, CA_CERT),
        enroll_token=token,
    ).validate()
    agent = Agent(cfg)
    print(f"cxpulse demo: data in {data_dir}")
    print(
        f"  collector on 127.0.0.1:{collector.port} with TLS (CA {os.path.join(tls_dir, CA_CERT)}; SQLite {db});"
        " the agent enrolls with a one-use token"
    )
    print(
        f"  agent {agent.agent_id} as user {agent.hello.os_user!r}; targets: "
        + ("default gateway, " if cfg.measure_gateway else "")
        + f"loopback, local-app (TCP 127.0.0.1:{app_port}), web check http://127.0.0.1:{app_port}/, "
        + f"voice-cadence via reflector {config.reflector}"
    )
    assert collector.http is not None  # started with http_listen
    print(f"  helpdesk page: {collector.http.url}/  (loopback only, while the demo runs)")
    print(f"  one-time API key for it (helpdesk role, revoked when the demo ends): {api_key}")
    print(f"  measuring for {args.duration:.0f}s (Ctrl-C to stop early)\n", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.ensure_future(agent.run(stop))
    started = time.monotonic()
    try:
        while not stop.is_set():
            elapsed = time.monotonic() - started
            if elapsed >= args.duration:
                break
            try:
                await asyncio.wait_for(stop.wait(), min(5.0, args.duration - elapsed))
            except TimeoutError:
                pass
            _progress(agent, time.monotonic() - started, args.duration)
    finally:
        stop.set()
        await task
        app.close()
        _progress(agent, time.monotonic() - started, args.duration)
        await collector.stop()

    from .store import open_store

    store = open_store(db)
    try:
        view = build(store, agent.agent_id, 3600)
    finally:
        store.close()
    print("\n" + render_text(view), end="")
    print(f"\nLook it up again with:  cxpulse lookup {agent.hello.os_user or agent.agent_id} --db {db}")
    return 0


def _progress(agent: Agent, elapsed: float, duration: float) -> None:
    s, u = agent.stats, agent.uplink.stats
    state = "connected" if u.connected else f"not connected ({u.last_error or 'starting'})"
    print(
        f"  [{min(elapsed, duration):5.1f}s/{duration:.0f}s] samples {s.samples}"
        f" (lost {s.lost}, method {s.method or '?'}),"
        f" app checks {s.app_checks}, voice runs {s.voice_runs}, events {s.events};"
        f" batches spooled {s.batches_spooled} acked {u.batches_acked}; uplink {state}",
        flush=True,
    )
