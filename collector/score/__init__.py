"""Experience scoring: pure functions from figures to explained 0-100 scores.
A store, where one is read, is passed in; the loops that run on a clock live in collector/jobs/.
Design notes: docs/collector-internals.md, "collector/score/__init__.py".
"""

from ..store.sketch import LatencySketch
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
