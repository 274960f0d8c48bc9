"""The admin routes: API keys, enrollment tokens, enrolled agents, the audit log (and central config).
Only HTTP to the security registry and back: the registry audits every change itself; a secret is shown once, when made.
Design notes: docs/api.md, "Keys, roles, audit log, pseudonyms".
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..security.registry import MAX_TOKEN_TTL_S, MAX_TOKEN_USES, MIN_TOKEN_TTL_S, Actor, LastAdminKeyError
from . import admin_routes as ar
from .access import Access
from .admin_routes import central_config_available

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


def admin_routes(access: Access, now_us=None) -> list[Route]:
    """The /api/v1/admin routes declared in ``admin_routes``, each behind its declared role."""
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
        q = request.query_params
        now = clock()
        since = _time_param(q, "since", now)
        until = _time_param(q, "until", now)
        if since is None:
            since = 0
        if until is not None and since >= until:
            raise _api_error(400, f"since must be before until (got since {since} us, until {until} us)")
        limit = ar.AUDIT_LIMIT.read(q)  # the declared schema's bounds, as the document shows them
        actor = ar.AUDIT_ACTOR.read(q) or None
        subject = ar.AUDIT_SUBJECT.read(q) or None
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

    served = {
        ar.LIST_KEYS: list_keys,
        ar.CREATE_KEY: create_key,
        ar.REVOKE_KEY: revoke_key,
        ar.LIST_TOKENS: list_tokens,
        ar.CREATE_TOKEN: create_token,
        ar.REVOKE_TOKEN: revoke_token,
        ar.LIST_AGENTS: list_agents,
        ar.REVOKE_AGENT: revoke_agent,
        ar.AUDIT: audit,
        ar.GET_CONFIG: get_config,
        ar.PUT_CONFIG: put_config,
    }
    # Path, method and role from the declaration (a role-less one still needs admin); KeyError: one not served.
    return [
        Route(op.path, access.guard(op.role or "admin", served[op]), methods=[op.method])
        for op in ar.admin_operations()
    ]
