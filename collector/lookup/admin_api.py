"""The admin routes: API keys, enrollment tokens, enrolled agents, the audit log (and central config).
Only HTTP to the security registry and back: the registry audits every change itself; a secret is shown once, when made.
Design notes: docs/api.md, "Keys, roles, audit log, pseudonyms".
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
import math
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..security.registry import MAX_TOKEN_TTL_S, MAX_TOKEN_USES, MIN_TOKEN_TTL_S, Actor, LastAdminKeyError
from .access import ROLE_RANK, Access

__all__ = ["admin_routes", "central_config_available"]

S = 1_000_000
MAX_BODY = 64 * 1024


def _api_error(status: int, message: str) -> Exception:
    from .params import ApiError

    return ApiError(status, message)


def _json(data, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers={"Cache-Control": "no-store"})


def _plain(obj) -> dict:
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) and not isinstance(obj, type) else dict(vars(obj))


async def _body(request: Request) -> dict:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise _api_error(413, f"the request body is larger than {MAX_BODY // 1024} KiB")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _api_error(400, "the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise _api_error(400, "the request body must be a JSON object")
    return body


def _text(body: dict, name: str) -> str:
    """A string member ('' when absent); the registry checks its length and characters."""
    v = body.get(name, "")
    if not isinstance(v, str):
        raise _api_error(400, f"{name} must be a string")
    return v


def _int(body: dict, name: str, default: int, lo: int, hi: int) -> int:
    v = body.get(name, default)
    # finite first: JSON's 1e400 is float inf, and int(inf) raises (a 500 before issue 18)
    if (
        isinstance(v, bool)
        or not isinstance(v, (int, float))
        or (isinstance(v, float) and not math.isfinite(v))
        or v != int(v)
        or not lo <= v <= hi
    ):
        raise _api_error(400, f"{name} must be a whole number between {lo} and {hi}")
    return int(v)


def _time_param(q, name: str, now_us: int) -> int | None:
    from .params import parse_time_us

    return parse_time_us(q[name], now_us, name) if q.get(name) else None


def central_config_available() -> bool:
    """Whether the hardening work's central configuration module is installed in this build."""
    try:
        return importlib.util.find_spec("cxpulse.collector.config.central") is not None
    except ModuleNotFoundError:
        return False


