"""Adaptive confirmation: when a 1 Hz probe breaches, ask the hop again at once, several times a second.
Bounded per run and per minute; follow-ups feed the detector only and are never stored as samples.
Design notes: docs/agent-probes.md, "agent/detector/confirm.py".
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["ConfirmConfig", "Confirmations"]


@dataclass(frozen=True)
class ConfirmConfig:
    first_gap_s: float = 0.05  # between the first and second follow-up: a short disruption's tail
    step_s: float = 0.1
    fast_count: int = 20
    slow_step_s: float = 0.2
    clean_to_stop: int = 3  # the debounce closes after 3 clean samples: stop when it can close
    max_per_run: int = 100
    max_per_minute: int = 200

    def __post_init__(self) -> None:
        if not (0 < self.first_gap_s <= 1 and 0.02 <= self.step_s <= self.slow_step_s <= 1):
            raise ValueError("follow-up gaps must be between 0.02 s and 1 s")
        if self.clean_to_stop < 1 or self.max_per_run < 1 or self.max_per_minute < self.max_per_run:
            raise ValueError("follow-up bounds must be positive, the minute's at least one run's")


@dataclass
class _Hop:
    sent: deque = field(default_factory=deque)  # send times within the last minute
    running: bool = False
    run_sent: int = 0
    clean_run: int = 0


class Confirmations:
    """Bookkeeping per hop, clock passed in (the runner's loop time): which runs are active, budgets."""

    def __init__(self, cfg: ConfirmConfig | None = None):
        self.cfg = cfg or ConfirmConfig()
        self._hops: dict[str, _Hop] = {}
        self.sent = 0
        self.runs = 0
        self.refused = 0  # runs not started because the minute's budget was spent

    def begin(self, target: str, now: float) -> bool:
        """Start a run for ``target`` unless one is active or the minute's budget is spent."""
        h = self._hops.setdefault(target, _Hop())
        if h.running:
            return False
        self._expire(h, now)
        if len(h.sent) >= self.cfg.max_per_minute:
            self.refused += 1
            return False
        h.running, h.run_sent, h.clean_run = True, 0, 0
        self.runs += 1
        return True

    def take(self, target: str, now: float) -> bool:
        """May one more follow-up be sent now? Counts it if so."""
        h = self._hops.get(target)
        if h is None or not h.running or h.run_sent >= self.cfg.max_per_run or h.clean_run >= self.cfg.clean_to_stop:
            return False
        self._expire(h, now)
        if len(h.sent) >= self.cfg.max_per_minute:
            return False
        h.sent.append(now)
        h.run_sent += 1
        self.sent += 1
        return True

    def result(self, target: str, clean: bool) -> None:
        """A follow-up came back (in arrival order): clean answers in a row end the run."""
        h = self._hops.get(target)
        if h is not None and h.running:
            h.clean_run = h.clean_run + 1 if clean else 0

    def gap_s(self, target: str) -> float:
        """Time to wait after the follow-up just sent."""
        h = self._hops.get(target)
        n = h.run_sent if h is not None else 0
        return self.cfg.first_gap_s if n <= 1 else self.cfg.step_s if n < self.cfg.fast_count else self.cfg.slow_step_s

    def settled(self, target: str) -> bool:
        h = self._hops.get(target)
        return h is None or h.clean_run >= self.cfg.clean_to_stop

    def end(self, target: str) -> None:
        h = self._hops.get(target)
        if h is not None:
            h.running = False

    def active(self, target: str) -> bool:
        h = self._hops.get(target)
        return h is not None and h.running

    def _expire(self, h: _Hop, now: float) -> None:
        while h.sent and h.sent[0] <= now - 60.0:
            h.sent.popleft()
