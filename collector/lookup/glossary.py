"""Every term the page, the ticket and the CLI show, in helpdesk words with its unit.
One list: ``docs/glossary.md`` is rendered from it (a test keeps it in step), the page's tooltips fetch it
(``GET /api/v1/glossary``); event kinds come from ``words``, the one mapping of kinds to words, never restated here.
"""

from __future__ import annotations

from .words import EVENT_EXPLAINED, EVENT_WORDS, PLACE_WORDS, SEVERITY_WORDS

__all__ = ["TERMS", "glossary", "markdown"]

# (term as shown, plain words, unit, what it means for the person at the desk). ``term`` is also
# what the page looks for in its text to add the tooltip, so keep it as the views print it.
TERMS: list[tuple[str, str, str, str]] = [
    (
        "score",
        "experience score",
        "0-100",
        "How the desk's calls and apps felt: 70-100 good, 30-69 fair, 0-29 poor. It is the weakest component's score.",
    ),
    (
        "limited by",
        "what pulled the score down",
        "",
        "The component with the lowest score; the score is that component's score.",
    ),
    (
        "voice",
        "call quality",
        "score 0-100",
        "How a call on this path would sound, from delay, jitter and loss (the E-model, R).",
    ),
    ("apps", "app responsiveness", "score 0-100", "How quickly the checked apps (CRM, CCaaS) answered, as Apdex."),
    (
        "wifi",
        "Wi-Fi health",
        "score 0-100",
        "Signal strength, disconnects and access-point changes of the desk's Wi-Fi.",
    ),
    (
        "stability",
        "steadiness",
        "score 0-100",
        "How much of the window was spent inside short disruptions (delay spikes, lost packets, drops): 70 when "
        "2 % of it was (weighted by severity), 30 at 10 %, 0 at 40 %; 'stability 3' means about a third of the window.",
    ),
    (
        "severity-weighted s",
        "seconds of disruption, weighted",
        "seconds",
        "Seconds inside disruptions, weighted: a critical second counts 1, a major 0.5, a minor 0.25; "
        "overlapping events count once, at the highest.",
    ),
    (
        "Apdex",
        "share of app answers that felt fast",
        "0.00-1.00",
        "1.00: every check answered within T; a check within 4 T counts half; slower or failed counts zero.",
    ),
    (
        "T",
        "target time for an app answer",
        "ms",
        "The answer time under which an app feels fast ('T 500 ms'); set per app.",
    ),
    (
        "R",
        "call-quality rating",
        "0-100",
        "The E-model rating of a call: 80+ clear, 70 some users unhappy, 60 many unhappy, under 50 poor.",
    ),
    (
        "MOS",
        "call quality as people rate it",
        "1-5",
        "Mean opinion score computed from R: 4.3 is excellent, 3.6 fair, under 3.1 poor.",
    ),
    ("RTT", "round-trip time (delay)", "ms", "Time for a packet to reach a hop and come back."),
    ("median", "typical delay", "ms", "Half the round trips were faster than this."),
    ("p95", "delay on a bad second", "ms", "95 % of round trips were faster than this; the slowest 5 % are slower."),
    (
        "jitter",
        "uneven delay",
        "ms",
        "How much the delay changes from packet to packet (RFC 3550); voice turns robotic above ~30 ms.",
    ),
    (
        "|dRTT|",
        "average change in delay",
        "ms",
        "The mean difference between one round trip and the next (what mtr calls jitter).",
    ),
    ("loss", "packets lost", "%", "Share of probes that never came back; calls suffer above ~1 %."),
    ("loss s", "seconds with loss", "seconds", "Seconds in which at least one probe was lost."),
    (
        "RSSI",
        "Wi-Fi signal strength",
        "dBm",
        "Closer to 0 is stronger: -50 excellent, -67 fine for calls, below -75 weak.",
    ),
    (
        "SNR",
        "Wi-Fi signal over noise",
        "dB",
        "How far the signal stands above the background noise; under 20 dB is poor.",
    ),
    (
        "hop",
        "a step on the path",
        "",
        "Hop 1 is the desk's router (gateway), then the ISP, then the internet and the platform.",
    ),
    ("gateway", "the desk's router", "", "The home or office router the desk sends everything through (hop 1)."),
    ("dns", "name lookup time", "ms", "Time to turn a server's name into its address."),
    ("tcp", "connection time", "ms", "Time to open a connection to the app's server."),
    ("tls", "secure-connection time", "ms", "Time to set up encryption with the app's server."),
    (
        "ttfb",
        "wait for the first answer",
        "ms",
        "Time from asking the app to the first byte of its answer: the server's own slowness.",
    ),
    ("avail %", "checks that worked", "%", "Share of app checks that got a good answer."),
    (
        "confidence",
        "how sure the verdict is",
        "%",
        "How strongly the measurements point at this place rather than another.",
    ),
    (
        "event",
        "micro-disruption",
        "",
        "A short problem the desk measured (seconds to minutes): see the event kinds below.",
    ),
]


