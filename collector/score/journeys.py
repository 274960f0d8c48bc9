"""Journeys: the 3-5 things the business says must work, evaluated per minute as met or missed.
Conditions (``metric(targets) op number``) over the score's figures, from TOML (``DEFAULT_JOURNEYS_TOML``).
Design notes: docs/collector-internals.md, "collector/score/journeys.py".
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import operator
import re
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .timeline import MinuteScore, ScoreConfig, agent_timeline

__all__ = [
    "DEFAULT_JOURNEYS_TOML",
    "Condition",
    "Journey",
    "default_journeys",
    "evaluate",
    "journey_summary",
    "load_journeys",
    "parse_journeys",
    "site_journeys",
]

DEFAULT_JOURNEYS_TOML = """\
# cxpulse journeys: what must work, per minute, per agent and per site (docs/scoring.md).
# Rename the targets to the names your agents report (target and app names; | separates
# alternatives, * matches anything).

[[journey]]
name = "Voice call connects and stays clear"
when = ["reachable(signalling|genesys*|*sip*|*ccaas*)", "reachable(media*|reflector)", "mos >= 3.6"]

[[journey]]
name = "CRM screen loads in under 2 s"
when = [
    "p95(salesforce*|crm*|dynamics*|servicenow*) < 2000",
    "availability(salesforce*|crm*|dynamics*|servicenow*) >= 99",
]

[[journey]]
name = "Chat hands over to an agent"
when = ["availability(*chat*|genesys*) >= 99", "p95(*chat*|genesys*) < 1000"]

