"""Who may read what over HTTP, what they looked at, and which names they are shown.
Keys and roles before any route, site scopes, an audit entry before a person's data leaves, pseudonyms.
Design notes: docs/security.md, "collector/lookup/access.py".
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from cxpulse.atomicfile import write_atomic

__all__ = ["ROLE_RANK", "Access", "AccessMiddleware", "Caller", "load_pseudonym_secret"]

log = logging.getLogger("cxpulse.collector.lookup.access")

ROLE_RANK = {"helpdesk": 1, "admin": 2}
# Reachable without a key: liveness, the API's own description, and the page's files (the page
# holds no data; it asks for a key before its first API call).
OPEN_PATHS = frozenset({"/", "/api/v1/health", "/api/v1/openapi.json", "/openapi.json"})
OPEN_PREFIXES = ("/static/",)
MAX_KEY_CHARS = 200
MAX_DETAIL_NAMES = 50
AGENT_PSEUDONYM_PREFIX = "a-"
# Fields of the JSON answers that hold agent ids besides "agent_id" itself (fleet, incidents).
_AGENT_ID_FIELDS = frozenset({"worst_agent"})
_AGENT_ID_LISTS = frozenset({"agent_ids", "agents_failing"})

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Caller:
    """An authenticated request: the key's id, name and role, and where the request came from."""

    key_id: str
    name: str
    role: str
    remote: str
    pseudonymize: bool = False  # this key sees pseudonyms even where the collector shows names
    # The sites this key may see; None: every site. Read it through ``visible_sites(request)``.
    sites: frozenset[str] | None = None

    @property
    def actor(self) -> str:
        return f"key:{self.key_id}"


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"status": status, "message": message}},
        status_code=status,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def load_pseudonym_secret(path: str | os.PathLike | None) -> bytes:
    """The collector's pseudonym secret: read from ``path``, created there (mode 0600) on first use.

    Collectors sharing one PostgreSQL must share this file (like the TLS material) to show the
    same pseudonyms. Without a path the secret lives only as long as the process: pseudonyms
    then change at every restart, which is safe but confusing, so the caller is told.
    """
    if path is None:
        log.warning("pseudonymization without a secret file: pseudonyms change when the collector restarts")
        return secrets.token_bytes(32)
    p = Path(path)
    try:
        data = p.read_bytes()
        if os.name == "posix" and p.stat().st_mode & 0o077:  # made by hand or by an older version: this account only
            os.chmod(p, 0o600)
    except FileNotFoundError:
        p.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = secrets.token_bytes(32)
        try:  # whole file or nothing; a collector starting beside us may have won the race
            write_atomic(p, data, mode=0o600, exclusive=True)
            log.info("created the pseudonym secret %s", p)
        except FileExistsError:
            data = p.read_bytes()
    if len(data) < 16:
        raise ValueError(f"the pseudonym secret {p} is shorter than 16 bytes")
    return data


