"""The lookup API's operations, each declared once: method, path, role, parameters, summary, answers.
``api.create_app`` binds a handler to each and guards it with the declared role; ``openapi``
builds the served OpenAPI document from the same declarations, so what runs and what is documented agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from .chart import DEFAULT_POINTS, MAX_POINTS
from .params import Param

__all__ = ["API_VERSION", "OPERATIONS", "Operation"]

API_VERSION = "1"


@dataclass(frozen=True, eq=False)  # one object per route: compared and hashed by identity
class Operation:
    """One route of the API as a client sees it.

    ``role``: the least role that may call it (``helpdesk`` or ``admin``), None for no key at all.
    ``link_as``: a person's operation (``{agent_id}`` in its path), linked from lists under this name.
    ``agent_ids_at``: a list of people, with the JSON pointer to its first person's agent_id.
    ``request_body``: the OpenAPI requestBody; ``tags``: its tags.
    """

    method: str
    path: str
    operation_id: str
    summary: str
    responses: dict
    params: tuple[Param, ...] = ()
    description: str = ""
    role: str | None = "helpdesk"
    link_as: str = ""
    agent_ids_at: str = ""
    request_body: dict | None = None
    tags: tuple[str, ...] = ()


def _ref(kind: str, name: str) -> dict:
    return {"$ref": f"#/components/{kind}/{name}"}


def _ok(desc: str, schema: dict, media: str = "application/json") -> dict:
    return {
        "200": {"description": desc, "content": {media: {"schema": schema}}},
        "400": _ref("responses", "BadRequest"),
    }


def _with_404(r: dict) -> dict:
    return {**r, "404": _ref("responses", "NotFound")}


def _error(desc: str) -> dict:
    return {"description": desc, "content": {"application/json": {"schema": _ref("schemas", "Error")}}}


def _object(desc: str, code: str = "200") -> dict:
    return {code: {"description": desc, "content": {"application/json": {"schema": {"type": "object"}}}}}


# - parameters -

AGENT_ID = Param("agent_id", "The agent's id, exactly (search first to find it).", where="path", example="agent-7f3a")
SINCE = Param("since", "Start: ISO 8601 (UTC if no zone), epoch seconds, 'now' or an offset like '-24h'.")
UNTIL = Param("until", "End (exclusive), same forms; default now.")
WINDOW = Param("window", "Length when since is not given: 900, 15m, 1h, 24h, 7d; default 1h.")
RANGE = (SINCE, UNTIL, WINDOW)  # read together by params.time_range
POINTS = Param(
    "points",
    "At most this many buckets per series (the server picks a readable bucket width).",
    {"type": "integer", "minimum": 10, "maximum": MAX_POINTS, "default": DEFAULT_POINTS},
)
TZ = Param("tz", "IANA time zone for times in the ticket text (default UTC).")
Q = Param("q", "Text to look for (empty: all agents).", {"type": "string", "maxLength": 256})
SEARCH_LIMIT = Param("limit", "At most this many.", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50})
WITH_TIMELINE = Param("timeline", "Include the timeline (default true).", {"type": "boolean", "default": True})
FORMAT = Param("format", 'text (default) or json ({"text": ...}).', {"type": "string", "enum": ["text", "json"]})
FLEET_WINDOW = Param("window", "How far back 'now' looks (default 15m, at most 24h).")
FLEET_LIMIT = Param("limit", "Worst agents listed.", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 20})
STATE = Param("state", "open (default) or all.", {"type": "string", "enum": ["open", "all"]})
INCIDENTS_WINDOW = Param("window", "How far back (default 15m, at most 24h).")
TARGET = Param("target", "Webhook name (default: all).")

# - operations -

SEARCH = Operation(
    "GET",
    "/api/v1/agents",
    "searchAgents",
    "Search agents by user, host, agent id or site",
    description="Partial and case-insensitive; most recently seen first.",
    params=(Q, SEARCH_LIMIT),
    agent_ids_at="/agents/0/agent_id",
    responses=_ok(
        "Matching agents",
        {
            "type": "object",
            "required": ["agents"],
            "properties": {
                "query": {"type": "string"},
                "agents": {"type": "array", "items": _ref("schemas", "AgentBrief")},
            },
        },
    ),
)
AGENT = Operation(
    "GET",
    "/api/v1/agents/{agent_id}",
    "getAgentExperience",
    "One agent's experience over a time range",
    description="The lookup view (per hop, apps, voice, device, Wi-Fi, paths, events, score section when "
    "scored), its headline, the ticket text and the timeline.",
    params=(AGENT_ID, *RANGE, POINTS, TZ, WITH_TIMELINE),
    link_as="OpenView",
    responses=_with_404(_ok("The agent's experience", _ref("schemas", "AgentExperience"))),
)
TIMELINE = Operation(
    "GET",
    "/api/v1/agents/{agent_id}/timeline",
    "getAgentTimeline",
    "Downsampled series for a chart, zoomable to the second",
    params=(AGENT_ID, *RANGE, POINTS),
    link_as="OpenTimeline",
    responses=_with_404(_ok("Series per bucket", _ref("schemas", "Timeline"))),
)
TICKET = Operation(
    "GET",
    "/api/v1/agents/{agent_id}/ticket",
    "getTicketSummary",
    "The ticket summary as plain text",
    description="Same text as the page's copy button and `cxpulse lookup`.",
    params=(AGENT_ID, *RANGE, TZ, FORMAT),
    link_as="OpenTicket",
    responses=_with_404(
        {
            "200": {
                "description": "Ticket text",
                "content": {
                    "text/plain": {"schema": {"type": "string"}},
                    "application/json": {"schema": {"type": "object", "properties": {"text": {"type": "string"}}}},
                },
            },
            "400": _ref("responses", "BadRequest"),
        }
    ),
)
GLOSSARY = Operation(
    "GET",
    "/api/v1/glossary",
    "getGlossary",
    "Every term the page, ticket and CLI show, in plain words with its unit",
    description="The page's tooltips; docs/glossary.md is rendered from the same list.",
    responses=_ok(
        "Terms, event kinds, places and severities",
        {
            "type": "object",
            "properties": {
                "terms": {"type": "array", "items": {"type": "object"}},
                "events": {"type": "array", "items": {"type": "object"}},
                "places": {"type": "array", "items": {"type": "object"}},
                "severities": {"type": "array", "items": {"type": "object"}},
            },
        },
    ),
)
FLEET = Operation(
    "GET",
    "/api/v1/fleet",
    "getFleet",
    "Worst agents now, by site, by app, open incidents",
    params=(FLEET_WINDOW, FLEET_LIMIT),
    agent_ids_at="/worst/0/agent_id",
    responses=_ok("The fleet", _ref("schemas", "Fleet")),
)
INCIDENTS = Operation(
    "GET",
    "/api/v1/incidents",
    "listIncidents",
    "Platform and site incidents",
    params=(STATE, INCIDENTS_WINDOW),
    responses=_ok(
        "Incidents", {"type": "object", "properties": {"incidents": {"type": "array", "items": {"type": "object"}}}}
    ),
)
DELIVERIES = Operation(
    "GET",
    "/api/v1/alerts/deliveries",
    "listAlertDeliveries",
    "Webhook targets and the recent delivery log",
    role="admin",
    responses={
        "200": {
            "description": "Delivery log, newest last",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "configured": {"type": "boolean"},
                            "targets": {"type": "array"},
                            "deliveries": {"type": "array"},
                        },
                    }
                }
            },
        }
    },
)
TEST_ALERT = Operation(
    "POST",
    "/api/v1/alerts/test",
    "sendTestAlert",
    "Queue a test alert to every webhook (or one)",
    role="admin",
    params=(TARGET,),
    responses={
        **_object("Queued", "202"),
        "404": _ref("responses", "NotFound"),
        "409": _error("No webhooks configured"),
        "429": _error("Test sends are rate limited"),
    },
)
HEALTH = Operation("GET", "/api/v1/health", "health", "Liveness", role=None, responses=_object("Up"))
OPENAPI = Operation(
    "GET", "/api/v1/openapi.json", "openapi", "This document", role=None, responses=_object("OpenAPI 3.1")
)
METRICS = Operation(
    "GET",
    "/metrics",
    "metrics",
    "Prometheus metrics (text exposition format)",
    responses={"200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}},
)

# The document lists them in this order, the admin routes (admin_routes.ADMIN_OPERATIONS) after them.
OPERATIONS = (
    SEARCH,
    AGENT,
    TIMELINE,
    TICKET,
    GLOSSARY,
    FLEET,
    INCIDENTS,
    DELIVERIES,
    TEST_ALERT,
    HEALTH,
    OPENAPI,
    METRICS,
)
