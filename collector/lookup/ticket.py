"""The ticket summary: the few lines a helpdesk analyst pastes into a ticket while the user waits.
``ticket_summary`` feeds the API, the page and ``cxpulse lookup``; ``headline`` and ``verdict`` give it as a dict.
Design notes: docs/collector-internals.md, "collector/lookup/ticket.py".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from ..score.triage import platform_name
from .event_groups import group_events
from .others import others_line
from .timefmt import fmt_time
from .timefmt import zone as timefmt_zone
from .words import event_words

__all__ = ["headline", "next_step", "ticket_summary", "verdict"]

# --- reading the view -----------------------------------------------------------------------


def _first(d: Mapping | None, *keys: str):
    """The first of ``keys`` present with a value: the scorer's names may differ by a word."""
    if not isinstance(d, Mapping):
        return None
    for k in keys:
        v = d.get(k)
        if v is not None and v != "":
            return v
    return None


def _score_and_label(x) -> tuple[float | None, str | None, str | None]:
    """(score, label, limiting) from a number or a dict such as {"score": 23.5, "label": "poor"}."""
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return float(x), _label(float(x)), None
    if isinstance(x, Mapping):
        s = _first(x, "score", "value")
        s = float(s) if isinstance(s, (int, float)) else None
        lim = _first(x, "limiting", "limiting_component", "limiting_factor")
        if isinstance(lim, Mapping):
            lim = _first(lim, "name", "component")
        return s, _first(x, "label") or _label(s), lim
    return None, None, None


def _label(score: float | None) -> str | None:
    # The documented bands (docs/scoring.md), only used when the scorer gave a number without a label.
    if score is None:
        return None
    return "good" if score >= 70 else "fair" if score >= 30 else "poor"


def _evidence_lines(ev) -> list[str]:
    """Evidence as short lines, whether the scorer gave strings, dicts or a dict of figures."""
    if ev is None:
        return []
    if isinstance(ev, str):
        return [ev]
    if isinstance(ev, Mapping):
        return [f"{k}: {_fmt_value(v)}" for k, v in ev.items() if v is not None and not isinstance(v, (list, dict))]
    out = []
    for item in ev if isinstance(ev, Iterable) else []:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, Mapping):
            text = _first(item, "text", "sentence", "summary", "reason", "evidence")
            out.append(text if isinstance(text, str) else ", ".join(f"{k} {_fmt_value(v)}" for k, v in item.items()))
    return out


def _fmt_value(v) -> str:
    if isinstance(v, float):
        return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"
    return str(v)


def _primary_fault(score: Mapping) -> tuple[dict, list[dict]]:
    """The degraded window a ticket leads with (the worst; then the longest; then the latest) and the others.

    The scorer gives one verdict per degraded window (``faults``) and the latest as ``fault``.
    """
    faults = [f for f in (score.get("faults") or []) if isinstance(f, Mapping)]
    if not faults:
        f = _first(score, "fault", "fault_domain", "triage")
        if isinstance(f, str):
            f = {"domain": f}
        return (dict(f) if isinstance(f, Mapping) else {}), []
    ranked = sorted(
        faults,
        key=lambda f: (
            f.get("worst_score") if f.get("worst_score") is not None else 100.0,
            -(f.get("minutes") or 0),
            -(f.get("end_us") or 0),
        ),
    )
    return dict(ranked[0]), [dict(f) for f in ranked[1:]]


