"""Payload shapes for the receivers IT already runs; the same alert, five ways.
``generic``, ``servicenow``, ``jsm``, ``slack``, ``teams``; ``render(fmt, alert)`` picks one, ``text_of`` the words.
Design notes: docs/collector-internals.md, "collector/alerts/templates.py".
"""

from __future__ import annotations

import datetime as dt

from .rules import Alert

__all__ = ["render", "text_of"]

_SEV_SNOW = {"critical": ("1", "1"), "major": ("2", "2"), "minor": ("3", "3")}  # (impact, urgency)
_SEV_JSM = {"critical": "P1", "major": "P2", "minor": "P3"}
_COLOR = {"open": "C62828", "resolved": "2E7D32"}


def _when(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def text_of(a: Alert) -> str:
    """A few lines a person reads in a chat or a ticket description."""
    lines = [a.title]
    if a.summary:
        lines.append(a.summary)
    d = a.details
    if d.get("next_step") and a.state == "open":
        lines.append(f"Next step: {d['next_step']}")
    lines.append(f"Since {_when(a.since_us)}" + (f", resolved {_when(a.at_us)}" if a.state == "resolved" else ""))
    if d.get("link"):
        lines.append(d["link"])
    return "\n".join(lines)


def _generic(a: Alert) -> dict:
    return {
        "source": "cxpulse",
        "id": a.id,
        "kind": a.kind,
        "state": a.state,
        "severity": a.severity,
        "title": a.title,
        "summary": a.summary,
        "since_us": a.since_us,
        "at_us": a.at_us,
        "agent": a.agent,
        "incident": a.incident,
        "details": a.details,
    }


def _servicenow(a: Alert) -> dict:
    if a.state == "resolved":
        return {
            "correlation_id": a.id,
            "correlation_display": "cxpulse",
            "state": "6",
            "close_code": "Resolved by caller",
            "close_notes": text_of(a),
        }
    impact, urgency = _SEV_SNOW.get(a.severity, ("2", "2"))
    body = {
        "short_description": a.title[:160],
        "description": text_of(a) + ("\n\n" + a.details["ticket"] if a.details.get("ticket") else ""),
        "impact": impact,
        "urgency": urgency,
        "category": "network",
        "correlation_id": a.id,
        "correlation_display": "cxpulse",
    }
    if a.agent:
        body["cmdb_ci"] = a.agent.get("host") or ""
        body["u_cxpulse_user"] = a.agent.get("user") or ""
    return body


def _jsm(a: Alert) -> dict:
    if a.state == "resolved":
        return {"alias": a.id, "source": "cxpulse", "user": "cxpulse", "note": text_of(a)}
    tags = ["cxpulse", a.kind]
    if a.agent and a.agent.get("site"):
        tags.append(f"site:{a.agent['site']}")
    return {
        "message": a.title[:130],
        "alias": a.id,
        "description": text_of(a) + ("\n\n" + a.details["ticket"] if a.details.get("ticket") else ""),
        "priority": _SEV_JSM.get(a.severity, "P3"),
        "source": "cxpulse",
        "entity": (a.agent or {}).get("host") or (a.incident or {}).get("scope") or "",
        "tags": tags,
        "details": {k: str(v) for k, v in a.details.items() if k not in ("ticket",) and v is not None},
    }


def _slack(a: Alert) -> dict:
    mark = ":red_circle:" if a.state == "open" else ":large_green_circle:"
    return {"text": f"{mark} {text_of(a)}"}


def _teams(a: Alert) -> dict:
    return {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": a.title[:120],
        "themeColor": _COLOR.get(a.state, "616161"),
        "title": a.title,
        "text": text_of(a).replace("\n", "<br>"),
    }


_RENDER = {"generic": _generic, "servicenow": _servicenow, "jsm": _jsm, "slack": _slack, "teams": _teams}


def render(fmt: str, alert: Alert) -> dict:
    """The JSON body for receiver format ``fmt`` (one of config.FORMATS)."""
    return _RENDER[fmt](alert)