def admin_routes(access: Access, now_us=None) -> list[Route]:
    """The /api/v1/admin routes, each guarded by the admin role."""
    reg = access.registry
    clock = now_us or (lambda: time.time_ns() // 1000)

    async def call(fn, *args, **kwargs):
        return await asyncio.to_thread(fn, *args, **kwargs)

    def caller(request: Request):
        return request.scope.get("cxpulse.caller")

    def by(request: Request) -> Actor:
        """The audit log's actor for this request (the guard let only an admin key through)."""
        who = caller(request)
        return Actor(who.actor, who.remote, who.name) if who else Actor("anonymous")

    async def change(request: Request, fn, *args, **kwargs):
        """A registry change made and audited by ``fn``; its ValueError is this request's 400."""
        try:
            return await call(fn, *args, by=by(request), **kwargs)
        except LastAdminKeyError as exc:
            raise _api_error(409, str(exc)) from None
        except ValueError as exc:  # out of range, a bad site list, sites on an admin key
            raise _api_error(400, str(exc)) from None

    async def note(request: Request, action: str, subject: str, detail: str = "") -> None:
        await call(reg.record, by(request), action, subject, detail)

    # - API keys -

    async def list_keys(request: Request) -> Response:
        keys = await call(reg.list_api_keys)
        return _json({"keys": [_plain(k) for k in keys]})

    async def create_key(request: Request) -> Response:
        body = await _body(request)
        pseudonymize = body.get("pseudonymize", False)
        if not isinstance(pseudonymize, bool):
            raise _api_error(400, "pseudonymize must be true or false")
        secret, info = await change(
            request,
            reg.create_api_key,
            _text(body, "role"),
            _text(body, "name"),
            pseudonymize=pseudonymize,
            sites=body.get("sites", []),
        )
        return _json(
            {"key": secret, "info": _plain(info), "note": "the key is shown once: give it to its holder now"}, 201
        )

    async def revoke_key(request: Request) -> Response:
        key_id = request.path_params["key_id"]
        if not await change(request, reg.revoke_api_key, key_id):
            raise _api_error(404, f"no active API key with id {key_id!r}")
        return _json({"revoked": key_id})

    # - enrollment tokens -

    async def list_tokens(request: Request) -> Response:
        return _json({"tokens": [_plain(t) for t in await call(reg.list_tokens)]})

    async def create_token(request: Request) -> Response:
        body = await _body(request)
        uses = _int(body, "uses", 1, 1, MAX_TOKEN_USES)
        ttl_s = _int(body, "ttl_s", 7 * 86_400, MIN_TOKEN_TTL_S, MAX_TOKEN_TTL_S)
        secret, info = await change(
            request, reg.create_token, site=_text(body, "site"), uses=uses, ttl_s=ttl_s, note=_text(body, "note")
        )
        return _json(
            {"token": secret, "info": _plain(info), "note": "the token is shown once: give it to the installer now"},
            201,
        )

    async def revoke_token(request: Request) -> Response:
        token_id = request.path_params["token_id"]
        if not await change(request, reg.revoke_token, token_id):
            raise _api_error(404, f"no active enrollment token with id {token_id!r}")
        return _json({"revoked": token_id})

    # - enrolled agents -

    async def list_agents(request: Request) -> Response:
        return _json({"agents": [_plain(a) for a in await call(reg.list_agents)]})

    async def revoke_agent(request: Request) -> Response:
        agent_id = request.path_params["agent_id"]
        if not await change(request, reg.revoke_agent, agent_id):
            raise _api_error(404, f"no enrolled, unrevoked agent with id {agent_id!r}")
        return _json({"revoked": agent_id})

    # - audit log -

    async def audit(request: Request) -> Response:
        from .params import int_param as _int_param

        q = request.query_params
        now = clock()
        since = _time_param(q, "since", now)
        until = _time_param(q, "until", now)
        if since is None:
            since = 0
        if until is not None and since >= until:
            raise _api_error(400, f"since must be before until (got since {since} us, until {until} us)")
        limit = _int_param(dict(q), "limit", 1000, 1, 10_000)
        actor = q.get("actor") or None
        subject = q.get("subject") or None
        for name, v in (("actor", actor), ("subject", subject)):
            if v is not None and len(v) > 256:
                raise _api_error(400, f"{name} is longer than 256 characters")
        entries = await call(reg.audit, since, until, actor=actor, subject=subject, limit=limit)
        # Reading the log shows who looked up whom: that reading is recorded too (filters in the detail).
        await note(
            request,
            "audit.read",
            "",
            " ".join(
                f"{k}={v}"
                for k, v in (
                    ("actor", actor),
                    ("subject", subject),
                    ("since", q.get("since")),
                    ("until", q.get("until")),
                )
                if v
            )
            + f" entries={len(entries)}",
        )
        names = {f"key:{k.key_id}": k.name for k in await call(reg.list_api_keys)}
        return _json({"entries": [{**_plain(e), "actor_name": names.get(e.actor, "")} for e in entries]})

    # - central configuration (collector/config/central.py) -

    async def get_config(request: Request) -> Response:
        from ..config import central

        version, text = await call(central.current, reg)
        return _json({"version": version, "toml": text})

    async def put_config(request: Request) -> Response:
        from ..config import central

        raw = await request.body()
        if len(raw) > central.MAX_TEXT:
            raise _api_error(413, f"the configuration is larger than {central.MAX_TEXT // 1024} KiB")
        if request.headers.get("content-type", "").split(";")[0].strip() in ("text/plain", "application/toml"):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise _api_error(400, "the configuration must be UTF-8 text") from None
        else:
            sent = (await _body(request)).get("toml")
            if not isinstance(sent, str):
                raise _api_error(400, 'send the TOML as text/plain, or as JSON {"toml": "..."}')
            text = sent
        who = caller(request)
        try:
            version = await call(central.update, central._url(reg), text, who.actor if who else "http")
        except ValueError as exc:  # central.ConfigError: what is wrong and where
            raise _api_error(400, f"configuration refused: {getattr(exc, 'reason', exc)}") from None
        await note(request, "config.update", f"version {version}", f"{len(text)} bytes")
        return _json({"version": version})

    routes = [
        Route("/api/v1/admin/keys", access.guard("admin", list_keys), methods=["GET"]),
        Route("/api/v1/admin/keys", access.guard("admin", create_key), methods=["POST"]),
        Route("/api/v1/admin/keys/{key_id}/revoke", access.guard("admin", revoke_key), methods=["POST"]),
        Route("/api/v1/admin/tokens", access.guard("admin", list_tokens), methods=["GET"]),
        Route("/api/v1/admin/tokens", access.guard("admin", create_token), methods=["POST"]),
        Route("/api/v1/admin/tokens/{token_id}/revoke", access.guard("admin", revoke_token), methods=["POST"]),
        Route("/api/v1/admin/agents", access.guard("admin", list_agents), methods=["GET"]),
        Route("/api/v1/admin/agents/{agent_id}/revoke", access.guard("admin", revoke_agent), methods=["POST"]),
        Route("/api/v1/admin/audit", access.guard("admin", audit), methods=["GET"]),
    ]
    if central_config_available():
        routes += [
            Route("/api/v1/admin/config", access.guard("admin", get_config), methods=["GET"]),
            Route("/api/v1/admin/config", access.guard("admin", put_config), methods=["PUT"]),
        ]
    return routes


def admin_openapi_paths() -> dict:
    """The admin routes' part of the OpenAPI document (merged into api.openapi_document)."""
    err = {"$ref": "#/components/responses/BadRequest"}
    obj = {"type": "object"}

    def resp(code: str, desc: str, schema: dict | None = None) -> dict:
        return {code: {"description": desc, "content": {"application/json": {"schema": schema or obj}}}}

    def path_id(name: str, desc: str) -> dict:
        return {
            "name": name,
            "in": "path",
            "required": True,
            "description": desc,
            "schema": {"type": "string", "maxLength": 64},
        }

    def q(name: str, desc: str, schema: dict | None = None) -> dict:
        return {
            "name": name,
            "in": "query",
            "required": False,
            "description": desc,
            "schema": schema or {"type": "string"},
        }

    key_info = {
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
    not_found = {"404": {"$ref": "#/components/responses/NotFound"}}
    revoked = resp(
        "200", "Revoked", {"type": "object", "required": ["revoked"], "properties": {"revoked": {"type": "string"}}}
    )
    paths: dict[str, Any] = {
        "/api/v1/admin/keys": {
            "get": {
                "operationId": "listApiKeys",
                "summary": "API keys (never their secrets)",
                "tags": ["admin"],
                "responses": resp(
                    "200",
                    "Keys",
                    {
                        "type": "object",
                        "required": ["keys"],
                        "properties": {"keys": {"type": "array", "items": key_info}},
                    },
                ),
            },
            "post": {
                "operationId": "createApiKey",
                "summary": "Create an API key; the secret is in this answer only",
                "tags": ["admin"],
                "requestBody": {
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
                "responses": {
                    **resp(
                        "201",
                        "Created",
                        {
                            "type": "object",
                            "required": ["key", "info"],
                            "properties": {"key": {"type": "string"}, "info": key_info, "note": {"type": "string"}},
                        },
                    ),
                    "400": err,
                },
            },
        },
        "/api/v1/admin/keys/{key_id}/revoke": {
            "post": {
                "operationId": "revokeApiKey",
                "summary": "Revoke an API key at once",
                "tags": ["admin"],
                "description": "The last active admin key cannot be revoked (409): create another admin key first.",
                "parameters": [path_id("key_id", "The key's id (from the list).")],
                "responses": {
                    **revoked,
                    **not_found,
                    "409": {
                        "description": "The last active admin key",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                    },
                },
            }
        },
        "/api/v1/admin/tokens": {
            "get": {
                "operationId": "listTokens",
                "summary": "Enrollment tokens (never their secrets)",
                "tags": ["admin"],
                "responses": resp(
                    "200",
                    "Tokens",
                    {
                        "type": "object",
                        "required": ["tokens"],
                        "properties": {"tokens": {"type": "array", "items": obj}},
                    },
                ),
            },
            "post": {
                "operationId": "createToken",
                "summary": "Create an enrollment token; the secret is in this answer only",
                "tags": ["admin"],
                "requestBody": {
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
                "responses": {
                    **resp(
                        "201",
                        "Created",
                        {
                            "type": "object",
                            "required": ["token", "info"],
                            "properties": {"token": {"type": "string"}, "info": obj, "note": {"type": "string"}},
                        },
                    ),
                    "400": err,
                },
            },
        },
        "/api/v1/admin/tokens/{token_id}/revoke": {
            "post": {
                "operationId": "revokeToken",
                "summary": "Revoke an enrollment token",
                "tags": ["admin"],
                "parameters": [path_id("token_id", "The token's id (from the list).")],
                "responses": {**revoked, **not_found},
            }
        },
        "/api/v1/admin/agents": {
            "get": {
                "operationId": "listEnrolledAgents",
                "summary": "Enrolled agents and their revocation state",
                "tags": ["admin"],
                "responses": resp(
                    "200",
                    "Agents",
                    {
                        "type": "object",
                        "required": ["agents"],
                        "properties": {"agents": {"type": "array", "items": obj}},
                    },
                ),
            }
        },
        "/api/v1/admin/agents/{agent_id}/revoke": {
            "post": {
                "operationId": "revokeAgent",
                "summary": "Revoke an agent: its open stream is closed, it can no longer send",
                "tags": ["admin"],
                "parameters": [path_id("agent_id", "The agent's id.")],
                "responses": {**revoked, **not_found},
            }
        },
        "/api/v1/admin/audit": {
            "get": {
                "operationId": "queryAudit",
                "summary": "The audit log: who looked up whom, when, from where; admin changes",
                "tags": ["admin"],
                "parameters": [
                    q(
                        "since",
                        "Start (same forms as elsewhere: ISO 8601, epoch seconds, now, -24h); default: the beginning.",
                    ),
                    q("until", "End (exclusive); default: none."),
                    q(
                        "actor",
                        "Only this actor, e.g. key:<key_id> or cli:<os user>.",
                        {"type": "string", "maxLength": 256},
                    ),
                    q("subject", "Only this subject, e.g. an agent id.", {"type": "string", "maxLength": 256}),
                    q(
                        "limit",
                        "At most this many entries, oldest first.",
                        {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1000},
                    ),
                ],
                "responses": {
                    **resp(
                        "200",
                        "Entries, oldest first",
                        {
                            "type": "object",
                            "required": ["entries"],
                            "properties": {
                                "entries": {
                                    "type": "array",
                                    "items": {
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
                                    },
                                }
                            },
                        },
                    ),
                    "400": err,
                },
            }
        },
    }
    # A created key or token can be revoked by the id in its answer (followed by the stateful fuzz run).
    for path, op, param in (
        ("/api/v1/admin/keys", "revokeApiKey", "key_id"),
        ("/api/v1/admin/tokens", "revokeToken", "token_id"),
    ):
        paths[path]["post"]["responses"]["201"]["links"] = {
            "Revoke": {"operationId": op, "parameters": {param: f"$response.body#/info/{param}"}}
        }
    if central_config_available():
        version = {"type": "object", "required": ["version"], "properties": {"version": {"type": "integer"}}}
        paths["/api/v1/admin/config"] = {
            "get": {
                "operationId": "getCentralConfig",
                "summary": "The newest central configuration (TOML) and its version",
                "tags": ["admin"],
                "responses": resp(
                    "200",
                    "Version 0 and empty text: none stored yet",
                    {
                        "type": "object",
                        "required": ["version", "toml"],
                        "properties": {"version": {"type": "integer"}, "toml": {"type": "string"}},
                    },
                ),
            },
            "put": {
                "operationId": "putCentralConfig",
                "tags": ["admin"],
                "summary": "Store a new central configuration; collectors push it to their agents within seconds",
                "description": "Checked before it is stored (the same checks agents run); the same text again keeps "
                "its version. See collector/config/collector.example.toml.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["toml"],
                                "properties": {"toml": {"type": "string", "maxLength": 262144}},
                            }
                        },
                        "text/plain": {"schema": {"type": "string", "maxLength": 262144}},
                    },
                },
                "responses": {
                    **resp("200", "Stored (or unchanged)", version),
                    "400": err,
                    "413": {
                        "description": "Too large",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                    },
                },
            },
        }
    return paths
