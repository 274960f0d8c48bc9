"""The window's events grouped by place and ranked by impact (seconds felt times severity).
Computed once per view (``report._view``); page, ticket and CLI keep its order; the words come from ``words``.
Design notes: docs/collector-internals.md, "collector/lookup/event_groups.py".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .words import SEVERITY_WORDS, event_place, event_words

__all__ = ["felt_seconds", "group_events", "group_line"]

S = 1_000_000


def felt_seconds(e: Mapping, since_us: int, until_us: int) -> float:
    """Seconds of the event inside [since, until); at least one for an event of no length."""
    end = e.get("end_us")
    end = until_us if end is None else min(end, until_us)
    return max(1.0, (end - max(e["start_us"], since_us)) / S)


def group_events(events: Sequence[dict], since_us: int, until_us: int) -> list[dict]:
    """Groups, highest impact first: place key and words, impact, felt seconds, event count, worst
    severity in words, counts per event in words, the event ids by impact, and ``text``, the group
    in one line of words (``group_line``).

    Each event dict gains its words (``what``), its place's words (``place``) and its ``impact``.
    """
    groups: dict[str, dict] = {}
    for e in events:
        key, label = event_place(e["kind"], e.get("target") or "")
        felt = felt_seconds(e, since_us, until_us)
        sev = e.get("severity") or 1
        e["what"], e["place"], e["impact"] = event_words(e["kind"]), label, round(felt * sev, 1)
        g = groups.setdefault(
            key,
            {
                "key": key,
                "place": label,
                "impact": 0.0,
                "seconds": 0.0,
                "events": 0,
                "severity": 0,
                "what": {},
                "_members": [],
            },
        )
        g["impact"] += felt * sev
        g["seconds"] += felt
        g["events"] += 1
        g["severity"] = max(g["severity"], sev)
        g["what"][e["what"]] = g["what"].get(e["what"], 0) + 1
        g["_members"].append(e)
    out = []
    for g in groups.values():
        members = sorted(g.pop("_members"), key=lambda e: (-e["impact"], -e["start_us"]))
        g["impact"], g["seconds"] = round(g["impact"], 1), round(g["seconds"], 1)
        g["worst"] = SEVERITY_WORDS.get(g["severity"], "?")
        g["what"] = dict(sorted(g["what"].items(), key=lambda kv: -kv[1]))
        g["event_ids"] = [e["id"] for e in members]
        g["text"] = group_line(g)  # the words every view shows
        out.append(g)
    out.sort(key=lambda g: (-g["impact"], g["place"]))
    return out


def group_line(g: Mapping) -> str:
    """'ISP: 12 events, 40 s in all, worst major (8 packets lost, 4 delay spike)': one group in words."""
    n = g["events"]
    what = ", ".join(f"{c} {w}" for w, c in g["what"].items())
    secs = f"{g['seconds']:.0f} s" if g["seconds"] >= 10 else f"{g['seconds']:.1f} s"
    return f"{g['place']}: {n} event{'s' if n != 1 else ''}, {secs} in all, worst {g['worst']} ({what})"
