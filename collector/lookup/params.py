"""Request parameters of the lookup API: times, durations, bounded integers, booleans, zones.
Each query parameter is declared once as a ``Param``: the route reads it through the declaration
and the OpenAPI document shows the same declaration, so the bounds a client reads are the ones enforced.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..durations import parse_seconds

__all__ = [
    "ApiError",
    "Param",
    "bool_param",
    "int_param",
    "parse_duration_s",
    "parse_time_us",
    "time_range",
    "tz_param",
]

S = 1_000_000
MAX_RANGE_S = 31 * 86_400
# Every time a request names lies in [2000-01-01, 2100-01-01) UTC and every duration is at most ten
# years: anything outside is a typo or an attack (``until=1e400``), answered 400 with the reason
# instead of overflowing a conversion or a 64-bit database integer (issue 18, finding 9).
MIN_TIME_S = 946_684_800
MAX_TIME_S = 4_102_444_800
MAX_DURATION_S = 3650 * 86_400


class ApiError(Exception):
    """A request the API cannot answer as asked; becomes a JSON error with this status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def parse_duration_s(text: str, name: str = "window") -> int:
    """``900``, ``15m``, ``1h``, ``7d`` -> whole seconds in [1 s, ten years] (``durations.parse_seconds``)."""
    try:
        return parse_seconds(text, name, MAX_DURATION_S)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


def parse_time_us(text: str, now_us: int, name: str) -> int:
    """ISO 8601 (UTC if no zone), epoch seconds, ``now`` or ``-15m`` (before now) -> microseconds.

    The result lies within [MIN_TIME_S, MAX_TIME_S) or the answer is 400 saying so.
    """
    us = _parse_time_us(text, now_us, name)
    if not MIN_TIME_S * S <= us < MAX_TIME_S * S:
        raise ApiError(400, f"{name} must lie between 2000-01-01 and 2100-01-01 (UTC); got {(text or '')[:40]!r}")
    return us


def _parse_time_us(text: str, now_us: int, name: str) -> int:
    t = (text or "").strip()
    if t.lower() == "now":
        return now_us
    if t.startswith("-"):
        return now_us - parse_duration_s(t[1:], name) * S
    try:
        secs = float(t)
    except ValueError:
        pass
    else:
        if not math.isfinite(secs):  # inf, 1e400, nan: a number, but no time
            raise ApiError(400, f"{name} must be a finite number of epoch seconds; got {text[:40]!r}")
        return round(secs * S)  # a big int at worst; the caller checks the range
    try:
        d = dt.datetime.fromisoformat(t.replace("Z", "+00:00") if t.endswith("Z") else t)
    except ValueError:
        raise ApiError(
            400, f"{name} must be ISO 8601 (2026-09-21T14:00:00Z), epoch seconds, 'now' or '-1h'; got {text!r}"
        ) from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.UTC)
    try:
        return int(d.timestamp() * S)
    except (OverflowError, ValueError):  # 0001-01-01 with a +23:59 zone
        raise ApiError(400, f"{name} is outside the range of dates this API accepts; got {text[:40]!r}") from None


def time_range(q: Mapping[str, str], now_us: int, default_window_s: int = 3600) -> tuple[int, int]:
    """[since, until) from ``since``/``until``/``window`` query values; whole seconds, bounded."""
    until = parse_time_us(q["until"], now_us, "until") if q.get("until") else now_us
    if q.get("since"):
        since = parse_time_us(q["since"], now_us, "since")
    else:
        since = until - parse_duration_s(q.get("window") or str(default_window_s)) * S
    until = (until // S) * S
    since = (since // S) * S
    if since >= until:
        raise ApiError(400, f"since must be before until (got since {since} us, until {until} us)")
    if until - since > MAX_RANGE_S * S:
        raise ApiError(400, f"the time range is longer than {MAX_RANGE_S // 86400} days; ask for a shorter one")
    return since, until


def int_param(q: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    """An integer in [lo, hi]; absent or empty: ``default``."""
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer between {lo} and {hi}; got {raw!r}") from None
    if not lo <= v <= hi:
        raise ApiError(400, f"{name} must be between {lo} and {hi}; got {v}")
    return v


def bool_param(q: Mapping[str, str], name: str, default: bool) -> bool:
    """true/false, 1/0, yes/no; absent or empty: ``default``."""
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise ApiError(400, f"{name} must be true or false; got {raw!r}")


def tz_param(q: Mapping[str, str], name: str = "tz") -> str | None:
    """An IANA time zone name, or None when absent."""
    tz = q.get(name) or None
    if tz is None:
        return None
    import zoneinfo

    try:
        if len(tz) > 64:
            raise ValueError(tz)
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ApiError(400, f"{name} must be an IANA time zone such as Europe/Lisbon; got {tz!r}") from None
    return tz


@dataclass(frozen=True)
class Param:
    """One request parameter as the OpenAPI document shows it; ``read`` enforces that same schema.

    An integer reads within its schema's minimum/maximum (its default when absent), a boolean as
    true/false, an enum as one of its values (the first when absent), a string up to maxLength.
    """

    name: str
    description: str
    schema: dict = field(default_factory=lambda: {"type": "string"})
    where: str = "query"
    example: str | None = None

    def spec(self) -> dict:
        out = {
            "name": self.name,
            "in": self.where,
            "required": self.where == "path",
            "description": self.description,
            "schema": self.schema,
        }
        if self.example is not None:
            out["example"] = self.example
        return out

    def read(self, q: Mapping[str, str]):
        s = self.schema
        if s["type"] == "integer":
            return int_param(q, self.name, s["default"], s["minimum"], s["maximum"])
        if s["type"] == "boolean":
            return bool_param(q, self.name, s["default"])
        if "enum" in s:
            raw = q.get(self.name, s["enum"][0])
            if raw not in s["enum"]:
                raise ApiError(400, f"{self.name} must be {' or '.join(s['enum'])}; got {raw!r}")
            return raw
        raw = q.get(self.name, "")
        if len(raw) > s.get("maxLength", math.inf):
            raise ApiError(400, f"{self.name} is longer than {s['maxLength']} characters")
        return raw
