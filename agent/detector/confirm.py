"""Adaptive confirmation: when a 1 Hz probe breaches, ask the hop again at once, several times a second.

Why: at 1 Hz the "3 of the last 5" debounce needs about 3 s of disruption, so the 1-2 s outages
and spikes that break a call went unseen, while probing every hop ten times a second all day would
cost CPU and look like a flood to the hop. Instead the agent probes at 1 Hz and, when a probe is
lost or late (still unanswered past the hop's spike threshold, so without waiting for the full
timeout), sends follow-up probes to that hop every ``step_s`` (``slow_step_s`` once a run has sent
``fast_count``: a long outage needs its end found, not its middle re-proved) until ``clean_to_stop``
answers in a row come back clean. The detector gets them in send order like any sample, so a 1 s outage is
several lost follow-ups (one event whose end is known to a tenth of a second) and a single lost
ping is followed by answered ones (no event).

What it costs is bounded twice: ``max_per_run`` follow-ups per confirmation (2 s at 0.1 s, then
16 s at 0.2 s), ``max_per_minute`` per hop over a sliding minute, so a dead hop gets at most 3.3
extra probes a second on average and never a burst. The minute's budget is sized for disruptions
that come in clusters (1, 1, 3, 5 and 10 s within a minute fit, each ended to 0.2 s).

What it cannot do alone: a disruption that ends less than about ``first_gap_s`` + the spike
threshold after the only 1 Hz probe that fell into it leaves that probe as its one piece of
evidence, which is exactly what a random lost ping looks like (the last ~0.1 s of each second).
The runner closes that gap where the path allows: it probes its targets at different phases of
the second and a breach at any target starts follow-ups to all of them, so a disruption on a link
that two or more targets share is confirmed by whichever probe met it early. What stays blind is
a 1 s disruption that only one target sees, ending within ~0.1 s after that target's probe.

Follow-up samples feed the detector only; they are not stored as samples, so loss %, RTT
percentiles and jitter in lookups stay those of the 1 Hz schedule, unbiased by probing harder
while a hop misbehaves. The events they confirm say how many samples they rest on.
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
