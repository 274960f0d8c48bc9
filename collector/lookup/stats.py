"""Per-target figures over a window. Definitions are in docs/metrics.md; keep both in step.

- loss %: lost samples / samples.
- RTT median, p95 (nearest-rank), max: over answered samples only.
- jitter (RFC 3550): the interarrival-jitter estimator J += (|D| - J) / 16 run over
  consecutive answered RTTs, D being the difference of two consecutive RTTs;
  reported as its value at the end of the window, as an RTP receiver would.
- mean |dRTT|: the plain mean of |D| over the window (what mtr calls jitter mean),
  which reacts to every spike instead of smoothing it.
- loss seconds: distinct wall-clock seconds that held at least one lost sample.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from ..store import RttRow


@dataclass
class TargetStats:
    target: str
    addresses: list[str]
    methods: list[str]
    samples: int
    lost: int
    loss_pct: float
    rtt_median_ms: float | None
    rtt_p95_ms: float | None
    rtt_max_ms: float | None
    jitter_ms: float | None
    jitter_mean_abs_ms: float | None
    loss_seconds: int
    first_us: int
    last_us: int

    def as_dict(self) -> dict:
        return asdict(self)


def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def rfc3550_jitter(rtts_us: Iterable[int]) -> tuple[float | None, float | None]:
    """Returns (final RFC 3550 estimate, mean |D|) in microseconds, None with fewer than two RTTs."""
    j = 0.0
    total = 0
    n = 0
    prev = None
    for r in rtts_us:
        if prev is not None:
            d = abs(r - prev)
            j += (d - j) / 16.0
            total += d
            n += 1
        prev = r
    if n == 0:
        return None, None
    return j, total / n


def _ms(us: float | None) -> float | None:
    return None if us is None else round(us / 1000.0, 3)


def summarize(rows: Iterable[RttRow]) -> list[TargetStats]:
    """Rows must be ordered by target, then time (as the store returns them)."""
    by_target: dict[str, list[RttRow]] = {}
    for r in rows:
        by_target.setdefault(r.target, []).append(r)
    out = []
    for target, rs in by_target.items():
        rs.sort(key=lambda r: r.ts_us)
        answered = [r.rtt_us for r in rs if r.rtt_us is not None]
        lost = len(rs) - len(answered)
        ordered = sorted(answered)
        jitter, mean_abs = rfc3550_jitter(answered)
        out.append(
            TargetStats(
                target=target,
                addresses=sorted({r.address for r in rs}),
                methods=sorted({r.method for r in rs}),
                samples=len(rs),
                lost=lost,
                loss_pct=round(100.0 * lost / len(rs), 2),
                rtt_median_ms=_ms(percentile(ordered, 50)) if ordered else None,
                rtt_p95_ms=_ms(percentile(ordered, 95)) if ordered else None,
                rtt_max_ms=_ms(ordered[-1]) if ordered else None,
                jitter_ms=_ms(jitter),
                jitter_mean_abs_ms=_ms(mean_abs),
                loss_seconds=len({r.ts_us // 1_000_000 for r in rs if r.rtt_us is None}),
                first_us=rs[0].ts_us,
                last_us=rs[-1].ts_us,
            )
        )
    out.sort(key=lambda t: (t.target != "gateway", t.target))
    return out
