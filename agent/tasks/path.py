"""The path out, traced on a slow cadence and when the network changes; path changes; the hops to keep probing.
Writes path snapshots and path_change events; each OS traces in agent/path (never scapy in here).
Notes: docs/agent-tasks.md, "Notes per task module".
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import Any

from ..config import Running
from ..probes.base import Target
from .base import Output, Pace, Shared

log = logging.getLogger("cxpulse.agent")

CHECK_S = 10.0  # how often the watcher is asked whether to trace (its own cadence is trace_interval_s)


class PathTask:
    kind = "path"
    pace: Pace = "after"

    def __init__(self, shared: Shared):
        self.s = shared
        self.enabled = shared.cfg.trace_enabled
        self.wake = asyncio.Event()  # never set
        self._watcher: Any = None

    def interval_s(self) -> float:
        return CHECK_S

    async def start(self) -> None:
        from ..path import PathWatcher

        self._watcher = PathWatcher(interval_s=self.s.cfg.trace_interval_s)

    def reconfigured(self, old: Running, new: Running) -> None:
        pass

    async def close(self) -> None:
        pass

    async def collect(self, out: Output) -> None:
        from cxpulse.v1.payload import PathHop, PathSnapshot

        from ..path import classify_hops, trace

        watcher = self._watcher
        assert watcher is not None, "start() first"
        dest = await self._destination()
        gw = self.s.gateway.host if self.s.gateway else None
        if dest is None or not watcher.should_trace(
            asyncio.get_running_loop().time(), gw, self.s.gateway_iface or None
        ):
            return
        name, ip, port = dest
        result = await trace(ip, port=port)
        if result.error:
            log.info("path trace to %s failed: %s", ip, result.error)
            return
        self.s.stats.traces += 1
        hops = [
            PathHop(h.ttl, h.address, min((r for r in h.rtt_us if r is not None), default=None)) for h in result.hops
        ]
        out.path(PathSnapshot(name, ip, result.ts_us, result.method, result.reached, hops))
        change = watcher.observe(result)
        if change is not None:
            old = change.old_signature[change.first_ttl - 1] if len(change.old_signature) >= change.first_ttl else "-"
            new = change.new_signature[change.first_ttl - 1] if len(change.new_signature) >= change.first_ttl else "-"
            out.events(
                [
                    self.s.detector.path_change(
                        name, result.ts_us, f"path changed at hop {change.first_ttl}: {old} -> {new} ({watcher.reason})"
                    )
                ]
            )
        if self.s.cfg.hop_probing:
            self._set_hop_targets(classify_hops(result, gw), ip)

    async def _destination(self) -> tuple[str, str, int] | None:
        """One destination stands for the path out: the desk-to-ISP part is shared by every app."""
        cfg = self.s.cfg
        candidates = [(t.name, t.host, t.port) for t in cfg.targets]
        for a in cfg.apps:
            host = a.url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
            candidates.append((a.name, host, 443 if a.url.startswith("https://") else 80))
        for name, host, port in candidates:
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                try:
                    infos = await asyncio.get_running_loop().getaddrinfo(
                        host, port, family=socket.AF_INET, type=socket.SOCK_STREAM
                    )
                except OSError:
                    continue
                ip = ipaddress.ip_address(infos[0][4][0])
            if ip.version == 4:
                return name, str(ip), port
        return None

    def _set_hop_targets(self, roles: dict, dest_ip: str) -> None:
        """ISP and first public hop get continuous RTT, so loss can be placed beyond the home router."""
        gw = self.s.gateway.host if self.s.gateway else None
        chosen: dict[str, tuple[Target, int]] = {}
        seen = {gw, dest_ip}
        for role in ("isp", "public"):
            hop = roles.get(role)
            if hop is None or hop.address is None or hop.address in seen:
                continue
            seen.add(hop.address)
            chosen[role] = (Target(role, hop.address, 443), hop.ttl)
        current = self.s.hop_targets
        if chosen.keys() != current.keys() or any(chosen[k][0] != current[k][0] for k in chosen):
            log.info(
                "hops measured every probe: %s",
                ", ".join(f"{k}={v[0].host} (hop {v[1]})" for k, v in chosen.items()) or "none",
            )
        self.s.hop_targets = chosen