def glossary() -> dict:
    """The terms, the event kinds (from ``words``), the places and the severities, as data."""
    return {
        "terms": [{"term": t, "plain": p, "unit": u, "meaning": m} for t, p, u, m in TERMS],
        "events": [{"kind": k, "plain": EVENT_WORDS[k], "meaning": EVENT_EXPLAINED.get(k, "")} for k in EVENT_WORDS],
        "places": [{"key": k, "plain": v} for k, v in PLACE_WORDS.items()],
        "severities": [{"level": k, "plain": v} for k, v in SEVERITY_WORDS.items()],
    }


def markdown() -> str:
    """``docs/glossary.md``: the same entries as a page a helpdesk person reads."""
    g = glossary()
    out = [
        "# Glossary",
        "",
        "Every term the helpdesk page, the ticket and `cxpulse lookup` show, in plain words with its unit.",
        "Generated from `collector/lookup/glossary.py` and `collector/lookup/words.py` (the page's tooltips",
        "read the same list); `tests/web/test_glossary.py` keeps this file in step.",
        "",
        "## Figures and scores",
        "",
        "| Shown as | In plain words | Unit | What it means |",
        "|---|---|---|---|",
    ]
    out += [f"| `{t['term']}` | {t['plain']} | {t['unit'] or '-'} | {t['meaning']} |" for t in g["terms"]]
    out += [
        "",
        "## Events (micro-disruptions)",
        "",
        "| Kind (in the API) | Shown as | What it means |",
        "|---|---|---|",
    ]
    out += [f"| `{e['kind']}` | {e['plain']} | {e['meaning']} |" for e in g["events"]]
    out += ["", "## Places", "", "| Key | Shown as |", "|---|---|"]
    out += [f"| `{p['key']}` | {p['plain']} |" for p in g["places"]]
    out += [
        "",
        "A platform (an app's place) is shown by its name, e.g. Salesforce or Genesys Cloud.",
        "",
        "## Severities",
        "",
        "| Level | Shown as | On the chart |",
        "|---|---|---|",
    ]
    marks = {1: "short yellow mark", 2: "medium orange mark", 3: "tall vermillion mark"}
    out += [f"| {s['level']} | {s['plain']} | {marks.get(s['level'], '')} |" for s in g["severities"]]
    out += [
        "",
        "## On the chart",
        "",
        "- Lines: one colour per hop (blues, green, purple, greys); event marks use only yellow, orange and "
        "vermillion.",
        '- Hatched grey with "no data": no samples there, the agent was not reporting (or that part of the window '
        "is still to come).",
        "- Keys: Tab moves between controls and event rows, Enter or Space opens one; on the chart, + and - zoom,",
        "  the arrows move, Escape shows the whole window.",
        "",
    ]
    return "\n".join(out)