def _score_reading(score: Mapping) -> dict:
    """Normalize the scorer's section into the few things a ticket needs."""
    now_s, now_label, now_lim = _score_and_label(_first(score, "now", "current", "latest"))
    win_s, win_label, win_lim = _score_and_label(_first(score, "window", "overall", "summary"))
    if win_s is None and isinstance(score.get("score"), (int, float)):
        win_s, win_label, win_lim = _score_and_label(score)
    limiting = _first(score, "limiting", "limiting_component", "limiting_factor") or win_lim or now_lim
    if isinstance(limiting, Mapping):
        limiting = _first(limiting, "name", "component")
    fd, others = _primary_fault(score)
    components = score.get("components") or []
    if isinstance(components, Mapping):
        components = [
            dict(v, name=v.get("name", k)) if isinstance(v, Mapping) else {"name": k, "score": v}
            for k, v in components.items()
        ]
    lim_comp = next((c for c in components if isinstance(c, Mapping) and c.get("name") == limiting), None)
    window = _first(score, "window") if isinstance(score.get("window"), Mapping) else {}
    fd_text = _first(fd, "sentence", "summary", "text") or (
        fd.get("evidence") if isinstance(fd.get("evidence"), str) else None
    )
    degraded = fd and fd.get("domain") is not None
    sentence = fd_text if degraded else None
    if sentence is None and win_s is not None and win_s < 70:
        sentence = _first(window, "reason") or _first(lim_comp, "reason")
    if isinstance(fd.get("evidence"), str):
        evidence = [part.strip() for part in fd["evidence"].split("; ") if part.strip() and part.strip() != sentence]
    else:
        evidence = _evidence_lines(fd.get("evidence"))
    if _first(window, "reason") and (win_s is None or win_s < 70 or degraded) and window["reason"] != sentence:
        evidence.append(f"score over the window: {window['reason']}")
    incidents = [i for i in (score.get("incidents") or []) if isinstance(i, Mapping)]
    inc = fd.get("incident") if isinstance(fd.get("incident"), Mapping) else None
    return {
        "score": win_s if win_s is not None else now_s,
        "label": win_label if win_s is not None else now_label,
        "score_now": now_s,
        "label_now": now_label,
        "limiting": limiting,
        "domain": fd.get("domain") if degraded else None,
        "domain_label": _first(fd, "label") if degraded else None,
        "confidence": _first(fd, "confidence") if degraded else None,
        "where": _first(fd, "where", "location", "hop", "target"),
        "platform": _first(fd, "platform") if degraded else None,
        "isp": _first(fd, "isp") if degraded else None,  # the ISP by name (score/isp_name.py), network verdicts
        "fault_start_us": fd.get("start_us"),
        "fault_end_us": fd.get("end_us"),
        "sentence": sentence,
        "evidence": evidence,
        "faults": [
            {
                k: f.get(k)
                for k in ("domain", "label", "confidence", "start_us", "end_us", "minutes", "worst_score", "evidence")
            }
            for f in ([fd] if degraded else []) + others
        ],
        "incidents": incidents,
        "incident": _first(inc, "id") if inc else _first(fd, "incident_id", "part_of"),
        "components": [c for c in components if isinstance(c, Mapping)],
        "journeys": [j for j in (score.get("journeys") or []) if isinstance(j, Mapping)],
    }


def verdict(view_agent: Mapping) -> dict:
    """The view's one verdict: score, what was wrong, where, evidence and next step for one agent.

    Computed once per view (``report._view`` stores it as ``score["verdict"]``); the page's
    headline, the ticket, the CLI and the fleet row all read that one dict (``headline``), so
    "Where" and "Next step" can never disagree between them.
    """
    score = view_agent.get("score")
    if isinstance(score, Mapping) and score:
        r = _score_reading(score)
        r["source"] = "score"
    else:
        r = _observed(view_agent)
        r["source"] = "figures"
    r["next_step"] = next_step(r, view_agent)
    return r


def headline(view_agent: Mapping) -> dict:
    """The verdict of this view: the one ``report`` computed, or (a view made elsewhere) computed now."""
    score = view_agent.get("score")
    kept = score.get("verdict") if isinstance(score, Mapping) else None
    if isinstance(kept, Mapping):
        return dict(kept)
    return verdict(view_agent)


# --- without a score section: what the figures alone say -----------------------------------


