"""Binds every agent stream to an enrolled agent, and cuts streams of revoked agents.

``AuthenticatedTelemetry`` sits in front of the ingest service (which knows nothing of
credentials): it authenticates the credential in the request metadata before a single message is
read, so an unknown or revoked caller stores nothing, not even its Hello; it takes the agent id
from the credential and refuses a Hello that names another; and it keeps each stream's handler
task, so that a revocation can end it from outside with a clear status.

Enrollment is required with and without TLS: TLS proves the collector to the agent, the credential
proves the agent to the collector. ``--insecure`` only drops the first.

Revocation reaches open streams through ``Registry.revoked_since``, polled every
``REVOKE_POLL_S``: that works the same whether the revocation was made by this collector's CLI,
another collector's, or by hand in a shared PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator

import grpc

from cxpulse.v1 import telemetry_pb2 as pb
from cxpulse.v1 import telemetry_pb2_grpc as pb_grpc

from .registry import EnrollError, Registry

log = logging.getLogger("cxpulse.collector.security")

AUTH_KEY = "authorization"
SCHEME = "Bearer "
REVOKE_POLL_S = 1.0
# Windows of revoked_since overlap by this much: collectors sharing a database have clocks that differ.
REVOKE_OVERLAP_US = 30_000_000


def credential_from(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == AUTH_KEY and isinstance(value, str) and value.startswith(SCHEME):
            return value[len(SCHEME):].strip()
    return ""


class AuthenticatedTelemetry(pb_grpc.TelemetryServiceServicer):
    def __init__(self, inner: pb_grpc.TelemetryServiceServicer, registry: Registry):
        self.inner = inner
        self.registry = registry
        # agent id -> handler tasks of its open streams (an agent normally has one).
        self._open: dict[str, set[asyncio.Task]] = {}
        self._cut: set[asyncio.Task] = set()
        self.revocations_applied = 0

    async def Enroll(self, request: pb.EnrollRequest, context: grpc.aio.ServicerContext) -> pb.EnrollResponse:
        peer = context.peer()
        try:
            cred, ident = await asyncio.to_thread(self.registry.enroll, request.token, request.agent_id, request.host[:256])
        except EnrollError as exc:
            log.warning("enrollment refused for agent %r from %s: %s", request.agent_id[:128], peer, exc.reason)
            code = grpc.StatusCode.INVALID_ARGUMENT if "missing" in exc.reason else grpc.StatusCode.PERMISSION_DENIED
            await context.abort(code, f"enrollment refused: {exc.reason}")
        log.warning("agent %s (%s) enrolled from %s with token %s (site %r)", ident.agent_id, ident.host, peer,
                    ident.token_id, ident.site)
        await asyncio.to_thread(self.registry.record_audit, actor=f"agent:{ident.agent_id}", action="enroll",
                                subject=ident.agent_id, remote=peer, detail=f"token {ident.token_id}")
        return pb.EnrollResponse(credential=cred, agent_id=ident.agent_id, site=ident.site)

    async def Stream(self, request_iterator, context: grpc.aio.ServicerContext) -> None:
        cred = credential_from(context)
        try:
            ident = await asyncio.to_thread(self.registry.authenticate_agent, cred) if cred else None
        except Exception as exc:  # the database is away: a retryable status, not UNKNOWN
            log.error("cannot check an agent credential: %s", exc)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "collector cannot check credentials now; retry later",
                                trailing_metadata=(("retry-after-ms", str(random.randint(2_000, 8_000))),))
        if ident is None:
            log.warning("stream from %s refused: %s", context.peer(), "credential unknown or revoked" if cred
                        else "no credential")
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "agent credential unknown or revoked" if cred else "no agent credential: enroll first")
        requests = aiter(request_iterator)
        try:
            first = await anext(requests)
        except StopAsyncIteration:
            return
        if first.WhichOneof("kind") == "hello":
            claimed = first.hello.agent_id
            if claimed and claimed != ident.agent_id:  # (an empty one is the ingest's to refuse as malformed)
                log.warning("agent %s from %s sent a Hello as %r: refused", ident.agent_id, context.peer(), claimed[:128])
                await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                    f"this credential belongs to agent {ident.agent_id}, not {claimed[:128]}")
        # The ingest handler runs in this very task (a status set from another task reaches the
        # client as INTERNAL); a revocation cancels this task and the status is sent from here.
        task = asyncio.current_task()
        self._open.setdefault(ident.agent_id, set()).add(task)
        try:
            await self.inner.Stream(_chain(first, requests), context)
        except asyncio.CancelledError:
            if task not in self._cut:  # the RPC itself went away
                raise
            self._cut.discard(task)
            task.uncancel()
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "agent credential revoked")
        finally:
            self._cut.discard(task)
            tasks = self._open.get(ident.agent_id)
            if tasks is not None:
                tasks.discard(task)
                if not tasks:
                    del self._open[ident.agent_id]

    def cut(self, agent_id: str) -> int:
        """End the open streams of one agent (its credential was revoked); returns how many."""
        n = 0
        for task in list(self._open.get(agent_id, ())):
            if not task.done():
                self._cut.add(task)
                task.cancel()
                n += 1
        if n:
            self.revocations_applied += n
            log.warning("agent %s revoked: closed %d open stream(s)", agent_id, n)
        return n

    async def watch_revocations(self, poll_s: float = REVOKE_POLL_S) -> None:
        """Poll the registry and cut streams of agents revoked anywhere; never ends on a database error."""
        since = time.time_ns() // 1000 - REVOKE_OVERLAP_US
        while True:
            await asyncio.sleep(poll_s)
            now = time.time_ns() // 1000
            try:
                revoked = await asyncio.to_thread(self.registry.revoked_since, since)
            except Exception as exc:  # a database hiccup must not stop the loop
                log.warning("revocation poll failed: %s", exc)
                continue
            since = now - REVOKE_OVERLAP_US
            for agent_id in revoked:
                if agent_id in self._open:
                    self.cut(agent_id)


async def _chain(first, rest) -> AsyncIterator:
    yield first
    async for item in rest:
        yield item
