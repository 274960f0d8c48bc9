"""The lookup over HTTP: search, one agent's experience and timeline, the fleet, the ticket text.
A handler per operation declared in ``routes``, guarded by its role; store reads run in worker threads.
Design notes: docs/api.md, "collector/lookup/api.py".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..store import fold
from . import routes as r
from .access import AccessMiddleware
from .admin_api import admin_routes
from .fleet import every_agent, public_fleet
from .openapi import openapi_document
from .params import ApiError, parse_duration_s, time_range, tz_param
from .scope import scoped_store
from .service import LookupService
from .static import static_file

__all__ = ["create_app"]

Endpoint = Callable[[Request], Awaitable[Response]]


def _json(data, status: int = 200, started: float | None = None) -> JSONResponse:
    headers = {"Cache-Control": "no-store"}
    if started is not None:
        headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
    return JSONResponse(data, status_code=status, headers=headers)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"status": status, "message": message}}, status_code=status, headers={"Cache-Control": "no-store"}
    )


async def _run(fn, *args):
    """Store reads leave the event loop: it also serves gRPC ingest."""
    return await asyncio.to_thread(fn, *args)


def create_app(service: LookupService, access, *, metrics: Callable[[], bytes] | None = None) -> Starlette:
    """The ASGI app: JSON API under /api/v1, the page at /, /metrics when ``metrics`` is given.

    ``access`` (``access.Access``) checks keys and roles, writes the audit log and pseudonymizes;
    there is deliberately no way to build the app without it.
    """

    async def search(request: Request) -> Response:
        t0 = time.perf_counter()
        q = request.query_params
        text = r.Q.read(q)
        limit = r.SEARCH_LIMIT.read(q)
        return _json(
            {"query": text, "agents": await _run(service.search, text, limit, access.visible_sites(request))},
            started=t0,
        )

    async def agent(request: Request) -> Response:
        t0 = time.perf_counter()
        q = dict(request.query_params)
        since, until = time_range(q, service.now_us())
        points = r.POINTS.read(q)
        tz = tz_param(q)
        body = await _run(
            service.agent,
            request.path_params["agent_id"],
            since,
            until,
            points,
            r.WITH_TIMELINE.read(q),
            tz,
            access.visible_sites(request),
        )
        return _json(body, started=t0)

    async def timeline(request: Request) -> Response:
        t0 = time.perf_counter()
        q = dict(request.query_params)
        since, until = time_range(q, service.now_us())
        points = r.POINTS.read(q)
        return _json(
            await _run(
                service.timeline, request.path_params["agent_id"], since, until, points, access.visible_sites(request)
            ),
            started=t0,
        )

    async def ticket(request: Request) -> Response:
        t0 = time.perf_counter()
        q = dict(request.query_params)
        since, until = time_range(q, service.now_us())
        text = await _run(
            service.ticket, request.path_params["agent_id"], since, until, tz_param(q), access.visible_sites(request)
        )
        if r.FORMAT.read(q) == "json":
            return _json({"text": text}, started=t0)
        return PlainTextResponse(text, headers={"Cache-Control": "no-store"})

    async def fleet(request: Request) -> Response:
        t0 = time.perf_counter()
        q = dict(request.query_params)
        window_s = parse_duration_s(q.get("window", "15m"))
        if window_s > 86_400:
            raise ApiError(400, "window for the fleet view is at most 24h")
        limit = r.FLEET_LIMIT.read(q)
        snap = await _run(service.fleet, window_s, access.visible_sites(request))
        return _json(public_fleet(snap, limit), started=t0)

    async def incidents(request: Request) -> Response:
        t0 = time.perf_counter()
        q = dict(request.query_params)
        state = r.STATE.read(q)
        window_s = parse_duration_s(q.get("window", "15m"))
        if window_s > 86_400:
            raise ApiError(400, "window is at most 24h")
        snap = await _run(service.fleet, window_s, access.visible_sites(request))
        inc = snap["incidents"]
        return _json({"incidents": inc["open"] + (inc["recent"] if state == "all" else [])}, started=t0)

    async def deliveries(request: Request) -> Response:
        if service.alerts is None:
            return _json({"configured": False, "targets": [], "deliveries": []})
        return _json({"configured": True, **service.alerts.describe()})

    async def test_send(request: Request) -> Response:
        if service.alerts is None:
            raise ApiError(409, "no alert webhooks are configured on this collector")
        target = request.query_params.get("target")
        try:
            sent = service.alerts.test_send(target)
        except KeyError:
            raise ApiError(404, f"no webhook named {target!r}") from None
        except RuntimeError as exc:  # rate limited
            raise ApiError(429, str(exc)) from None
        return _json({"queued": sent}, status=202)

    async def glossary(request: Request) -> Response:
        # The words behind the page's tooltips (docs/glossary.md is the same list).
        from .glossary import glossary as terms

        return _json(terms())

    async def health(request: Request) -> Response:
        return _json({"status": "ok", "api_version": r.API_VERSION})

    async def openapi(request: Request) -> Response:
        return _json(openapi_document())

    async def prometheus(request: Request) -> Response:
        if access.visible_sites(request) is not None:
            # Ingest and webhook counters span every client; a scrape is the operator's, not a client team's.
            raise ApiError(403, "/metrics spans every site: it needs a key without a site scope")
        body = await _run(metrics)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def page(request: Request) -> Response:
        return static_file("index.html")

    async def static(request: Request) -> Response:
        return static_file(request.path_params["name"])

    # Starlette hands each handler the exception class it is registered for (below).
    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _error(exc.status, exc.message)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if request.url.path.startswith("/api/"):
            msg = exc.detail if exc.status_code != 404 else f"no such API route: {request.method} {request.url.path}"
            return _error(exc.status_code, msg)
        return PlainTextResponse(str(exc.detail), status_code=exc.status_code)

    async def server_error(request: Request, exc: Exception) -> Response:
        # Starlette re-raises after this, and uvicorn logs the traceback once.
        return _error(500, f"internal error: {type(exc).__name__} (see the collector's log)")

    def search_named(request: Request, person: dict) -> bool:
        """The analyst typed this person's name, host or id, so showing it reveals nothing new.

        Whole words or the whole value only: a search for ``a`` or ``desk`` matches many people
        and names none of them (issue 18, finding 5), so under pseudonymization they stay codes.
        """
        text = request.query_params.get("q", "").strip().casefold()
        words = fold(text).split()
        name = f" {fold(person.get('user') or '')} {fold(person.get('display_name') or '')} "
        return bool(text) and (
            any(text == (person.get(k) or "").casefold() for k in ("user", "host", "agent_id"))
            or (bool(words) and all(len(w) >= 2 and f" {w} " in name for w in words))
        )

    def resolve(pseudo: str, sites=None) -> str | None:
        records = every_agent(scoped_store(service.store, sites))
        return next((x.info.agent_id for x in records if access.desk_pseudonym(x.info.agent_id) == pseudo), None)

    def lookup(action: str, endpoint: Endpoint) -> Endpoint:
        return access.audited_lookup(action, endpoint, service.brief, resolve)

    def route(op: r.Operation, endpoint: Endpoint, *, keyless: bool = False) -> Route:
        """The declared operation served by ``endpoint``, behind its declared role unless ``keyless``."""
        guarded = endpoint if op.role is None or keyless else access.guard(op.role, endpoint)
        return Route(op.path, guarded, methods=[op.method])

    served = {
        r.SEARCH: access.audited_list("agents.search", search, lambda b: b["agents"], search_named),
        r.AGENT: lookup("agent.view", agent),
        r.TIMELINE: lookup("agent.timeline", timeline),
        r.TICKET: lookup("agent.ticket", ticket),
        r.FLEET: access.audited_list("fleet", fleet, lambda b: b["worst"] + b["silent"], lambda req, p: False),
        r.INCIDENTS: access.audited_list("incidents", incidents, lambda b: []),
        r.DELIVERIES: deliveries,
        r.TEST_ALERT: test_send,
        r.GLOSSARY: glossary,
        r.HEALTH: health,
        r.OPENAPI: openapi,
    }
    routes = [route(op, served[op]) for op in r.OPERATIONS if op is not r.METRICS]  # KeyError: one not served
    routes += [
        *admin_routes(access, service.now_us),
        Route("/openapi.json", openapi, methods=["GET"], include_in_schema=False),
        Route("/", page, methods=["GET"]),
        Route("/static/{name}", static, methods=["GET"]),
    ]
    if metrics is not None:
        routes.append(route(r.METRICS, prometheus, keyless=access.metrics_open))
    return Starlette(
        routes=routes,
        middleware=[Middleware(AccessMiddleware, access=access)],
        exception_handlers={ApiError: api_error, HTTPException: http_error, Exception: server_error},
    )