def _observed(a: Mapping) -> dict:
    """The most telling measured problems, without claiming a fault domain the figures cannot back.

    Loss or delay that starts past a clean gateway, a weak Wi-Fi link, failing apps and the worst
    events are reported as seen; ``domain`` stays None so the next step says to look, not to act.
    """
    evidence: list[str] = []
    where = None
    targets = a.get("targets") or []
    gw = next((t for t in targets if t.get("target") == "gateway" or t.get("hop") == 1), None)
    lossy = [t for t in targets if (t.get("loss_pct") or 0) >= 1.0]
    if lossy:
        first = min(lossy, key=lambda t: (t.get("hop") is None, t.get("hop") or 0))
        gw_note = ""
        if gw is not None and gw is not first and (gw.get("loss_pct") or 0) < 0.5:
            gw_note = f", gateway {gw['loss_pct']:.1f}%"  # the gateway is clean: the loss starts past it
        where = first.get("target")
        evidence.append(
            f"loss {first['loss_pct']:.1f}% at {first['target']}"
            + (f" (hop {first['hop']})" if first.get("hop") else "")
            + gw_note
            + f", longest run {first.get('max_loss_run', 0)} samples"
        )
    w = a.get("wifi") or {}
    if w.get("rssi_min_dbm") is not None and w["rssi_min_dbm"] < -75:
        evidence.append(
            f"Wi-Fi RSSI down to {w['rssi_min_dbm']} dBm (median {w.get('rssi_median_dbm')} dBm)"
            + (f", {w['disconnects']} disconnects" if w.get("disconnects") else "")
        )
        where = where or "Wi-Fi"
    for app in a.get("apps") or []:
        if app.get("failed"):
            errs = ", ".join(f"{k} x{v}" for k, v in sorted((app.get("errors") or {}).items()))
            evidence.append(f"{app['app']}: {app['failed']} of {app['checks']} checks failed ({errs})")
    d = a.get("device") or {}
    if (d.get("cpu_pct_max") or 0) >= 90:
        evidence.append(f"CPU up to {d['cpu_pct_max']:.0f}%" + (f" ({d['busiest']})" if d.get("busiest") else ""))
    worst = sorted(a.get("events") or [], key=lambda e: (-(e.get("severity") or 0), -(e.get("duration_s") or 0)))
    for e in worst[:3]:
        evidence.append(f"{event_words(e['kind'])} at {e['target']}: {e.get('evidence') or ''}".rstrip(": "))
    sentence = None
    if evidence:
        sentence = "measured: " + evidence[0]
    return {
        "score": None,
        "label": None,
        "score_now": None,
        "label_now": None,
        "limiting": None,
        "domain": None,
        "domain_label": None,
        "confidence": None,
        "where": where,
        "fault_start_us": None,
        "fault_end_us": None,
        "sentence": sentence,
        "evidence": evidence,
        "faults": [],
        "incidents": [],
        "incident": None,
        "components": [],
        "journeys": [],
    }


# --- the next step --------------------------------------------------------------------------


def _hhmm(us: int | None, tz: dt.tzinfo) -> str:
    """A clock time of the ticket, in the ticket's zone and labelled with it: a pasted line stands alone."""
    return fmt_time(us, tz, date=False)


def _incident_for(r: Mapping) -> Mapping | None:
    """The incident that explains this agent's trouble: only the one the fault verdict names.

    Never just any open incident of the window: an incident the person is listed in but that does
    not explain the degraded time (another app, closed before it) must not set the next step.
    """
    named = r.get("incident")
    if named is None:
        return None
    for i in r.get("incidents") or []:
        if str(i.get("id")) == str(named):
            return i
    return None


def incident_scope(i: Mapping) -> str:
    """'Salesforce' or 'site Lisbon': what an incident covers, in the words of a ticket."""
    scope = _first(i, "app", "target", "site", "scope", "name") or "platform"
    kind = str(_first(i, "kind", "type") or "")
    return f"site {scope}" if kind == "site" or ("site" in i and "app" not in i and kind != "platform") else str(scope)


