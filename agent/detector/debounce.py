"""K-of-N breach window with a clean-run close: the one state machine every event kind shares."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DebounceConfig:
    window: int = 5
    breaches_to_open: int = 3
    clean_to_close: int = 3

    def __post_init__(self) -> None:
        if not 1 <= self.breaches_to_open <= self.window:
            raise ValueError("breaches_to_open must be between 1 and window")
        if self.clean_to_close < 1:
            raise ValueError("clean_to_close must be at least 1")


@dataclass
class Episode:
    """What the breaching samples of one open (or just closed) event looked like."""

    start_us: int
    last_breach_us: int
    breaches: int = 0
    samples: int = 0
    # samples from the first to the last breach (the trailing clean run is not part of the episode)
    span_samples: int = 0
    values: list = field(default_factory=list)
    # Send time of the first clean sample after the last breach: the disruption ended between the
    # last breach and this. With follow-up probes it is a tenth of a second after the last breach.
    clear_us: int | None = None


class Debounce:
    """Feed it (ts, breached, value); it says when an episode opens and when it closes."""

    def __init__(self, cfg: DebounceConfig):
        self.cfg = cfg
        self._recent: deque[tuple[int, bool, object]] = deque(maxlen=cfg.window)
        self.episode: Episode | None = None
        self.closed: Episode | None = None
        self._clean_run = 0

    def feed(self, ts_us: int, breached: bool, value: object = None) -> str | None:
        """Returns "open", "close" or None. After "close", ``self.closed`` holds the finished episode."""
        self._recent.append((ts_us, breached, value))
        if self.episode is None:
            if sum(1 for _, b, _ in self._recent if b) >= self.cfg.breaches_to_open:
                first = next(i for i, (_, b, _) in enumerate(self._recent) if b)
                window = list(self._recent)[first:]
                self.episode = ep = Episode(start_us=window[0][0], last_breach_us=ts_us)
                for t, b, v in window:
                    self._count(ep, t, b, v)
                self._clean_run = 0 if breached else self._trailing_clean()
                return "open"
            return None
        self._count(self.episode, ts_us, breached, value)
        if breached:
            self._clean_run = 0
            return None
        self._clean_run += 1
        if self._clean_run >= self.cfg.clean_to_close:
            self.closed, self.episode = self.episode, None
            self._recent.clear()
            self._clean_run = 0
            return "close"
        return None

    def episode_of(self, what: str) -> Episode:
        """The episode ``feed`` just opened (``what`` "open") or closed ("close")."""
        ep = self.episode if what == "open" else self.closed
        assert ep is not None, what
        return ep

    @staticmethod
    def _count(ep: Episode, ts_us: int, breached: bool, value: object) -> None:
        ep.samples += 1
        if breached:
            ep.breaches += 1
            ep.last_breach_us = ts_us
            ep.span_samples = ep.samples
            ep.values.append(value)
            ep.clear_us = None
        elif ep.clear_us is None and ts_us > ep.last_breach_us:
            ep.clear_us = ts_us

    def _trailing_clean(self) -> int:
        n = 0
        for _, b, _ in reversed(self._recent):
            if b:
                break
            n += 1
        return n
