"""Functions the tests run inside namespaces (``Host.call``): stdlib and cxpulse imports only.

Everything is imported at module load, before ``Host.call`` drops privileges, because an
unprivileged child may not be able to read the interpreter's own files afterwards.
"""

from __future__ import annotations

import asyncio
import concurrent.futures.thread  # noqa: F401  loop.getaddrinfo imports it lazily
import dataclasses
import encodings.idna  # noqa: F401  socket.getaddrinfo imports it lazily
import time

from cxpulse.agent.netinfo import default_gateway
from cxpulse.agent.probes.base import Target
from cxpulse.agent.probes.rtt import RttProbe


def measure(
    methods: list[str] | None,
    hosts: list[str],
    timeout_s: float = 1.0,
    count: int = 1,
    port: int = 443,
    resolve_ttl_s: float = 60.0,
) -> dict:
    """Measure each host ``count`` times in turn; report the chosen method and every sample."""

    async def run() -> dict:
        probe = RttProbe(methods, resolve_ttl_s=resolve_ttl_s)
        await probe.start()
        method, samples = probe.method, []
        try:
            for _ in range(count):
                for host in hosts:
                    started = time.monotonic()
                    m = await probe.measure(Target(host, host, port), timeout_s)
                    samples.append({**dataclasses.asdict(m), "elapsed_s": time.monotonic() - started})
        finally:
            await probe.close()
        return {"method": method, "samples": samples}

    return asyncio.run(run())


def measure_concurrently(methods: list[str] | None, hosts: list[str], timeout_s: float = 1.0) -> dict:
    """All hosts at once over the probe's one socket: replies must find their own request."""

    async def run() -> dict:
        probe = RttProbe(methods)
        await probe.start()
        try:
            started = time.monotonic()
            found = await asyncio.gather(*(probe.measure(Target(h, h), timeout_s) for h in hosts))
            elapsed = time.monotonic() - started
        finally:
            await probe.close()
        return {"elapsed_s": elapsed, "samples": [dataclasses.asdict(m) for m in found]}

    return asyncio.run(run())


def gateway() -> dict | None:
    gw = default_gateway()
    return dataclasses.asdict(gw) if gw else None


def measure_across_rename(host: str, port: int, hosts_file: str, new_hosts: str, resolve_ttl_s: float) -> list[str]:
    """Measure ``host``, rewrite the namespace's hosts file, measure again: which address was used?

    ``hosts_file`` is the lab's own ``/etc/netns/NS/hosts``, never the machine's ``/etc/hosts``.
    """

    async def run() -> list[str]:
        probe = RttProbe(["tcp_connect"], resolve_ttl_s=resolve_ttl_s)
        await probe.start()
        try:
            first = await probe.measure(Target(host, host, port), 1.0)
            with open(hosts_file, "w") as f:
                f.write(new_hosts)
            second = await probe.measure(Target(host, host, port), 1.0)
        finally:
            await probe.close()
        return [first.address, second.address]

    return asyncio.run(run())


def close_while_waiting(method: str, host: str, timeout_s: float) -> dict:
    """Close the probe while a measurement waits for a reply that will not come."""

    async def run() -> dict:
        probe = RttProbe([method])
        await probe.start()
        started = time.monotonic()
        pending = asyncio.ensure_future(probe.measure(Target(host, host), timeout_s))
        await asyncio.sleep(0.1)
        await probe.close()
        m = await pending
        return {**dataclasses.asdict(m), "elapsed_s": time.monotonic() - started}

    return asyncio.run(run())


def measure_series(address: str, port: int, count: int, timeout_s: float) -> list[dict]:
    """``count`` samples of one target with the default chain, one after another."""
    import asyncio

    from cxpulse.agent.probes.base import Target
    from cxpulse.agent.probes.rtt import RttProbe

    async def run() -> list[dict]:
        probe = RttProbe()
        await probe.start()
        try:
            out = []
            for _ in range(count):
                m = await probe.measure(Target("app", address, port), timeout_s)
                out.append({"method": m.method, "rtt_us": m.rtt_us})
            return out
        finally:
            await probe.close()

    return asyncio.run(run())
