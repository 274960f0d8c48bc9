"""The OpenAPI 3.1 document of the lookup API, built from the routes' declarations (``routes``, ``admin_routes``).
Each operation is declared once; this module adds the shared schemas and answers, the role each
route needs and the links from lists of people to a person's views (openapi-spec-validator checks it).
"""

from __future__ import annotations

import copy

from .admin_routes import admin_operations
from .routes import API_VERSION, OPERATIONS, Operation

__all__ = ["openapi_document"]

# Schemas the operations refer to by name ("#/components/schemas/...").
_NULLABLE_NUM = {"type": ["number", "null"]}
_SERIES = {"type": "array", "items": _NULLABLE_NUM}
_SCHEMAS = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["status", "message"],
                "properties": {"status": {"type": "integer"}, "message": {"type": "string"}},
            }
        },
    },
    "AgentBrief": {
        "type": "object",
        "required": ["agent_id", "user", "host", "site", "last_seen_us"],
        "properties": {
            "agent_id": {"type": "string"},
            "user": {"type": "string"},
            "display_name": {"type": "string", "description": "the user's full name from the desk's directory"},
            "host": {"type": "string"},
            "site": {"type": "string"},
            "os": {"type": "string"},
            "agent_version": {"type": "string"},
            "first_seen_us": {"type": "integer"},
            "last_seen_us": {"type": "integer"},
        },
    },
    "Window": {
        "type": "object",
        "required": ["since_us", "until_us"],
        "properties": {
            "since_us": {"type": "integer"},
            "until_us": {"type": "integer"},
            "seconds": {"type": "integer"},
        },
    },
    "Event": {
        "type": "object",
        "required": ["kind", "target", "start_us", "severity"],
        "properties": {
            "id": {"type": "string"},
            "kind": {"type": "string"},
            "target": {"type": "string"},
            "start_us": {"type": "integer"},
            "end_us": {"type": ["integer", "null"]},
            "duration_s": _NULLABLE_NUM,
            "severity": {"type": "integer", "enum": [1, 2, 3]},
            "evidence": {"type": "string"},
        },
    },
    "Headline": {
        "type": "object",
        "description": "Score, what was wrong, where and the next step, as one reading "
        "of the view (score section when present, else the raw figures: source says which).",
        "properties": {
            "score": _NULLABLE_NUM,
            "label": {"type": ["string", "null"]},
            "score_now": _NULLABLE_NUM,
            "label_now": {"type": ["string", "null"]},
            "limiting": {"type": ["string", "null"]},
            "domain": {"type": ["string", "null"]},
            "confidence": {},
            "where": {},
            "sentence": {"type": ["string", "null"]},
            "evidence": {"type": "array", "items": {"type": "string"}},
            "incidents": {"type": "array", "items": {"type": "object"}},
            "next_step": {"type": "string"},
            "source": {"type": "string", "enum": ["score", "figures"]},
        },
    },
    "AgentView": {
        "type": "object",
        "description": "One agent of the lookup view (cxpulse lookup --json): targets "
        "(per hop RTT, loss, jitter), apps, voice, device, wifi, paths, events, and score when scored.",
        "required": ["agent_id", "targets", "events"],
        "properties": {
            "agent_id": {"type": "string"},
            "targets": {"type": "array"},
            "apps": {"type": "array"},
            "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
            "score": {"type": "object"},
        },
        "additionalProperties": True,
    },
    "HopSeries": {
        "type": "object",
        "required": ["target", "rtt_avg_ms", "loss_pct", "jitter_ms"],
        "properties": {
            "target": {"type": "string"},
            "hop": {"type": ["integer", "null"]},
            "addresses": {"type": "array", "items": {"type": "string"}},
            "samples": {"type": "array", "items": {"type": "integer"}},
            "rtt_avg_ms": _SERIES,
            "rtt_min_ms": _SERIES,
            "rtt_max_ms": _SERIES,
            "loss_pct": _SERIES,
            "jitter_ms": {**_SERIES, "description": "mean |change of RTT| between consecutive answered samples"},
        },
    },
    "Timeline": {
        "type": "object",
        "required": ["start_us", "step_s", "buckets", "hops", "events"],
        "description": "Bucket i covers [start_us + i*step_s, start_us + (i+1)*step_s); step_s 1 is the raw second.",
        "properties": {
            "agent_id": {"type": "string"},
            "since_us": {"type": "integer"},
            "until_us": {"type": "integer"},
            "start_us": {"type": "integer"},
            "step_s": {"type": "integer"},
            "buckets": {"type": "integer"},
            "hops": {"type": "array", "items": {"$ref": "#/components/schemas/HopSeries"}},
            "wifi": {
                "type": ["object", "null"],
                "properties": {"rssi_avg_dbm": _SERIES, "rssi_min_dbm": _SERIES, "connected_pct": _SERIES},
            },
            "score": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "t_us": {"type": "integer"},
                        "score": {"type": "number"},
                        "label": {},
                        "limiting": {},
                    },
                },
            },
            "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
        },
    },
    "AgentExperience": {
        "type": "object",
        "required": ["window", "agent", "headline", "ticket"],
        "properties": {
            "window": {"$ref": "#/components/schemas/Window"},
            "agent": {"$ref": "#/components/schemas/AgentView"},
            "headline": {"$ref": "#/components/schemas/Headline"},
            "ticket": {"type": "string"},
            "score_timeline": {
                "type": "array",
                "description": "Per-minute scores (empty until scored).",
                "items": {"type": "object"},
            },
            "timeline": {"$ref": "#/components/schemas/Timeline"},
        },
    },
    "FleetAgent": {
        "allOf": [
            {"$ref": "#/components/schemas/AgentBrief"},
            {
                "type": "object",
                "properties": {
                    "score": _NULLABLE_NUM,
                    "label": {"type": "string"},
                    "limiting": {},
                    "fault_domain": {},
                    "fault_label": {},
                    "sentence": {},
                    "next_step": {"type": "string"},
                    "events": {"type": "integer"},
                    "loss_pct_max": _NULLABLE_NUM,
                    "rtt_p95_ms_max": _NULLABLE_NUM,
                },
            },
        ]
    },
    "Fleet": {
        "type": "object",
        "required": ["window", "worst", "sites", "apps", "incidents"],
        "properties": {
            "generated_us": {"type": "integer"},
            "took_ms": {"type": "number"},
            "window": {"$ref": "#/components/schemas/Window"},
            "agents_total": {"type": "integer"},
            "agents_active": {"type": "integer"},
            "score_available": {"type": "boolean"},
            "worst": {"type": "array", "items": {"$ref": "#/components/schemas/FleetAgent"}},
            "sites": {"type": "array", "items": {"type": "object"}},
            "apps": {"type": "array", "items": {"type": "object"}},
            "incidents": {
                "type": "object",
                "properties": {
                    "open": {"type": "array", "items": {"type": "object"}},
                    "recent": {"type": "array", "items": {"type": "object"}},
                },
            },
            "silent": {"type": "array", "items": {"$ref": "#/components/schemas/AgentBrief"}},
        },
    },
}
# Answers shared by many operations ("#/components/responses/...").
_RESPONSES = {
    "BadRequest": {
        "description": "Bad input; the message says which parameter and what it accepts.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    },
    "NotFound": {
        "description": "No such agent.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    },
    "Unauthorized": {
        "description": "No API key, or an unknown or revoked one.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    },
    "Forbidden": {
        "description": "The key's role may not use this route (helpdesk on an admin route).",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    },
    "AuditUnavailable": {
        "description": "The audit log or the key registry cannot be reached: no data.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    },
}
_KEYED = {
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "403": {"$ref": "#/components/responses/Forbidden"},
    "503": {"$ref": "#/components/responses/AuditUnavailable"},
}
_INFO = {
    "title": "cxpulse lookup API",
    "version": API_VERSION,
    "description": "What a contact-center agent felt on the network, when, and where the fault lies. "
    "Times are microseconds since the Unix epoch (UTC). Every route but health and this "
    "document needs an API key (roles helpdesk and admin); every lookup of a person is "
    "written to the audit log. See docs/api.md.",
}
_SECURITY_SCHEMES = {
    "bearerKey": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <API key>"},
    "headerKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}


def _operation(op: Operation, links: dict) -> dict:
    """One declared operation as OpenAPI; ``links``: name -> operationId of every person's operation."""
    out: dict = {"operationId": op.operation_id, "summary": op.summary}
    if op.tags:
        out["tags"] = list(op.tags)
    if op.description:
        out["description"] = op.description
    if op.params:
        out["parameters"] = [p.spec() for p in op.params]
    if op.request_body is not None:
        out["requestBody"] = op.request_body
    out["responses"] = op.responses
    if op.agent_ids_at:
        # Which answer feeds which request (a search's first agent opens its view), for clients and
        # for the stateful fuzz run (tests/web/test_fuzz_api.py) that follows them.
        out["responses"] = {
            **op.responses,
            "200": {
                **op.responses["200"],
                "links": {
                    name: {"operationId": target, "parameters": {"agent_id": f"$response.body#{op.agent_ids_at}"}}
                    for name, target in links.items()
                },
            },
        }
    return _with_role(out, op.role)


def _with_role(op: dict, role: str | None) -> dict:
    """The operation with the key it needs: none (security []), else its role and the answers a key can get."""
    if role is None:
        return {**op, "security": []}
    description = (
        op.get("description", "") + "\n\nRole: " + ("admin." if role == "admin" else "helpdesk or admin.")
    ).strip()
    return {**op, "description": description, "responses": {**op["responses"], **_KEYED}}


def openapi_document() -> dict:
    """OpenAPI 3.1 for /api/v1: the declared operations, then the admin ones (``admin_routes``), all keyed by role."""
    operations = (*OPERATIONS, *admin_operations())
    links = {op.link_as: op.operation_id for op in operations if op.link_as}
    paths: dict[str, dict] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, links)
    return copy.deepcopy(
        {
            "openapi": "3.1.0",
            "info": _INFO,
            "paths": paths,
            "security": [{"bearerKey": []}, {"headerKey": []}],
            "components": {"schemas": _SCHEMAS, "responses": _RESPONSES, "securitySchemes": _SECURITY_SCHEMES},
        }
    )