def next_step(r: Mapping, view_agent: Mapping | None = None, tz: dt.tzinfo = dt.UTC) -> str:
    """What the analyst does next, from the fault domain (or the incident the agent is part of)."""
    inc = _incident_for(r)
    if inc is not None:
        scope = incident_scope(inc)
        # No clock time here: the step is computed once per view and read in any time zone
        # (the ticket's "Incident:" line gives the start in the ticket's zone).
        state = "ongoing" if inc.get("end_us") is None else "now closed"
        if scope.startswith("site "):
            return (
                f"{scope[5:]} site-wide incident ({state}): escalate to the site's network team, not this user's desk."
            )
        scope = platform_name(scope)  # "Salesforce", as the helpdesk knows it, not the check's name
        return (
            f"{scope}-wide incident ({state}), not this user's network: follow the incident, tell the user it is known."
        )
    domain = str(r.get("domain") or "").lower().replace("-", "_").replace(" ", "_")
    a = view_agent or {}
    if domain == "own_traffic":
        return (
            "Pause or reschedule the big upload/download on this PC (cloud sync, backup, video), then check "
            "again; if it is needed during calls, ask for a faster line."
        )
    if "wifi" in domain or "wi_fi" in domain or "wlan" in domain:
        return "Use a wired connection or move closer to the access point."
    if "device" in domain or "cpu" in domain or "pc" == domain or "endpoint" in domain:
        busiest = (a.get("device") or {}).get("busiest")
        return (
            "Close or restart the busy program"
            + (f" ({busiest})" if busiest else "")
            + " or restart the PC; if it recurs, check the PC's health."
        )
    if "vpn" in domain or "swg" in domain or "proxy" in domain or "gateway_security" in domain:
        return "Check the VPN / secure web gateway: try another gateway or split tunnelling for the CCaaS/CRM apps."
    if "dns" in domain:
        return "Check the DNS resolver this desk uses (or the VPN's DNS); try another resolver."
    if domain == "lan":
        site = str(a.get("site") or "").lower()
        wifi = "over Wi-Fi" in str(r.get("sentence") or "")
        fix = (
            "move closer to the access point or use a cable, then restart the router"
            if wifi
            else "check the desk's cable and LAN port, then restart the router"
        )
        if site and "home" not in site:
            return (
                f"Call the site's network team: the loss or delay is between this desk and the site's router "
                f"(the ISP is not the cause); meanwhile {fix}."
            )
        return f"The trouble is between this desk and the home router, not the ISP: {fix}."
    if "branch" in domain or "site" in domain:
        return "Contact the site's network team: loss or delay starts beyond the desk's gateway on the site network."
    if "isp" in domain or "home" in domain or "last_mile" in domain or "lastmile" in domain or domain == "network":
        what = (
            "loss"
            if "loss" in str(r.get("sentence") or "")
            else "delay"
            if "latency" in str(r.get("sentence") or "")
            else "trouble"
        )
        site = str(a.get("site") or "").lower()
        isp = f" ({r['isp']})" if r.get("isp") else ""
        if site and "home" not in site:
            return (
                f"Contact the site's network team or its ISP{isp}: the {what} starts beyond the site's router "
                "(the desk's gateway is clean)."
            )
        if what == "delay":
            return (
                "Delay starts beyond the home router: check for big uploads or streaming on the home connection, "
                f"then contact the ISP{isp}."
            )
        return f"Contact the ISP{isp}: {what} starts beyond the home router (the gateway is clean)."
    if "app" in domain or "platform" in domain or "saas" in domain:
        app = r.get("platform") or r.get("where")
        if app:
            return (
                f"Check {app}'s status page and open a case with the vendor: the path is fine, "
                "the app is slow or failing."
            )
        return (
            "Check the platform's status page and open a case with the vendor: the path is fine, "
            "the app is slow or failing."
        )
    if r.get("source") == "figures":
        if r.get("evidence"):
            return (
                "No fault domain computed: read the evidence above and the timeline; if it recurs, note the exact time."
            )
        return "Nothing abnormal measured in this window: ask the user for the exact time it happened and look again."
    if r.get("label") == "good":
        return "The measured experience was good in this window: ask the user for the exact time it happened."
    return "No clear fault domain: keep the ticket open and look again at the next occurrence (note the exact time)."


# --- the text ---------------------------------------------------------------------------------


