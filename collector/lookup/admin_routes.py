"""The admin routes' operations (keys, tokens, enrolled agents, audit log, central config), declared once.
``admin_api`` binds a handler to each behind its role; ``openapi`` documents them like ``routes.OPERATIONS``.
"""

from __future__ import annotations

import importlib.util

from ..security.registry import MAX_TOKEN_TTL_S, MAX_TOKEN_USES, MIN_TOKEN_TTL_S
from .access import ROLE_RANK
from .params import Param
from .routes import Operation

__all__ = ["ADMIN_OPERATIONS", "admin_operations", "central_config_available"]

_TAGS = ("admin",)
_OBJ = {"type": "object"}
_BAD_REQUEST = {"$ref": "#/components/responses/BadRequest"}
_NOT_FOUND = {"404": {"$ref": "#/components/responses/NotFound"}}


def _answer(code: str, desc: str, schema: dict | None = None) -> dict:
    return {code: {"description": desc, "content": {"application/json": {"schema": schema or _OBJ}}}}


def _error(desc: str) -> dict:
    return {"description": desc, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _created(schema: dict, revoke: Operation, id_name: str) -> dict:
    """201 with what was made; the id in its answer revokes it (a link the stateful fuzz run follows)."""
    created = _answer("201", "Created", schema)["201"]
    link = {"operationId": revoke.operation_id, "parameters": {id_name: f"$response.body#/info/{id_name}"}}
    return {"201": {**created, "links": {"Revoke": link}}, "400": _BAD_REQUEST}


def central_config_available() -> bool:
    """Whether the hardening work's central configuration module is installed in this build."""
    try:
        return importlib.util.find_spec("cxpulse.collector.config.central") is not None
    except ModuleNotFoundError:
        return False


# - parameters -

_ID = {"type": "string", "maxLength": 64}
KEY_ID = Param("key_id", "The key's id (from the list).", _ID, where="path")
TOKEN_ID = Param("token_id", "The token's id (from the list).", _ID, where="path")
AGENT_ID = Param("agent_id", "The agent's id.", _ID, where="path")
AUDIT_SINCE = Param(
    "since", "Start (same forms as elsewhere: ISO 8601, epoch seconds, now, -24h); default: the beginning."
)
AUDIT_UNTIL = Param("until", "End (exclusive); default: none.")
AUDIT_ACTOR = Param(
    "actor", "Only this actor, e.g. key:<key_id> or cli:<os user>.", {"type": "string", "maxLength": 256}
)
AUDIT_SUBJECT = Param("subject", "Only this subject, e.g. an agent id.", {"type": "string", "maxLength": 256})
AUDIT_LIMIT = Param(
    "limit",
    "At most this many entries, oldest first.",
    {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1000},
)

# - schemas -

_KEY_INFO = {
    "type": "object",
    "required": ["key_id", "role", "name"],
    "properties": {
        "key_id": {"type": "string"},
        "role": {"type": "string", "enum": list(ROLE_RANK)},
        "name": {"type": "string"},
        "created_us": {"type": "integer"},
        "revoked_us": {"type": ["integer", "null"]},
        "pseudonymize": {"type": "boolean"},
        "sites": {
            "type": "array",
            "items": {"type": "string"},
            "description": "The sites this key sees; empty: every site.",
        },
    },
}
_REVOKED = {
    **_answer(
        "200", "Revoked", {"type": "object", "required": ["revoked"], "properties": {"revoked": {"type": "string"}}}
    ),
    **_NOT_FOUND,
}
_AUDIT_ENTRY = {
    "type": "object",
    "required": ["ts_us", "actor", "action"],
    "properties": {
        "id": {"type": "integer"},
        "ts_us": {"type": "integer"},
        "actor": {"type": "string"},
        "actor_name": {"type": "string"},
        "action": {"type": "string"},
        "subject": {"type": "string"},
        "remote": {"type": "string"},
        "detail": {"type": "string"},
    },
}
_MAX_CONFIG = 262144  # central.MAX_TEXT, not imported: that module is optional in a build


def _list_of(name: str, desc: str, items: dict) -> dict:
    return _answer(
        "200", desc, {"type": "object", "required": [name], "properties": {name: {"type": "array", "items": items}}}
    )


# - operations -

LIST_KEYS = Operation(
    "GET",
    "/api/v1/admin/keys",
    "listApiKeys",
    "API keys (never their secrets)",
    role="admin",
    tags=_TAGS,
    responses=_list_of("keys", "Keys", _KEY_INFO),
)
REVOKE_KEY = Operation(
    "POST",
    "/api/v1/admin/keys/{key_id}/revoke",
    "revokeApiKey",
    "Revoke an API key at once",
    description="The last active admin key cannot be revoked (409): create another admin key first.",
    role="admin",
    tags=_TAGS,
    params=(KEY_ID,),
    responses={**_REVOKED, "409": _error("The last active admin key")},
)
CREATE_KEY = Operation(
    "POST",
    "/api/v1/admin/keys",
    "createApiKey",
    "Create an API key; the secret is in this answer only",
    role="admin",
    tags=_TAGS,
    request_body={
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["role", "name"],
                    "properties": {
                        "role": {"type": "string", "enum": list(ROLE_RANK)},
                        "name": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 100,
                            "description": "Who holds it (shown in the audit log).",
                        },
                        "pseudonymize": {
                            "type": "boolean",
                            "default": False,
                            "description": "This key sees pseudonyms instead of user names in the "
                            "fleet, incidents and site searches.",
                        },
                        "sites": {
                            "type": "array",
                            "maxItems": 100,
                            "default": [],
                            "items": {"type": "string", "minLength": 1, "maxLength": 200},
                            "description": "Only these sites' desks are visible through this key (search, "
                            "views, fleet, incidents); empty: every site. A key with "
                            "sites must have the helpdesk role.",
                        },
                    },
                }
            }
        },
    },
    responses=_created(
        {
            "type": "object",
            "required": ["key", "info"],
            "properties": {"key": {"type": "string"}, "info": _KEY_INFO, "note": {"type": "string"}},
        },
        REVOKE_KEY,
        "key_id",
    ),
)
LIST_TOKENS = Operation(
    "GET",
    "/api/v1/admin/tokens",
    "listTokens",
    "Enrollment tokens (never their secrets)",
    role="admin",
    tags=_TAGS,
    responses=_list_of("tokens", "Tokens", _OBJ),
)
REVOKE_TOKEN = Operation(
    "POST",
    "/api/v1/admin/tokens/{token_id}/revoke",
    "revokeToken",
    "Revoke an enrollment token",
    role="admin",
    tags=_TAGS,
    params=(TOKEN_ID,),
    responses=_REVOKED,
)
CREATE_TOKEN = Operation(
    "POST",
    "/api/v1/admin/tokens",
    "createToken",
    "Create an enrollment token; the secret is in this answer only",
    role="admin",
    tags=_TAGS,
    request_body={
        "required": False,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "site": {
                            "type": "string",
                            "maxLength": 200,
                            "description": "Site label the enrolled agents get.",
                        },
                        "uses": {"type": "integer", "minimum": 1, "maximum": MAX_TOKEN_USES, "default": 1},
                        "ttl_s": {
                            "type": "integer",
                            "minimum": MIN_TOKEN_TTL_S,
                            "maximum": MAX_TOKEN_TTL_S,
                            "default": 604800,
                        },
                        "note": {"type": "string", "maxLength": 500},
                    },
                }
            }
        },
    },
    responses=_created(
        {
            "type": "object",
            "required": ["token", "info"],
            "properties": {"token": {"type": "string"}, "info": _OBJ, "note": {"type": "string"}},
        },
        REVOKE_TOKEN,
        "token_id",
    ),
)
LIST_AGENTS = Operation(
    "GET",
    "/api/v1/admin/agents",
    "listEnrolledAgents",
    "Enrolled agents and their revocation state",
    role="admin",
    tags=_TAGS,
    responses=_list_of("agents", "Agents", _OBJ),
)
REVOKE_AGENT = Operation(
    "POST",
    "/api/v1/admin/agents/{agent_id}/revoke",
    "revokeAgent",
    "Revoke an agent: its open stream is closed, it can no longer send",
    role="admin",
    tags=_TAGS,
    params=(AGENT_ID,),
    responses=_REVOKED,
)
AUDIT = Operation(
    "GET",
    "/api/v1/admin/audit",
    "queryAudit",
    "The audit log: who looked up whom, when, from where; admin changes",
    role="admin",
    tags=_TAGS,
    params=(AUDIT_SINCE, AUDIT_UNTIL, AUDIT_ACTOR, AUDIT_SUBJECT, AUDIT_LIMIT),
    responses={**_list_of("entries", "Entries, oldest first", _AUDIT_ENTRY), "400": _BAD_REQUEST},
)
GET_CONFIG = Operation(
    "GET",
    "/api/v1/admin/config",
    "getCentralConfig",
    "The newest central configuration (TOML) and its version",
    role="admin",
    tags=_TAGS,
    responses=_answer(
        "200",
        "Version 0 and empty text: none stored yet",
        {
            "type": "object",
            "required": ["version", "toml"],
            "properties": {"version": {"type": "integer"}, "toml": {"type": "string"}},
        },
    ),
)
PUT_CONFIG = Operation(
    "PUT",
    "/api/v1/admin/config",
    "putCentralConfig",
    "Store a new central configuration; collectors push it to their agents within seconds",
    description="Checked before it is stored (the same checks agents run); the same text again keeps "
    "its version. See collector/config/collector.example.toml.",
    role="admin",
    tags=_TAGS,
    request_body={
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["toml"],
                    "properties": {"toml": {"type": "string", "maxLength": _MAX_CONFIG}},
                }
            },
            "text/plain": {"schema": {"type": "string", "maxLength": _MAX_CONFIG}},
        },
    },
    responses={
        **_answer(
            "200",
            "Stored (or unchanged)",
            {"type": "object", "required": ["version"], "properties": {"version": {"type": "integer"}}},
        ),
        "400": _BAD_REQUEST,
        "413": _error("Too large"),
    },
)
# Served only when the central configuration module is in the build (``central_config_available``).
CENTRAL_CONFIG = (GET_CONFIG, PUT_CONFIG)

# The document lists them in this order, after ``routes.OPERATIONS``.
ADMIN_OPERATIONS = (
    LIST_KEYS,
    CREATE_KEY,
    REVOKE_KEY,
    LIST_TOKENS,
    CREATE_TOKEN,
    REVOKE_TOKEN,
    LIST_AGENTS,
    REVOKE_AGENT,
    AUDIT,
    *CENTRAL_CONFIG,
)


def admin_operations() -> tuple[Operation, ...]:
    """The admin operations this build serves and documents (the central config's only when installed)."""
    if central_config_available():
        return ADMIN_OPERATIONS
    return tuple(op for op in ADMIN_OPERATIONS if op not in CENTRAL_CONFIG)
