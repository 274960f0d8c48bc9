"""Experience scoring: pure functions from figures to explained 0-100 scores.

- ``emodel``: ITU-T G.107 E-model (R and MOS for a call leg), codec table from G.113.
- ``components``: voice, apps, Wi-Fi and stability components, each with a score, label,
  reason and evidence; ``overall`` and ``window_score`` combine them so the weakest dominates.
- ``sketch``: a mergeable latency sketch with bounded relative error, for per-minute rollups
  that several collectors can add up exactly.
- ``cli``: ``cxpulse score voice`` for a network engineer to check a path by hand.

Nothing here reads the store or the clock: the rollups feed figures in, the lookup shows the
result. Definitions, bands and sources: docs/scoring.md.
"""

from .components import (
    AppCheck,
    Component,
    Overall,
    WifiReading,
    WindowScore,
    apps_component,
    label_for,
    overall,
    stability_component,
    voice_component,
    wifi_component,
    window_score,
)
from .emodel import (
    CODECS,
    Codec,
    DelayBudget,
    Params,
    Rating,
    burst_r_from_runs,
    codec_by_name,
    mos_from_r,
    one_way_delay,
    rate,
    rate_path,
)
from ..store.sketch import LatencySketch

__all__ = [
    "CODECS",
    "AppCheck",
    "Codec",
    "Component",
    "DelayBudget",
    "LatencySketch",
    "Overall",
    "Params",
    "Rating",
    "WifiReading",
    "WindowScore",
    "apps_component",
    "burst_r_from_runs",
    "codec_by_name",
    "label_for",
    "mos_from_r",
    "one_way_delay",
    "overall",
    "rate",
    "rate_path",
    "stability_component",
    "voice_component",
    "wifi_component",
    "window_score",
]
