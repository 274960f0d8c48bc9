"""Delivering alerts: one bounded queue and one worker per receiver, signed, retried, logged.
In order per receiver, jittered exponential backoff, the oldest dropped when full, HMAC-signed per attempt.
Design notes: docs/collector-internals.md, "collector/alerts/webhook.py".
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import hmac
import json
import logging
import random
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ..logsafe import safe
from .config import WebhookConfig
from .rules import Alert
from .templates import render

if TYPE_CHECKING:
    import httpx  # imported when the first webhook starts

__all__ = ["DeliveryLog", "WebhookSender", "sign", "verify_signature"]

log = logging.getLogger("cxpulse.collector.alerts")

RETRY_STATUSES = frozenset({408, 425, 429}) | frozenset(range(500, 600))
USER_AGENT = "cxpulse-collector/0.1 (+webhook)"


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(
    secret: bytes, body: bytes, timestamp: str, signature: str, *, tolerance_s: int = 300, now: float | None = None
) -> bool:
    """What a receiver runs: the signature matches and the timestamp is within ``tolerance_s``."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature or "")


class DeliveryLog:
    """The last ``size`` delivery attempts, for the API and a person asking "did it go out?"."""

    def __init__(self, size: int = 500):
        self._d: collections.deque = collections.deque(maxlen=size)

    def add(self, **entry) -> None:
        entry.setdefault("ts_us", time.time_ns() // 1000)
        self._d.append(entry)

    def entries(self) -> list[dict]:
        return list(self._d)


class WebhookSender:
    """One receiver's queue and worker. ``enqueue`` never blocks; ``run`` delivers in order."""

    def __init__(
        self,
        cfg: WebhookConfig,
        *,
        queue_max: int,
        backoff_base_s: float,
        backoff_max_s: float,
        give_up_after_s: float,
        delivery_log: DeliveryLog,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ):
        self.cfg = cfg
        self.queue_max = queue_max
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.give_up_after_s = give_up_after_s
        self.log = delivery_log
        self.rng = rng or random.Random()
        self._sleep = sleep
        self._q: collections.deque[Alert] = collections.deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._secret = cfg.secret()
        self.counts: collections.Counter[str] = collections.Counter()  # delivered, retried, failed, dropped
        self._task: asyncio.Task | None = None
        self._client: httpx.AsyncClient | None = None
        self._inflight: Alert | None = None

    @property
    def depth(self) -> int:
        return len(self._q)

    def enqueue(self, alert: Alert) -> None:
        if alert.kind != "test" and self._kind(alert) not in self.cfg.alerts:
            return
        if len(self._q) >= self.queue_max:
            # The oldest *waiting* one goes; the head may be mid-delivery and stays.
            if self._inflight is self._q[0] and len(self._q) > 1:
                dropped = self._q[1]
                del self._q[1]
            else:
                dropped = self._q.popleft()
            self.counts["dropped"] += 1
            self.log.add(
                webhook=self.cfg.name,
                alert_id=dropped.id,
                state=dropped.state,
                attempt=0,
                status=None,
                error="queue full",
                outcome="dropped",
            )
            log.error(
                "webhook %s: queue full (%d), dropped alert %s", self.cfg.name, self.queue_max, safe(dropped.key())
            )
        self._q.append(alert)
        self._idle.clear()
        self._wake.set()

    @staticmethod
    def _kind(alert: Alert) -> str:
        return "agent" if alert.kind == "agent_poor" else "incident"

    async def start(self) -> None:
        import httpx

        # Receivers are configured by IT; proxies from the environment would route them elsewhere.
        self._client = httpx.AsyncClient(timeout=self.cfg.timeout_s, trust_env=False, follow_redirects=False)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"cxpulse-webhook-{self.cfg.name}")

    async def stop(self, flush_timeout: float = 5.0) -> None:
        """Deliver what is queued for up to ``flush_timeout`` s, then give up the rest (logged)."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._idle.wait(), flush_timeout)
        except TimeoutError:
            log.warning("webhook %s: %d alert(s) not delivered at shutdown", self.cfg.name, len(self._q))
            for a in self._q:
                self.log.add(
                    webhook=self.cfg.name,
                    alert_id=a.id,
                    state=a.state,
                    attempt=0,
                    status=None,
                    error="collector stopped",
                    outcome="dropped",
                )
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        if self._client is not None:
            await self._client.aclose()
        self._task = None

    async def flush(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def _run(self) -> None:
        while True:
            if not self._q:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            alert = self._inflight = self._q[0]
            try:
                await self._deliver(alert)
            except asyncio.CancelledError:
                raise
            except Exception:  # never crash after start-up: log, drop this one, go on
                log.exception("webhook %s: delivering %s failed unexpectedly", self.cfg.name, safe(alert.key()))
            finally:
                self._inflight = None
            if self._q and self._q[0] is alert:
                self._q.popleft()

    def _url(self, alert: Alert) -> str:
        if alert.state == "resolved" and self.cfg.resolve_url:
            return self.cfg.resolve_url.replace("{alias}", urllib.parse.quote(alert.id, safe=""))
        return self.cfg.url

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Equal jitter: half the exponential step plus a random half, so retries spread but never bunch at 0."""
        step = min(self.backoff_max_s, self.backoff_base_s * (2 ** (attempt - 1)))
        delay = step / 2 + self.rng.uniform(0, step / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max_s))
        return delay

    async def _deliver(self, alert: Alert) -> None:
        body = json.dumps(render(self.cfg.format, alert), separators=(",", ":"), sort_keys=True).encode()
        url = self._url(alert)
        first = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            ts = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "X-Cxpulse-Delivery": alert.key(),
                "X-Cxpulse-Event": f"{alert.kind}.{alert.state}",
                "X-Cxpulse-Timestamp": str(ts),
                **self.cfg.headers,
            }
            if self._secret:
                headers["X-Cxpulse-Signature"] = sign(self._secret, ts, body)
            status, error, retry_after = None, None, None
            t0 = time.perf_counter()
            try:
                assert self._client is not None, "delivered only between start() and stop()"
                resp = await self._client.post(url, content=body, headers=headers)
                status = resp.status_code
                retry_after = _retry_after(resp.headers.get("retry-after"))
            except Exception as exc:  # transport errors of every kind: retry
                error = f"{type(exc).__name__}: {exc}"[:300]
            ms = round((time.perf_counter() - t0) * 1000, 1)
            if status is not None and 200 <= status < 300:
                self.counts["delivered"] += 1
                self.log.add(
                    webhook=self.cfg.name,
                    alert_id=alert.id,
                    state=alert.state,
                    attempt=attempt,
                    status=status,
                    error=None,
                    outcome="delivered",
                    ms=ms,
                )
                return
            retry = status is None or status in RETRY_STATUSES
            if not retry:
                self.counts["failed"] += 1
                self.log.add(
                    webhook=self.cfg.name,
                    alert_id=alert.id,
                    state=alert.state,
                    attempt=attempt,
                    status=status,
                    error="refused by the receiver (not retried)",
                    outcome="failed",
                    ms=ms,
                )
                log.error("webhook %s refused %s with HTTP %s", self.cfg.name, safe(alert.key()), status)
                return
            if time.monotonic() - first >= self.give_up_after_s:
                self.counts["failed"] += 1
                self.log.add(
                    webhook=self.cfg.name,
                    alert_id=alert.id,
                    state=alert.state,
                    attempt=attempt,
                    status=status,
                    error=error or f"HTTP {status}",
                    outcome="failed",
                    ms=ms,
                )
                log.error("webhook %s: gave up on %s after %d attempts", self.cfg.name, safe(alert.key()), attempt)
                return
            delay = self.backoff(attempt, retry_after)
            self.counts["retried"] += 1
            self.log.add(
                webhook=self.cfg.name,
                alert_id=alert.id,
                state=alert.state,
                attempt=attempt,
                status=status,
                error=error or f"HTTP {status}",
                outcome="retrying",
                ms=ms,
                retry_in_s=round(delay, 2),
            )
            log.warning(
                "webhook %s: %s failed (%s), retry %d in %.1f s",
                self.cfg.name,
                safe(alert.key()),
                error or f"HTTP {status}",
                attempt,
                delay,
            )
            await self._sleep(delay)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: the backoff applies