[[journey]]
name = "Desk is online"
when = ["reachable(gateway)", "loss(gateway) < 2"]
"""

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
}
_COND = re.compile(
    r"\s*(?P<metric>[a-z_0-9]+)\s*(?:\(\s*(?P<targets>[^()]*?)\s*\))?\s*"
    r"(?:(?P<op><=|>=|==|<|>)\s*(?P<value>-?\d+(?:\.\d+)?))?\s*"
)
_TARGETED = {"reachable", "loss", "rtt_p95", "p95", "availability", "apdex", "dns_p95"}
_COMPONENTS = ("voice", "apps", "wifi", "stability")


@dataclass(frozen=True)
class Condition:
    text: str
    metric: str
    targets: tuple[str, ...]
    op: str
    value: float

    def evaluate(self, m: MinuteScore, cfg: ScoreConfig) -> bool | None:
        """True met, False missed, None not measured this minute."""
        values = self._values(m, cfg)
        if not values:
            return None
        return all(_OPS[self.op](v, self.value) for v in values)

    def _values(self, m: MinuteScore, cfg: ScoreConfig) -> list[float]:
        f, met = m.figures, self.metric
        if met == "mos":
            voice = next((c for c in m.overall.components if c.name == "voice"), None)
            return [voice.evidence["mos"]] if voice is not None and "mos" in voice.evidence else []
        if met == "score":
            if self.targets:
                return [c.score for c in m.overall.components if c.name in self.targets and c.score is not None]
            return [] if m.overall.score is None else [m.overall.score]
        out: list[float] = []
        if met in ("reachable", "loss", "rtt_p95"):
            for name in self._match(f.paths):
                p = f.paths[name]
                if not p.samples:
                    continue
                if met == "reachable":
                    out.append(1.0 if p.p50_ms is not None and p.loss_pct < 50 else 0.0)
                elif met == "loss":
                    out.append(p.loss_pct)
                elif p.p95_ms is not None:
                    out.append(p.p95_ms)
        if met in ("reachable", "p95", "availability", "apdex", "dns_p95"):
            for name in self._match(f.apps):
                a = f.apps[name]
                if not a.checks:
                    continue
                if met == "reachable":
                    out.append(1.0 if a.availability_pct >= 50 else 0.0)
                elif met == "availability":
                    out.append(a.availability_pct)
                elif met == "apdex":
                    t = float(cfg.apdex_t_ms.get(name, cfg.default_apdex_t_ms))
                    sat = sum(1 for d in a.durations_ms if d <= t)
                    tol = sum(1 for d in a.durations_ms if t < d <= 4 * t)
                    out.append((sat + tol / 2) / a.checks)
                elif met == "p95":
                    out.append(a.total_p95_ms if a.total_p95_ms is not None else float("inf"))  # all failed: no load
                elif a.dns_p95_ms is not None:
                    out.append(a.dns_p95_ms)
        if met == "reachable" and f.voice is not None and f.voice.runs and self._match({"reflector": None}):
            out.append(0.0 if f.voice.failed == f.voice.runs else 1.0)
        return out

    def _match(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if _matches(self.targets, n)]


@functools.lru_cache(maxsize=4096)
def _matches(patterns: tuple[str, ...], name: str) -> bool:
    """Whether a target or app name matches one of a condition's patterns (case-insensitive).

    Cached: a day's journeys ask this of the same few names for every minute (1,440 times each),
    and the answer depends on the names alone, never on what was measured.
    """
    return any(fnmatch.fnmatchcase(name.lower(), t.lower()) for t in patterns)


@dataclass(frozen=True)
class Journey:
    name: str
    conditions: tuple[Condition, ...]

    def evaluate(self, m: MinuteScore, cfg: ScoreConfig) -> str:
        """``met``, ``missed`` or ``unknown`` for one minute."""
        results = [c.evaluate(m, cfg) for c in self.conditions]
        if any(r is False for r in results):
            return "missed"
        return "unknown" if any(r is None for r in results) else "met"


def _condition(journey: str, text: str) -> Condition:
    m = _COND.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"journey {journey!r}: cannot read condition {text!r} (want e.g. 'p95(crm) < 2000')")
    metric, targets, op, value = m.group("metric"), m.group("targets"), m.group("op"), m.group("value")
    known = _TARGETED | {"mos", "score"}
    if metric not in known:
        raise ValueError(
            f"journey {journey!r}: unknown metric {metric!r} in {text!r} (known: {', '.join(sorted(known))})"
        )
    names = tuple(t.strip() for t in (targets or "").split("|") if t.strip())
    if metric in _TARGETED and not names:
        raise ValueError(f"journey {journey!r}: {metric} needs targets, e.g. {metric}(crm)")
    if metric == "mos" and names:
        raise ValueError(f"journey {journey!r}: mos takes no targets")
    if metric == "score" and any(n not in _COMPONENTS for n in names):
        raise ValueError(f"journey {journey!r}: score() takes a component: {', '.join(_COMPONENTS)}")
    if metric == "reachable":
        if op is not None:
            raise ValueError(f"journey {journey!r}: reachable(...) takes no comparison")
        op, value = "==", "1"
    elif op is None:
        raise ValueError(f"journey {journey!r}: {text!r} needs a comparison, e.g. '{metric} >= 3.6'")
    return Condition(text.strip(), metric, names, op, float(value))


def parse_journeys(text: str) -> list[Journey]:
    """Journeys from TOML text; ValueError naming the journey and condition that is wrong."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"journeys file is not valid TOML: {exc}") from None
    unknown = set(doc) - {"journey"}
    if unknown:
        raise ValueError(f"journeys file: unknown top-level key(s) {sorted(unknown)} (only [[journey]] tables)")
    items = doc.get("journey", [])
    if not isinstance(items, list) or not 1 <= len(items) <= 10:
        raise ValueError("journeys file needs 1 to 10 [[journey]] tables (3 to 5 is the point)")
    out, seen = [], set()
    for i, j in enumerate(items):
        name = j.get("name") if isinstance(j, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"journey {i + 1}: 'name' must be a non-empty string")
        if name in seen:
            raise ValueError(f"journey {name!r} is named twice")
        seen.add(name)
        extra = set(j) - {"name", "when"}
        if extra:
            raise ValueError(f"journey {name!r}: unknown key(s) {sorted(extra)} (name and when)")
        when = j.get("when")
        if not isinstance(when, list) or not when:
            raise ValueError(f"journey {name!r}: 'when' must be a non-empty list of conditions")
        out.append(Journey(name, tuple(_condition(name, c) for c in when)))
    return out


