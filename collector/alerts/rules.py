"""When to alert: pure state machines over per-minute scores and the incident list; no clock, store or I/O.
``PoorEpisodes`` opens after N poor minutes and resolves only after M good ones; ``IncidentWatch`` follows incidents.
Design notes: docs/collector-internals.md, "collector/alerts/rules.py".
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["POOR_BELOW", "Alert", "IncidentWatch", "PoorEpisodes"]

POOR_BELOW = 30.0
MINUTE_US = 60_000_000


@dataclass(frozen=True)
class Alert:
    """One message to IT: an episode or incident that opened or resolved (``state``)."""

    id: str
    kind: str  # agent_poor | incident | test
    state: str  # open | resolved
    at_us: int  # the minute (or time) the state was decided
    since_us: int  # when the trouble began
    title: str = ""
    summary: str = ""
    severity: str = "major"
    agent: dict | None = None
    incident: dict | None = None
    details: dict = field(default_factory=dict)

    def key(self) -> str:
        """Unique per message: receivers dedupe retries on it (X-Cxpulse-Delivery)."""
        return f"{self.id}:{self.state}"


@dataclass
class _AgentState:
    last_minute: int | None = None
    poor_run: int = 0
    poor_run_start: int | None = None
    good_run: int = 0
    open_since: int | None = None  # first poor minute of the open episode
    worst: float | None = None


class PoorEpisodes:
    """Per-agent debounce: ``observe`` one minute at a time (in time order), get 'open'/'resolved'/None."""

    def __init__(
        self, poor_minutes: int = 5, resolve_minutes: int = 10, resolve_score: float = 40.0, stale_minutes: int = 30
    ):
        self.poor_minutes = poor_minutes
        self.resolve_minutes = resolve_minutes
        self.resolve_score = resolve_score
        self.stale_minutes = stale_minutes
        self._s: dict[str, _AgentState] = {}

    def last_minute(self, agent_id: str) -> int | None:
        s = self._s.get(agent_id)
        return None if s is None else s.last_minute

    def open_since(self, agent_id: str) -> int | None:
        s = self._s.get(agent_id)
        return None if s is None else s.open_since

    def worst(self, agent_id: str) -> float | None:
        s = self._s.get(agent_id)
        return None if s is None else s.worst

    def observe(self, agent_id: str, minute_us: int, score: float | None) -> str | None:
        """Feed one closed minute; minutes already seen are ignored. None score: not measured."""
        s = self._s.setdefault(agent_id, _AgentState())
        if s.last_minute is not None and minute_us <= s.last_minute:
            return None
        if s.last_minute is not None and minute_us - s.last_minute > MINUTE_US:
            s.poor_run, s.poor_run_start, s.good_run = 0, None, 0  # a gap: runs start again
        s.last_minute = minute_us
        if score is None:
            s.poor_run, s.poor_run_start, s.good_run = 0, None, 0
            return None
        if score < POOR_BELOW:
            s.poor_run += 1
            s.poor_run_start = s.poor_run_start if s.poor_run > 1 else minute_us
            s.good_run = 0
            if s.open_since is not None:
                s.worst = min(s.worst if s.worst is not None else score, score)
            elif s.poor_run >= self.poor_minutes:
                s.open_since = s.poor_run_start
                s.worst = score
                return "open"
            return None
        s.poor_run, s.poor_run_start = 0, None
        if s.open_since is None:
            return None
        s.good_run = s.good_run + 1 if score >= self.resolve_score else 0
        if s.good_run >= self.resolve_minutes:
            s.open_since, s.good_run, s.worst = None, 0, None
            return "resolved"
        return None

    def expire(self, now_us: int) -> list[tuple[str, int]]:
        """Open episodes whose agent sent nothing for ``stale_minutes``: resolved as no data.

        Returns [(agent_id, open_since)] for each one closed.
        """
        out = []
        for agent_id, s in self._s.items():
            if (
                s.open_since is not None
                and s.last_minute is not None
                and now_us - s.last_minute >= self.stale_minutes * MINUTE_US
            ):
                out.append((agent_id, s.open_since))
                s.open_since, s.good_run, s.poor_run, s.poor_run_start, s.worst = None, 0, 0, None, None
        return out


class IncidentWatch:
    """Platform and site incidents: one 'open' when first seen open, one 'resolved' when it closes.

    An incident that leaves the fleet's window while open is resolved after ``missing_evals``
    evaluations without it (it ended and aged out between two reads). One seen only after it
    closed is reported open and resolved together, so the ticket system still gets its record.
    """

    def __init__(self, missing_evals: int = 3):
        self.missing_evals = missing_evals
        self._open: dict[str, dict] = {}
        self._missing: dict[str, int] = {}
        self._done: set[str] = set()

    @property
    def open_ids(self) -> list[str]:
        return sorted(self._open)

    def observe(self, incidents: list[dict]) -> list[tuple[str, dict]]:
        """Feed the current incident list; returns [("open"|"resolved", incident)] in that order."""
        out: list[tuple[str, dict]] = []
        seen = set()
        for inc in incidents:
            iid = str(inc.get("id"))
            seen.add(iid)
            if iid in self._done:
                continue
            closed = inc.get("end_us") is not None
            if iid not in self._open:
                out.append(("open", inc))
                if closed:
                    out.append(("resolved", inc))
                    self._done.add(iid)
                else:
                    self._open[iid] = inc
            elif closed:
                out.append(("resolved", inc))
                self._open.pop(iid)
                self._done.add(iid)
            else:
                self._open[iid] = inc
            self._missing.pop(iid, None)
        for iid in list(self._open):
            if iid in seen:
                continue
            self._missing[iid] = self._missing.get(iid, 0) + 1
            if self._missing[iid] >= self.missing_evals:
                out.append(("resolved", dict(self._open.pop(iid), _reason="no longer reported")))
                self._missing.pop(iid)
                self._done.add(iid)
        if len(self._done) > 10_000:  # bounded memory: old ids will not come back after this long
            self._done = set(sorted(self._done)[-5000:])
        return out
