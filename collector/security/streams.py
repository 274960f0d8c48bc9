"""Binds every agent stream to an enrolled agent, and cuts streams of revoked agents.
Authenticates before any message is read, bounds what one credential may hold, polls for revocations.
Design notes: docs/security.md, "collector/security/streams.py".
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator

import grpc

from cxpulse.v1 import telemetry_pb2 as pb
from cxpulse.v1 import telemetry_pb2_grpc as pb_grpc

from ..ingest.limits import Tarpit, TokenBucket, peer_address
from ..logsafe import LogBudget, safe
from .registry import AgentIdentity, EnrollError, Registry

log = logging.getLogger("cxpulse.collector.security")

AUTH_KEY = "authorization"
SCHEME = "Bearer "
REVOKE_POLL_S = 1.0
# Windows of revoked_since overlap by this much: collectors sharing a database have clocks that differ.
REVOKE_OVERLAP_US = 30_000_000
# Streams of one credential that may wait for their Hello at once (an agent opens one at a time).
PRE_HELLO_PER_AGENT = 4
# Enroll: per address (a site behind one NAT address enrolling a wave of desks) and in total.
ENROLL_PER_ADDRESS = (1.0, 20)  # (per second, burst)
ENROLL_TOTAL = (20.0, 200)
ENROLL_ADDRESSES_TRACKED = 10_000
ENROLL_RETRY_S = 10.0


def credential_from(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == AUTH_KEY and isinstance(value, str) and value.startswith(SCHEME):
            return value[len(SCHEME) :].strip()
    return ""


class AuthenticatedTelemetry(pb_grpc.TelemetryServiceServicer):
    def __init__(self, inner: pb_grpc.TelemetryServiceServicer, registry: Registry):
        self.inner = inner
        self.registry = registry
        # agent id -> handler tasks of its open streams (an agent normally has one).
        self._open: dict[str, set[asyncio.Task]] = {}
        self._cut: set[asyncio.Task] = set()
        self.revocations_applied = 0
        self._pre_hello: dict[str, int] = {}  # agent id -> its streams still waiting for a Hello
        self._enroll_total = TokenBucket(*ENROLL_TOTAL)
        self._enroll_by_address: OrderedDict[str, TokenBucket] = OrderedDict()
        self._enroll_log = LogBudget()
        self.enrolls_throttled = 0
        self._background: set[asyncio.Task] = set()
        self.tarpit = Tarpit()
        self._stream_log = LogBudget()
        self._hosts_noted: dict[str, str] = {}  # agent id -> the last differing host logged
        self._sites_noted: dict[str, str] = {}  # agent id -> the last other site claimed and logged

    def _enroll_allowed(self, peer: str) -> bool:
        """Take a token of the caller's address and of the whole collector; False: refuse, nothing done."""
        addr = peer_address(peer)
        bucket = self._enroll_by_address.get(addr)
        if bucket is None:
            bucket = self._enroll_by_address[addr] = TokenBucket(*ENROLL_PER_ADDRESS)
            while len(self._enroll_by_address) > ENROLL_ADDRESSES_TRACKED:
                self._enroll_by_address.popitem(last=False)
        else:
            self._enroll_by_address.move_to_end(addr)
        return bucket.take() and self._enroll_total.take()

    def _log_refused(self, msg: str, *args) -> None:
        if self._enroll_log.allow():
            if self._enroll_log.suppressed:
                log.warning("(%d more refused enrollments were not logged)", self._enroll_log.suppressed)
            log.warning(msg, *args)

    async def Enroll(self, request: pb.EnrollRequest, context: grpc.aio.ServicerContext) -> pb.EnrollResponse:
        peer = context.peer()
        if not self._enroll_allowed(peer):
            self.enrolls_throttled += 1
            self._log_refused(
                "enrollment from %s throttled (more than %g a second from one address or %g in all)",
                safe(peer),
                ENROLL_PER_ADDRESS[0],
                ENROLL_TOTAL[0],
            )
            await self.tarpit.hold(peer)
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "too many enrollments; retry later",
                trailing_metadata=(("retry-after-ms", str(random.randint(5_000, 15_000))),),
            )
        if not (request.agent_id.isprintable() and request.host.isprintable()):
            # No agent of ours names itself with a newline or an escape sequence; such an id would
            # follow the desk into every log line, ticket and webhook.
            self._log_refused(
                "enrollment refused from %s: agent id %s or host %s is not printable text",
                safe(peer),
                safe(request.agent_id, 128),
                safe(request.host, 128),
            )
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "enrollment refused: agent id and host must be printable text (no control characters)",
            )
        try:
            cred, ident = await asyncio.to_thread(
                self.registry.enroll, request.token, request.agent_id, request.host[:256]
            )
        except EnrollError as exc:
            self._log_refused(
                "enrollment refused for agent %s from %s: %s", safe(request.agent_id, 128), safe(peer), exc.reason
            )
            code = grpc.StatusCode.INVALID_ARGUMENT if "missing" in exc.reason else grpc.StatusCode.PERMISSION_DENIED
            await context.abort(code, f"enrollment refused: {exc.reason}")
        log.warning(
            "agent %s (%s) enrolled from %s with token %s (site %s)",
            safe(ident.agent_id),
            safe(ident.host),
            safe(peer),
            ident.token_id,
            safe(ident.site),
        )
        await asyncio.to_thread(
            self.registry.record_audit,
            actor=f"agent:{ident.agent_id}",
            action="enroll",
            subject=ident.agent_id,
            remote=peer,
            detail=f"token {ident.token_id}",
        )
        return pb.EnrollResponse(credential=cred, agent_id=ident.agent_id, site=ident.site)

    async def Stream(self, request_iterator, context: grpc.aio.ServicerContext) -> None:
        cred = credential_from(context)
        try:
            ident = await asyncio.to_thread(self.registry.authenticate_agent, cred) if cred else None
        except Exception as exc:  # the database is away: a retryable status, not UNKNOWN
            log.error("cannot check an agent credential: %s", safe(exc))
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                "collector cannot check credentials now; retry later",
                trailing_metadata=(("retry-after-ms", str(random.randint(2_000, 8_000))),),
            )
        if ident is None:
            if self._stream_log.allow():
                if self._stream_log.suppressed:
                    log.warning("(%d more refused streams were not logged)", self._stream_log.suppressed)
                log.warning(
                    "stream from %s refused: %s",
                    safe(context.peer()),
                    "credential unknown or revoked" if cred else "no credential",
                )
            await self.tarpit.hold(context.peer())
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "agent credential unknown or revoked" if cred else "no agent credential: enroll first",
            )
        if self._pre_hello.get(ident.agent_id, 0) >= PRE_HELLO_PER_AGENT:
            log.warning(
                "agent %s from %s: stream refused, %d of its streams are waiting for a Hello already",
                safe(ident.agent_id),
                safe(context.peer()),
                PRE_HELLO_PER_AGENT,
            )
            await self.tarpit.hold(context.peer())
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"too many streams of agent {ident.agent_id} without a Hello; retry later",
                trailing_metadata=(("retry-after-ms", "10000"),),
            )
        # The ingest handler runs in this very task (a status set from another task reaches the
        # client as INTERNAL); a revocation cancels this task and the status is sent from here.
        task = asyncio.current_task()
        assert task is not None  # a gRPC handler always runs in a task
        self._open.setdefault(ident.agent_id, set()).add(task)
        waiting = _PreHello(self._pre_hello, ident.agent_id)
        try:
            await self.inner.Stream(self._checked(request_iterator, ident, context, waiting), context)
        except asyncio.CancelledError:
            if task not in self._cut:  # the RPC itself went away
                raise
            self._cut.discard(task)
            task.uncancel()
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "agent credential revoked")
        finally:
            waiting.done()
            self._cut.discard(task)
            tasks = self._open.get(ident.agent_id)
            if tasks is not None:
                tasks.discard(task)
                if not tasks:
                    del self._open[ident.agent_id]

    async def _checked(
        self, request_iterator, ident: AgentIdentity, context: grpc.aio.ServicerContext, waiting: _PreHello
    ) -> AsyncIterator:
        """The stream's messages, the Hello checked against the credential before the ingest sees it.

        Read by the ingest, so that the wait for the first message counts against the ingest's
        per-address limit and Hello deadline."""
        requests = aiter(request_iterator)
        try:
            first = await anext(requests)
        except StopAsyncIteration:
            return
        finally:
            waiting.done()
        if first.WhichOneof("kind") == "hello":
            hello = first.hello
            claimed = hello.agent_id
            if claimed and claimed != ident.agent_id:  # (an empty one is the ingest's to refuse as malformed)
                log.warning(
                    "agent %s from %s sent a Hello as %s: refused",
                    safe(ident.agent_id),
                    safe(context.peer()),
                    safe(claimed, 128),
                )
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"this credential belongs to agent {ident.agent_id}, not {claimed[:128]}",
                )
            self._note_identity(hello, ident, context.peer())
        yield first
        async for item in requests:
            yield item

    def _note_identity(self, hello: pb.Hello, ident: AgentIdentity, peer: str) -> None:
        """The site is the credential's; a host other than the enrolled one is logged and audited once."""
        if ident.site and hello.site != ident.site:
            if self._sites_noted.get(ident.agent_id) != hello.site:
                if len(self._sites_noted) > 100_000:
                    self._sites_noted.clear()
                self._sites_noted[ident.agent_id] = hello.site
                log.warning(
                    "agent %s claims site %s in its Hello; its credential's site %s is kept",
                    safe(ident.agent_id),
                    safe(hello.site),
                    safe(ident.site),
                )
            hello.site = ident.site
        if (
            ident.host
            and hello.host
            and hello.host != ident.host
            and self._hosts_noted.get(ident.agent_id) != hello.host
        ):
            if len(self._hosts_noted) > 100_000:
                self._hosts_noted.clear()
            self._hosts_noted[ident.agent_id] = hello.host
            log.warning(
                "agent %s reports host %s; it enrolled as host %s",
                safe(ident.agent_id),
                safe(hello.host),
                safe(ident.host),
            )
            self._audit_later(
                actor=f"agent:{ident.agent_id}",
                action="agent.host_change",
                subject=ident.agent_id,
                remote=peer,
                detail=f"host {hello.host[:256]!r}, enrolled as {ident.host[:256]!r}",
            )

    def _audit_later(self, **entry) -> None:
        """Record an audit entry off the event loop; a failure is logged, the stream goes on."""

        async def record() -> None:
            try:
                await asyncio.to_thread(self.registry.record_audit, **entry)
            except Exception as exc:
                log.warning("audit entry %s not recorded: %s", entry.get("action"), safe(exc))

        task = asyncio.ensure_future(record())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

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
            log.warning("agent %s revoked: closed %d open stream(s)", safe(agent_id), n)
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
                log.warning("revocation poll failed: %s", safe(exc))
                continue
            since = now - REVOKE_OVERLAP_US
            known = getattr(self.inner, "known_agents", None)
            for agent_id in revoked:
                if known is not None:
                    known.discard(agent_id)  # the voice reflector stops answering it
                if agent_id in self._open:
                    self.cut(agent_id)


class _PreHello:
    """One stream counted in ``counts[agent_id]`` until its first message (or its end), exactly once."""

    def __init__(self, counts: dict[str, int], agent_id: str):
        self.counts, self.agent_id = counts, agent_id
        counts[agent_id] = counts.get(agent_id, 0) + 1
        self.counted = True

    def done(self) -> None:
        if self.counted:
            self.counted = False
            n = self.counts.get(self.agent_id, 0) - 1
            if n > 0:
                self.counts[self.agent_id] = n
            else:
                self.counts.pop(self.agent_id, None)