def _fmt_span(since_us: int, until_us: int, tz: dt.tzinfo) -> str:
    a = dt.datetime.fromtimestamp(since_us / 1e6, tz=tz)
    b = dt.datetime.fromtimestamp(until_us / 1e6, tz=tz)
    zone = a.tzname() or ""
    secs = max(0, (until_us - since_us) // 1_000_000)
    length = (
        f"{secs // 3600} h"
        if secs % 3600 == 0 and secs >= 3600
        else f"{secs // 60} min"
        if secs % 60 == 0
        else f"{secs} s"
    )
    end = b.strftime("%H:%M") if a.date() == b.date() else b.strftime("%Y-%m-%d %H:%M")
    return f"{a.strftime('%Y-%m-%d %H:%M')} .. {end} {zone} ({length})"


def _secs(s: float) -> str:
    return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"


def person(display_name: str, login: str, empty: str = "?") -> str:
    """ "Maria Silva (CORP\\msilva)": the name the ticket gives, then the login; the login alone when
    the name adds nothing (an agent from before display names, a local account without one)."""
    if not login:
        return empty
    return f"{display_name} ({login})" if display_name and display_name != login else login


def _plain_component(name: str) -> str:
    from .glossary import TERMS  # the one list of plain words for the figures (docs/glossary.md)

    plain = next((p for t, p, _, _ in TERMS if t == name), None)
    return f"{plain} ({name})" if plain else str(name)


def ticket_summary(
    view_agent: dict, window: dict, *, tz: str | dt.tzinfo | None = None, link: str | None = None
) -> str:
    """Plain text for a ticket: who, when, score, what was wrong, where, evidence, next step.

    ``window`` is the view's ``window`` ({"since_us", "until_us", ...}); ``tz`` an IANA zone name
    for the times (default UTC, always printed with its zone so a pasted ticket is unambiguous);
    ``link`` the page's address for this view (``links.view_url``), printed last as "View: ...".
    """
    zone = timefmt_zone(tz)
    a = view_agent
    r = headline(a)
    who = f"{person(a.get('display_name') or '', a.get('user') or '')} on {a.get('host') or '?'}"
    where_from = ", ".join(x for x in (f"site {a['site']}" if a.get("site") else "", f"agent {a.get('agent_id')}") if x)
    lines = [f"cxpulse: {who} ({where_from})", f"When: {_fmt_span(window['since_us'], window['until_us'], zone)}"]
    if r["score"] is not None:
        s = f"Score: {r['score']:.0f}/100 {r['label']}"
        if r["limiting"]:  # "app responsiveness (apps)": the glossary's words, then the component's name
            s += f", limited by {_plain_component(r['limiting'])}"
        if r["score_now"] is not None and r["score_now"] != r["score"]:
            s += f" (now {r['score_now']:.0f} {r['label_now']})"
        lines.append(s)
    elif r["source"] == "figures":
        lines.append("Score: not computed for this window (figures below are as measured)")
    if not a.get("targets") and not a.get("apps") and not a.get("wifi"):
        lines.append("What was wrong: no samples in this window (agent offline or not yet reporting)")
    elif r["sentence"]:
        lines.append(f"What was wrong: {r['sentence']}")
    else:
        lines.append("What was wrong: nothing abnormal measured")
    if r["domain"] or r["where"]:
        conf = r["confidence"]
        conf_s = (
            f", confidence {conf:.0%}"
            if isinstance(conf, float) and conf <= 1
            else f", confidence {conf}"
            if conf
            else ""
        )
        span = ""
        if r.get("fault_start_us") and r.get("fault_end_us"):
            span = f", {_hhmm(r['fault_start_us'], zone)}-{_hhmm(r['fault_end_us'], zone)}"
        what = r.get("domain_label") or r["domain"] or r["where"]
        lines.append(f"Where: {what}{span}{conf_s}")
    for f in (r.get("faults") or [])[1:4]:
        lines.append(
            f"Also degraded: {_hhmm(f.get('start_us'), zone)}-{_hhmm(f.get('end_us'), zone)} "
            f"{f.get('label') or f.get('domain')}: {f.get('evidence') or ''}".rstrip(": ")
        )
    inc = _incident_for(r)
    if inc is not None:
        start = _hhmm(_first(inc, "start_us", "since_us", "opened_us"), zone)
        state = "open" if inc.get("end_us") is None else f"closed {_hhmm(inc.get('end_us'), zone)}"
        n = inc.get("agents")
        n_s = f", {len(n)} agents" if isinstance(n, list) else f", {n} agents" if isinstance(n, int) else ""
        lines.append(f"Incident: {inc.get('id', '?')} {incident_scope(inc)} since {start} ({state}{n_s})")
    if r["evidence"]:
        lines.append("Evidence:")
        lines.extend(f"  - {e}" for e in r["evidence"][:6])
    others = others_line(r.get("others"))
    if others:
        lines.append(f"Others at the same time: {others}")
    groups = a.get("event_groups")
    if groups is None and a.get("events"):  # a view made without report._view: grouped here
        groups = group_events([dict(e) for e in a["events"]], window["since_us"], window["until_us"])
    if groups:
        n = sum(g["events"] for g in groups)
        top = "; ".join(f"{g['place']} {g['events']} ({_secs(g['seconds'])}, worst {g['worst']})" for g in groups[:3])
        more = f"; {len(groups) - 3} more place{'s' if len(groups) != 4 else ''}" if len(groups) > 3 else ""
        lines.append(f"Events: {n}, by place, the most felt first: {top}{more}")
    lines.append(f"Next step: {r['next_step']}")
    if link:  # links.view_url: the page for this person, window and zone
        lines.append(f"View: {link}")
    return "\n".join(lines) + "\n"