def _networks(items: Iterable[str]) -> list:
    out = []
    for x in items:
        try:
            out.append(ipaddress.ip_network(x.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"trusted proxy must be an IP address or network such as 10.0.0.5 or 10.0.0.0/24; got {x!r}"
            ) from None
    return out


class Access:
    """Key checks, role checks, audit entries and pseudonyms for one HTTP app.

    - ``registry``: the security registry (``verify_api_key``, ``record_audit``, ...).
    - ``pseudonymize``: show pseudonyms instead of user names in views that do not need names
      (for every key; a key made with ``pseudonymize`` gets them even when this is off).
    - ``pseudonym_secret``: the HMAC key for pseudonyms (see ``load_pseudonym_secret``).
    - ``trusted_proxies``: addresses/networks of reverse proxies whose ``X-Forwarded-For`` is
      believed; empty (default): the client address is the TCP peer, a header cannot fake it.
    - ``metrics_open``: /metrics without a key (it holds counts per site, never a person).
    """

    def __init__(
        self,
        registry,
        *,
        pseudonymize: bool = False,
        pseudonym_secret: bytes | None = None,
        trusted_proxies: Iterable[str] = (),
        metrics_open: bool = False,
    ):
        self.registry = registry
        self.pseudonymize = pseudonymize
        # Per-key pseudonyms need a secret even without the collector-wide option: one for this
        # process unless given (start_http passes the file's whenever it has a file).
        self._secret = (
            pseudonym_secret
            if pseudonym_secret is not None
            else (load_pseudonym_secret(None) if pseudonymize else secrets.token_bytes(32))
        )
        self.trusted = _networks(trusted_proxies)
        self.metrics_open = metrics_open

    # - who -

    def is_open(self, path: str) -> bool:
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            return True
        if path == "/metrics":
            return self.metrics_open
        return not (path.startswith("/api/") or path == "/metrics")

    def remote(self, scope) -> str:
        """The client address: the TCP peer, or the last untrusted hop of X-Forwarded-For behind a trusted proxy."""
        peer = (scope.get("client") or ("", 0))[0] or ""
        if not self.trusted or not self._is_trusted(peer):
            return peer
        fwd = ""
        for k, v in scope.get("headers") or ():
            if k == b"x-forwarded-for":
                fwd = (fwd + "," if fwd else "") + v.decode("latin-1")
        hops = [h.strip() for h in fwd.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                try:
                    return str(ipaddress.ip_address(hop))
                except ValueError:
                    return peer  # garbage in the header: keep the address we know
        return hops[0] if hops else peer

    def _is_trusted(self, addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in n for n in self.trusted)

    @staticmethod
    def presented_key(scope) -> str | None:
        auth = key = None
        for k, v in scope.get("headers") or ():
            if k == b"authorization":
                auth = v.decode("latin-1")
            elif k == b"x-api-key":
                key = v.decode("latin-1")
        if auth:
            scheme, _, value = auth.strip().partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                return value.strip()
        return key.strip() if key and key.strip() else None

    async def authenticate(self, scope) -> Caller | None:
        secret = self.presented_key(scope)
        if not secret or len(secret) > MAX_KEY_CHARS:
            return None
        info = await asyncio.to_thread(self.registry.verify_api_key, secret)
        if info is None or getattr(info, "revoked_us", None) is not None or getattr(info, "revoked", False):
            return None
        if info.role not in ROLE_RANK:
            return None
        sites = tuple(getattr(info, "sites", ()) or ())
        return Caller(
            info.key_id,
            info.name,
            info.role,
            self.remote(scope),
            bool(getattr(info, "pseudonymize", False)),
            frozenset(sites) if sites else None,
        )

    # - may they -

    def guard(self, role: str, endpoint: Endpoint) -> Endpoint:
        """The endpoint, answering 403 unless the caller's role is at least ``role``."""
        need = ROLE_RANK[role]

        async def guarded(request: Request) -> Response:
            caller = request.scope.get("cxpulse.caller")
            if caller is None:  # the middleware did not run: never serve data unauthenticated
                return _error(401, "an API key is required", {"WWW-Authenticate": 'Bearer realm="cxpulse"'})
            if ROLE_RANK[caller.role] < need:
                return _error(403, f"this needs the {role} role; the key {caller.name!r} has {caller.role}")
            if role == "admin" and caller.sites is not None:  # none is made (registry), but never trust the row
                return _error(403, "administration spans every site: it needs an admin key without a site scope")
            return await endpoint(request)

        guarded.__name__ = getattr(endpoint, "__name__", "endpoint")
        return guarded

    # - what they saw -

    def record(self, caller: Caller | None, action: str, subject: str = "", detail: str = "") -> None:
        """One audit entry (blocking); raises if the log cannot be written."""
        actor = caller.actor if caller else "anonymous"
        remote = caller.remote if caller else ""
        by = f"by={caller.name}" if caller else ""
        self.registry.record_audit(
            actor=actor,
            action=action,
            subject=subject,
            remote=remote,
            detail="; ".join(x for x in (by, detail) if x)[:2000],
        )

    def audited_lookup(
        self,
        action: str,
        endpoint: Endpoint,
        who: Callable[[str], dict | None],
        resolve: Callable[[str, frozenset | None], str | None] | None = None,
    ) -> Endpoint:
        """A person's view (``{agent_id}`` in the path): recorded, whatever the answer, before it is sent.

        ``who(agent_id)`` names the person (user, host) for the entry; None when there is no such agent.
        ``resolve(pseudonym, visible_sites)`` turns a desk pseudonym (``a-...``, from a pseudonymized fleet row)
        into the agent id, so the row's link opens that person's view, which is audited like any other.
        """

        async def wrapped(request: Request) -> Response:
            from .params import ApiError  # the route's own errors still count as a lookup attempt

            agent_id = request.path_params.get("agent_id", "")
            if resolve is not None and agent_id.startswith(AGENT_PSEUDONYM_PREFIX):
                real = await asyncio.to_thread(resolve, agent_id, self.visible_sites(request))
                if real is not None:
                    agent_id = request.scope["path_params"]["agent_id"] = real
            status, response = 200, None
            error: Exception | None = None
            try:
                response = await endpoint(request)
                status = response.status_code
            except ApiError as exc:
                status, error = exc.status, exc
            except Exception as exc:
                status, error = 500, exc
            q = request.query_params
            window = " ".join(f"{k}={q[k][:64]}" for k in ("since", "until", "window") if q.get(k))

            def write() -> None:
                person = who(agent_id) if status != 404 else None
                named = f"user={person.get('user', '')} host={person.get('host', '')}" if person else "no such agent"
                self.record(
                    request.scope.get("cxpulse.caller"),
                    action,
                    agent_id,
                    "; ".join(x for x in (named, window, f"status={status}") if x),
                )

            if not await self._write(write):
                return _error(
                    503, "the audit log cannot be written, so this lookup is refused; see the collector's log"
                )
            if error is not None or response is None:
                raise error or RuntimeError("the endpoint answered nothing")
            return response

        wrapped.__name__ = getattr(endpoint, "__name__", "endpoint")
        return wrapped

    def audited_list(
        self,
        action: str,
        endpoint: Endpoint,
        people: Callable[[dict], list[dict]],
        shown_by_name: Callable[[Request, dict], bool] = lambda request, person: True,
    ) -> Endpoint:
        """A JSON answer that lists people (search, fleet): pseudonyms where names are not needed, audited where named.

        ``people(body)`` returns the dicts (with ``user``, ``agent_id``) inside the answer;
        ``shown_by_name(request, person)`` says whether this person may keep their name when
        pseudonymization is on (search: the analyst typed their name, host or id).
        """

        async def wrapped(request: Request) -> Response:
            response = await endpoint(request)
            if response.status_code != 200 or not isinstance(response, JSONResponse):
                return response
            body = json.loads(bytes(response.body))
            pseudonymize = self.pseudonymizes(request)
            named, shown_ids = [], set()
            for p in people(body):
                if pseudonymize and not shown_by_name(request, p):
                    if p.get("user"):
                        p["user"] = self.pseudonym(p["user"])
                    if p.get("display_name"):  # as personal as the login: hidden with it, never beside it
                        p["display_name"] = p["user"]
                elif p.get("user"):
                    named.append(p)
                    shown_ids.add(p.get("agent_id"))
                else:
                    shown_ids.add(p.get("agent_id"))
            if pseudonymize:  # the desk's name and id say whose desk it is as well as the login does
                self.mask_desks(body, shown_ids)
            if named:
                ids = sorted({f"{p.get('agent_id', '')} ({p['user']})" for p in named})
                more = f" and {len(ids) - MAX_DETAIL_NAMES} more" if len(ids) > MAX_DETAIL_NAMES else ""
                q = request.query_params.get("q")
                detail = (
                    (f"q={q!r}; " if q is not None else "")
                    + f"named {len(ids)}: "
                    + ", ".join(ids[:MAX_DETAIL_NAMES])
                    + more
                )
                subject = named[0].get("agent_id", "") if len(ids) == 1 else ""
                if not await self._write(
                    lambda: self.record(request.scope.get("cxpulse.caller"), action, subject, detail)
                ):
                    return _error(
                        503, "the audit log cannot be written, so this lookup is refused; see the collector's log"
                    )
            headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
            return JSONResponse(body, status_code=200, headers=headers)

        wrapped.__name__ = getattr(endpoint, "__name__", "endpoint")
        return wrapped

    async def _write(self, fn: Callable[[], None]) -> bool:
        try:
            await asyncio.to_thread(fn)
            return True
        except Exception as exc:
            log.error("audit log write failed, lookup refused: %s", exc)
            return False

    def pseudonym(self, user: str, prefix: str = "u-") -> str:
        """``u-`` + 12 hex digits of HMAC-SHA256(secret, user): stable per collector secret, not reversible."""
        return (
            prefix
            + hmac.new(self._secret, (user if prefix == "u-" else prefix + user).encode(), hashlib.sha256).hexdigest()[
                :12
            ]
        )

    def desk_pseudonym(self, agent_id: str) -> str:
        """``a-`` + 12 hex digits: an agent id for views without names; the person view resolves it back."""
        return self.pseudonym(agent_id, AGENT_PSEUDONYM_PREFIX)

    @staticmethod
    def visible_sites(request: Request) -> frozenset[str] | None:
        """The sites this request may see: None for every site, else the key's sites (issue 18).

        The one scope filter: routes hand it to the lookup service, which reads through
        ``scope.scoped_store``; no renderer filters on its own. No caller (an open route): None,
        since open routes hold no desk data.
        """
        caller = request.scope.get("cxpulse.caller")
        return caller.sites if caller is not None else None

    def pseudonymizes(self, request: Request) -> bool:
        """Whether this request sees pseudonyms: the collector-wide option or the caller's key."""
        caller = request.scope.get("cxpulse.caller")
        return self.pseudonymize or bool(caller and caller.pseudonymize)

    def mask_desks(self, body, shown_ids: set) -> None:
        """Every agent id and host name in ``body`` replaced by its pseudonym, except the desks in ``shown_ids``.

        Host names are often the person's name ("MSILVA-LAPTOP") and an agent id leads straight to
        them, so a view that hides the login hides these too (issue 18, finding 5). Walks the
        whole answer so that lists of ids (incidents, failing apps, a site's worst agent) are
        covered without each route naming them.
        """
        hosts = {}

        def walk(x):
            if isinstance(x, dict):
                if isinstance(x.get("agent_id"), str) and x["agent_id"] not in shown_ids:
                    if isinstance(x.get("host"), str) and x["host"]:
                        hosts[x["host"]] = x["host"] = self.pseudonym(x["host"], "h-")
                    x["agent_id"] = self.desk_pseudonym(x["agent_id"])
                for k, v in x.items():
                    if k in _AGENT_ID_LISTS and isinstance(v, list):
                        x[k] = [self.desk_pseudonym(i) if isinstance(i, str) and i not in shown_ids else i for i in v]
                    elif k in _AGENT_ID_FIELDS and isinstance(v, str) and v not in shown_ids:
                        x[k] = self.desk_pseudonym(v)
                    elif isinstance(v, (dict, list)):
                        walk(v)
            elif isinstance(x, list):
                for v in x:
                    walk(v)

        walk(body)


class AccessMiddleware:
    """Authenticates every request under /api/ (and /metrics unless open) before routing.

    Pure ASGI (no BaseHTTPMiddleware): it only reads headers and either answers 401 or passes the
    request on with the ``Caller`` in the scope, so streaming and timing are untouched.
    """

    def __init__(self, app, access: Access):
        self.app = app
        self.access = access

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or self.access.is_open(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        try:
            caller = await self.access.authenticate(scope)
        except Exception as exc:
            log.error("API key check failed: %s", exc)
            await _error(503, "cannot check API keys right now; see the collector's log")(scope, receive, send)
            return
        if caller is None:
            msg = (
                "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
                if self.access.presented_key(scope) is None
                else "this API key is not valid (unknown or revoked)"
            )
            await _error(401, msg, {"WWW-Authenticate": 'Bearer realm="cxpulse"'})(scope, receive, send)
            return
        scope["cxpulse.caller"] = caller
        await self.app(scope, receive, send)


def record_cli_lookup(db_url: str, query: str, window_s: int, view: dict | None) -> None:
    """``cxpulse lookup`` reads the database directly: one audit entry per person it shows (actor ``cli:<os user>``).

    Raises if the log cannot be written; the command then shows nothing.
    """
    import getpass
    import socket

    from ..security.registry import Registry

    try:
        who = getpass.getuser()
    except Exception:
        who = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    reg = Registry.open(db_url)
    try:
        agents = (view or {}).get("agents") or []
        common = {"actor": f"cli:{who}", "action": "cli.lookup", "remote": f"local:{socket.gethostname()}"}
        if not agents:
            reg.record_audit(**common, detail=f"q={query!r}; window={window_s}s; no match")
        for a in agents:
            reg.record_audit(
                **common,
                subject=a.get("agent_id", ""),
                detail=f"user={a.get('user', '')} host={a.get('host', '')}; q={query!r}; window={window_s}s",
            )
    finally:
        reg.close()
