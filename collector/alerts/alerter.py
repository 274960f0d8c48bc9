"""The alert loop: every minute, read the fleet, feed the rules, hand new alerts to the webhooks.
It reads what the helpdesk page reads (``LookupService.fleet``), so an alert never says what the page does not.
Design notes: docs/collector-internals.md, "collector/alerts/alerter.py".
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import time
import urllib.parse

from ..logsafe import safe
from ..lookup.ticket import headline, incident_scope, ticket_summary
from .config import AlertConfig
from .rules import MINUTE_US, Alert, IncidentWatch, PoorEpisodes
from .webhook import DeliveryLog, WebhookSender

__all__ = ["Alerter"]

log = logging.getLogger("cxpulse.collector.alerts")


def _hhmm(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, tz=dt.UTC).strftime("%H:%M UTC")


class Alerter:
    """Rules + senders for one collector. ``service`` is the lookup's ``LookupService``."""

    def __init__(self, config: AlertConfig, service, *, sleep=asyncio.sleep, rng=None):
        self.config = config
        self.service = service
        self.episodes = PoorEpisodes(
            config.poor_minutes, config.resolve_minutes, config.resolve_score, config.stale_minutes
        )
        self.incidents = IncidentWatch()
        # Webhooks scoped to sites: one incident watch per site set, fed from that scope's fleet.
        self.scopes: dict[frozenset[str], IncidentWatch] = {
            frozenset(w.sites): IncidentWatch() for w in config.webhooks if w.sites
        }
        self._scoped: list[tuple[frozenset[str], Alert]] = []  # decided for scoped webhooks, waiting for emit
        self.deliveries = DeliveryLog()
        self.senders = {
            w.name: WebhookSender(
                w,
                queue_max=config.queue_max,
                backoff_base_s=config.backoff_base_s,
                backoff_max_s=config.backoff_max_s,
                give_up_after_s=config.give_up_after_s,
                delivery_log=self.deliveries,
                rng=rng,
                sleep=sleep,
            )
            for w in config.webhooks
        }
        self.counts: collections.Counter = collections.Counter()  # (kind, state) -> alerts emitted
        self._task: asyncio.Task | None = None
        self._last_test = 0.0
        self._warned_no_score = False
        # agent id -> first poor minute of its open episode (the alert id is built from it)
        self._open_since: dict[str, int] = {}

    @property
    def public_url(self) -> str:
        return (self.config.public_url or getattr(self.service, "public_url", "") or "").rstrip("/")

    async def start(self, loop: bool = True) -> None:
        for s in self.senders.values():
            if s.cfg.secret() is None:
                log.warning("webhook %s has no secret: its requests are not signed", s.cfg.name)
            await s.start()
        if loop:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="cxpulse-alerts")

    async def stop(self, flush_timeout: float = 5.0) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await asyncio.gather(*(s.stop(flush_timeout) for s in self.senders.values()))

    async def _loop(self) -> None:
        while True:
            try:
                await self.evaluate_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # never crash after start-up
                log.exception("alert evaluation failed; trying again next interval")
            await asyncio.sleep(self.config.eval_interval_s)

    async def evaluate_once(self) -> list[Alert]:
        """One read of the fleet; the alerts it produced (already queued to the webhooks)."""
        snap = await asyncio.to_thread(self.service.fleet, self.config.lookback_s)
        alerts = await asyncio.to_thread(self.decide, snap)
        for a in alerts:
            self.emit(a)
        for sites in self.scopes:
            scoped = await asyncio.to_thread(self.service.fleet, self.config.lookback_s, sites)
            await asyncio.to_thread(self.decide_incidents_for, sites, scoped)
        pending, self._scoped = self._scoped, []
        for sites, a in pending:
            self.emit(a, sites)
        return alerts

    def emit(self, alert: Alert, sites: frozenset[str] | None = None) -> None:
        """To every webhook without sites (``sites`` None), or to those scoped to exactly ``sites``."""
        self.counts[(alert.kind, alert.state)] += 1
        log.info(
            "alert %s %s%s: %s",
            alert.kind,
            alert.state,
            f" (sites {safe(', '.join(sorted(sites)))})" if sites else "",
            safe(alert.title),
        )
        for s in self.senders.values():
            if frozenset(s.cfg.sites) == (sites or frozenset()) or alert.kind == "test":
                s.enqueue(alert)

    def decide_incidents_for(self, sites: frozenset[str], snap: dict) -> None:
        """Incident alerts for the webhooks scoped to ``sites``, from that scope's own fleet
        (``LookupService.fleet(.., sites)``): its incidents count and name in-scope desks only."""
        now = snap["generated_us"]
        incs = snap["incidents"]["open"] + snap["incidents"]["recent"]
        for state, inc in self.scopes[sites].observe(incs):
            self._scoped.append((sites, self._incident_alert(state, inc, now)))

    def _agent_scopes(self, row: dict) -> list[frozenset[str]]:
        site = (row or {}).get("site") or ""
        return [sites for sites in self.scopes if site in sites]

    # - deciding -

    def decide(self, snap: dict) -> list[Alert]:
        now = snap["generated_us"]
        out: list[Alert] = []
        rows = {r["agent_id"]: r for r in snap["worst"]}
        minutes = snap.get("_minutes", {})
        if rows and not any(minutes.values()) and not self._warned_no_score:
            log.warning("the lookup view carries no per-minute scores yet: agent alerts wait for the scorer")
            self._warned_no_score = True
        for agent_id in sorted(minutes):
            for m in minutes[agent_id]:
                if m["t_us"] + MINUTE_US > now:
                    continue  # the minute is not over: its score can still change
                state = self.episodes.observe(agent_id, m["t_us"], m["score"])
                if state:
                    row = rows.get(agent_id, {})
                    out.append(self._agent_alert(agent_id, state, m["t_us"], row, now))
                    for sites in self._agent_scopes(row):  # the ticket again, read through that scope
                        self._scoped.append(
                            (
                                sites,
                                self._agent_alert(agent_id, state, m["t_us"], row, now, sites, since=out[-1].since_us),
                            )
                        )
        for agent_id, since in self.episodes.expire(now):
            since = self._open_since.pop(agent_id, since)
            a = rows.get(agent_id, {"agent_id": agent_id})
            out.append(
                Alert(
                    id=f"cxpulse-agent-{agent_id}-{since // 1_000_000}",
                    kind="agent_poor",
                    state="resolved",
                    at_us=now,
                    since_us=since,
                    severity="minor",
                    agent=_who(a),
                    title=f"{_name(a)}: no data for {self.config.stale_minutes} min, alert closed",
                    summary="The agent stopped reporting while its experience was poor; look it up if the user calls.",
                    details={"link": self._agent_link(agent_id, since, now)},
                )
            )
            self._scoped += [(sites, out[-1]) for sites in self._agent_scopes(a)]  # names only the desk itself
        incs = snap["incidents"]["open"] + snap["incidents"]["recent"]
        for state, inc in self.incidents.observe(incs):
            out.append(self._incident_alert(state, inc, now))
        return out

    def _agent_alert(
        self,
        agent_id: str,
        state: str,
        minute_us: int,
        row: dict,
        now: int,
        sites: frozenset[str] | None = None,
        since: int | None = None,
    ) -> Alert:
        """The alert of an episode change; ``sites`` and ``since``: the same alert again for a scoped
        webhook, its ticket read through that scope (an incident line must count in-scope desks only)."""
        if since is None:
            since = self.episodes.open_since(agent_id) if state == "open" else None
            if state == "resolved":
                # The episode's start is gone from the rules once resolved; the id needs it: keep it.
                since = self._open_since.pop(agent_id, minute_us)
            else:
                assert since is not None, "an episode that just opened has a start"
                self._open_since[agent_id] = since
        eid = f"cxpulse-agent-{agent_id}-{since // 1_000_000}"
        link = self._agent_link(agent_id, since, now)
        details: dict = {"link": link}
        who = _who(row) if row else {"agent_id": agent_id}
        if state == "open":
            try:
                v = (
                    self.service.view(agent_id, since - 5 * MINUTE_US, now)
                    if sites is None
                    else self.service.view(agent_id, since - 5 * MINUTE_US, now, sites)
                )
                h = headline(v["agent"])
                details.update(
                    score=h["score"],
                    label=h["label"],
                    limiting=h["limiting"],
                    fault_domain=h["domain"],
                    sentence=h["sentence"],
                    evidence=h["evidence"][:6],
                    next_step=h["next_step"],
                    ticket=ticket_summary(v["agent"], v["window"]),
                )
                who = _who(v["agent"])
            except Exception as exc:
                log.warning("alert for %s without the ticket text: %s", safe(agent_id), safe(exc))
            minutes = (minute_us + MINUTE_US - since) // MINUTE_US
            what = (
                f"{details.get('limiting')}: {details.get('sentence')}"
                if details.get("sentence")
                else "poor experience"
            )
            title = f"{_name(who)}: poor for {minutes} min since {_hhmm(since)} ({what})"
            summary = details.get("sentence") or ""
            sev = "critical" if (details.get("score") or 100) < 10 else "major"
        else:
            title = f"{_name(who)}: recovered at {_hhmm(minute_us + MINUTE_US)} (poor since {_hhmm(since)})"
            summary = f"Back at or above {self.config.resolve_score:.0f} for {self.config.resolve_minutes} min."
            sev = "minor"
        return Alert(
            id=eid,
            kind="agent_poor",
            state=state,
            at_us=minute_us + MINUTE_US,
            since_us=since,
            title=title,
            summary=summary,
            severity=sev,
            agent=who,
            details=details,
        )

    def _incident_alert(self, state: str, inc: dict, now: int) -> Alert:
        scope = incident_scope(inc)
        start = inc.get("start_us") or now
        agents = inc.get("agents")
        n = len(agents) if isinstance(agents, list) else agents if isinstance(agents, int) else None
        who = f", {n} agents" if n else ""
        summary = inc.get("summary") or inc.get("sentence") or inc.get("reason") or ""
        if state == "open":
            title = f"{scope}-wide incident since {_hhmm(start)}{who}: not the users' own networks"
        else:
            end = inc.get("end_us") or now
            why = " (no longer reported)" if inc.get("_reason") else ""
            title = f"{scope}-wide incident over at {_hhmm(end)}{why} (since {_hhmm(start)})"
        return Alert(
            id=f"cxpulse-incident-{inc.get('id')}",
            kind="incident",
            state=state,
            at_us=inc.get("end_us") or now,
            since_us=start,
            title=title,
            summary=summary,
            severity="critical" if (n or 0) >= 10 else "major",
            incident={k: v for k, v in inc.items() if not k.startswith("_")},
            details={"link": f"{self.public_url}/#/fleet", "scope": scope},
        )

    def _agent_link(self, agent_id: str, since: int, until: int) -> str:
        q = urllib.parse.urlencode({"since": since // 1_000_000 - 300, "until": until // 1_000_000})
        return f"{self.public_url}/#/agent/{urllib.parse.quote(agent_id, safe='')}?{q}"

    # - the API's view of it -

    def test_send(self, target: str | None = None) -> list[str]:
        """Queue a test alert (to one webhook or all); rate limited so the API cannot flood a ticket queue."""
        if target is not None and target not in self.senders:
            raise KeyError(target)
        now = time.monotonic()
        if now - self._last_test < self.config.test_send_min_interval_s:
            raise RuntimeError(f"one test send per {self.config.test_send_min_interval_s:.0f} s; try again shortly")
        self._last_test = now
        t = time.time_ns() // 1000
        alert = Alert(
            id=f"cxpulse-test-{t // 1_000_000}",
            kind="test",
            state="open",
            at_us=t,
            since_us=t,
            title="cxpulse test alert: the webhook works",
            severity="minor",
            summary="Sent on request (test-send); nothing is wrong.",
            details={"link": f"{self.public_url}/"},
        )
        names = [target] if target else list(self.senders)
        for n in names:
            self.senders[n].enqueue(alert)
        self.counts[("test", "open")] += 1
        return names

    def describe(self) -> dict:
        return {
            "targets": [
                {
                    "name": s.cfg.name,
                    "format": s.cfg.format,
                    "url": s.cfg.redacted_url(),
                    "alerts": s.cfg.alerts,
                    "sites": list(s.cfg.sites),
                    "queued": s.depth,
                    "counts": dict(s.counts),
                }
                for s in self.senders.values()
            ],
            "open_agent_alerts": sorted(self._open_since),
            "open_incidents": self.incidents.open_ids,
            "deliveries": self.deliveries.entries()[-200:],
        }


def _who(a: dict) -> dict:
    return {k: a.get(k) for k in ("agent_id", "user", "host", "site")}


def _name(a: dict) -> str:
    user, host = a.get("user"), a.get("host")
    base = f"{user} on {host}" if user and host else (user or host or a.get("agent_id") or "?")
    return base + (f" ({a['site']})" if a.get("site") else "")