def load_journeys(path: str | None = None) -> list[Journey]:
    """Journeys from a TOML file, or the shipped default without a path. Fails fast when wrong."""
    if path is None:
        return default_journeys()
    with open(path, encoding="utf-8") as fh:
        return parse_journeys(fh.read())


def default_journeys() -> list[Journey]:
    """The built-in journeys (a new list each call; the journeys themselves are immutable)."""
    return list(_default_journeys())


@functools.lru_cache(maxsize=1)
def _default_journeys() -> tuple[Journey, ...]:
    # Parsed once: the fleet asks for them once per agent (0.35 s of TOML per 1,000 agents).
    return tuple(parse_journeys(DEFAULT_JOURNEYS_TOML))


def evaluate(
    journeys: Sequence[Journey], minutes: Sequence[MinuteScore], cfg: ScoreConfig | None = None
) -> dict[str, dict[int, str]]:
    """journey name -> minute -> met/missed/unknown.

    A minute's flags are kept with its score (``m.journeys``, under a digest of these journeys
    and the score config): a kept minute is not evaluated again, nor are its figures computed.
    """
    cfg = cfg or ScoreConfig()
    key = hashlib.blake2b(repr((list(journeys), cfg)).encode(), digest_size=8).hexdigest()
    out: dict[str, dict[int, str]] = {j.name: {} for j in journeys}
    for m in minutes:
        flags = m.journeys.get(key)
        if flags is None or len(flags) != len(journeys):
            flags = [j.evaluate(m, cfg) for j in journeys]
            m.journeys = {key: flags}
            m.kept = False
        for j, f in zip(journeys, flags):
            out[j.name][m.minute_us] = f
    return out


def journey_summary(per_minute: dict[str, dict[int, str]]) -> list[dict]:
    """Per journey: minutes met, missed, unknown, the met share of known minutes, the missed minutes."""
    out = []
    for name, mins in per_minute.items():
        met = sum(1 for v in mins.values() if v == "met")
        missed = sorted(m for m, v in mins.items() if v == "missed")
        unknown = sum(1 for v in mins.values() if v == "unknown")
        known = met + len(missed)
        out.append(
            {
                "name": name,
                "met": met,
                "missed": len(missed),
                "unknown": unknown,
                "met_pct": round(100.0 * met / known, 1) if known else None,
                "missed_minutes": missed[:60],
            }
        )
    return out


def site_journeys(
    store, since_us: int, until_us: int, journeys: Sequence[Journey] | None = None, cfg: ScoreConfig | None = None
) -> dict[str, list[dict]]:
    """Per site: each journey's agent-minutes met/missed/unknown over the window (agents without a site: "")."""
    journeys = list(journeys or default_journeys())
    acc: dict[str, dict[str, dict[str, int]]] = {}
    for a in store.all_agents():
        tl = agent_timeline(store, a.key, since_us, until_us, cfg)
        for name, mins in evaluate(journeys, tl.minutes, cfg).items():
            c = acc.setdefault(a.info.site, {}).setdefault(name, {"met": 0, "missed": 0, "unknown": 0, "agents": 0})
            c["agents"] += 1 if mins else 0
            for v in mins.values():
                c[v] += 1
    return {
        site: [
            {
                "name": n,
                **c,
                "met_pct": round(100.0 * c["met"] / (c["met"] + c["missed"]), 1) if c["met"] + c["missed"] else None,
            }
            for n, c in per.items()
        ]
        for site, per in sorted(acc.items())
    }
