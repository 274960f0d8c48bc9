"""Who may read what: every route against no key, a wrong key, the wrong role and the right one; the audit
log's content after real lookups; pseudonymized views; a lookup refused when it cannot be recorded.

All against a real HTTP server on 127.0.0.1 and the real security registry in the store's database.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path

import httpx
import pytest

from cxpulse.collector.lookup.openapi import openapi_document

from .conftest import ServerThread, auth, registry_with_keys
from .scenario import DAY_END

AGENT = "agent-7f3a"
USERS = ("maria.silva", "joao.pereira", "ana.costa", "rui.santos")
OPEN = {"/api/v1/health", "/api/v1/openapi.json"}
EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "collector" / "config" / "collector.example.toml"


def operations() -> list[tuple[str, str, bool]]:
    """(method, path template, admin-only) for every documented operation that needs a key."""
    out = []
    for path, ops in openapi_document()["paths"].items():
        for method, op in ops.items():
            if op.get("security") == []:
                continue
            out.append((method.upper(), path, path.startswith(("/api/v1/admin/", "/api/v1/alerts/"))))
    return out


OPS = operations()


def fill(path: str, ids: dict | None = None) -> str:
    ids = ids or {}
    return (
        path.replace("{agent_id}", ids.get("agent_id", AGENT))
        .replace("{key_id}", ids.get("key_id", "0" * 16))
        .replace("{token_id}", ids.get("token_id", "0" * 16))
    )


def call(server, method: str, path: str, headers: dict | None = None, **kw) -> httpx.Response:
    return httpx.request(method, server.url + path, headers=headers or {}, timeout=60, **kw)


@pytest.fixture(scope="module")
def srv(day_db):
    s = ServerThread(day_db, now_us=lambda: DAY_END).start()
    yield s
    s.stop()


def test_the_route_table_is_all_documented_and_every_data_route_needs_a_key():
    assert len(OPS) >= 17, OPS
    assert {p for _, p, _ in OPS} >= {"/api/v1/agents", "/api/v1/agents/{agent_id}", "/api/v1/admin/audit", "/metrics"}
    doc = openapi_document()
    assert set(doc["components"]["securitySchemes"]) == {"bearerKey", "headerKey"}
    for path in OPEN:
        assert doc["paths"][path]["get"]["security"] == []


@pytest.mark.parametrize("method,path,admin_only", OPS, ids=[f"{m} {p}" for m, p, _ in OPS])
def test_no_key_or_a_wrong_key_gets_401_and_no_data(srv, method, path, admin_only):
    for headers in (
        {},
        auth("cxp_key_0123456789abcdef_wrong"),
        {"X-API-Key": "garbage"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        auth("x" * 5000),
    ):
        r = call(srv, method, fill(path), headers)
        assert r.status_code == 401, (headers, r.status_code, r.text[:200])
        assert r.json() == {"error": {"status": 401, "message": r.json()["error"]["message"]}}
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert not any(u in r.text for u in USERS)


def test_unknown_api_paths_also_need_a_key(srv):
    """Probing without a key learns nothing, not even which routes exist."""
    assert call(srv, "GET", "/api/v1/nothing-here").status_code == 401
    assert call(srv, "GET", "/api/v1/nothing-here", auth(srv.helpdesk_key)).status_code == 404
    assert call(srv, "GET", "/api/v1/health").status_code == 200
    assert call(srv, "GET", "/").status_code == 200 and call(srv, "GET", "/static/app.js").status_code == 200


@pytest.mark.parametrize(
    "method,path", [(m, p) for m, p, admin in OPS if admin], ids=[f"{m} {p}" for m, p, a in OPS if a]
)
def test_a_helpdesk_key_on_an_admin_route_gets_403(srv, method, path):
    r = call(srv, method, fill(path), auth(srv.helpdesk_key), json={"role": "admin", "name": "sneaky"})
    assert r.status_code == 403, r.text
    assert "admin role" in r.json()["error"]["message"]
    assert not any(k.name == "sneaky" for k in srv.registry.list_api_keys())


def test_the_right_key_gets_200_on_every_route(srv):
    """Helpdesk routes with the helpdesk key (also by X-API-Key), admin routes with the admin key."""
    reg = srv.registry
    token_secret, _token = reg.create_token(site="Lisbon floor 3", uses=2, note="for the route test")
    reg.enroll(token_secret, "agent-route-test", "DESK-999")
    _, spare_token = reg.create_token(site="spare")
    _, spare_key = reg.create_api_key("helpdesk", "spare")
    ids = {"agent_id": AGENT, "key_id": spare_key.key_id, "token_id": spare_token.token_id}
    seen = set()
    for method, path, admin_only in OPS:
        key = srv.admin_key if admin_only else srv.helpdesk_key
        target = fill(
            path, {**ids, "agent_id": "agent-route-test"} if path.startswith("/api/v1/admin/agents/") else ids
        )
        body = {"role": "helpdesk", "name": "made by the route test"} if path == "/api/v1/admin/keys" else {}
        if path == "/api/v1/admin/config":
            body = {"toml": EXAMPLE_CONFIG.read_text()}
        r = call(srv, method, target, auth(key), json=body if method in ("POST", "PUT") else None)
        if path == "/api/v1/alerts/test":
            assert r.status_code == 409, r.text  # authorized; this server has no webhooks to send to
        else:
            assert r.status_code in (200, 201), (method, path, r.status_code, r.text[:300])
        if not admin_only and method == "GET":
            assert call(srv, method, target, {"X-API-Key": key}).status_code == 200, path
        seen.add((method, path))
    assert len(seen) == len(OPS)
    # The revocations took: the spare key no longer opens anything, the agent is marked revoked.
    assert not any(k.key_id == spare_key.key_id and k.revoked_us is None for k in reg.list_api_keys())
    assert next(a for a in reg.list_agents() if a.agent_id == "agent-route-test").revoked_us is not None


def test_admin_creates_a_key_that_works_at_once_and_revoking_it_shuts_it_out(srv):
    r = call(srv, "POST", "/api/v1/admin/keys", auth(srv.admin_key), json={"role": "helpdesk", "name": "night shift"})
    assert r.status_code == 201, r.text
    new, info = r.json()["key"], r.json()["info"]
    assert info["role"] == "helpdesk" and "secret" not in str(info).lower()
    assert call(srv, "GET", "/api/v1/incidents", auth(new)).status_code == 200
    assert call(srv, "GET", "/api/v1/admin/keys", auth(new)).status_code == 403
    listed = call(srv, "GET", "/api/v1/admin/keys", auth(srv.admin_key)).json()["keys"]
    assert new not in str(listed), "the list never shows a secret"
    assert call(srv, "POST", f"/api/v1/admin/keys/{info['key_id']}/revoke", auth(srv.admin_key)).status_code == 200
    r = call(srv, "GET", "/api/v1/incidents", auth(new))
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
    # Both changes are in the audit log under the admin's key.
    entries = call(srv, "GET", "/api/v1/admin/audit", auth(srv.admin_key), params={"subject": info["key_id"]}).json()[
        "entries"
    ]
    assert [e["action"] for e in entries] == ["api_key.create", "api_key.revoke"]
    assert {e["actor_name"] for e in entries} == {"test admin"}


@pytest.mark.parametrize(
    "body,needle",
    [
        ({"role": "root", "name": "x"}, "role must be one of"),
        ({"role": "admin"}, "name is required"),
        ({"role": "admin", "name": "x" * 101}, "at most 100"),
        ([1, 2], "JSON object"),
    ],
)
def test_admin_input_is_checked(srv, body, needle):
    r = call(srv, "POST", "/api/v1/admin/keys", auth(srv.admin_key), json=body)
    assert r.status_code == 400 and needle in r.json()["error"]["message"], r.text
    r = call(srv, "POST", "/api/v1/admin/tokens", auth(srv.admin_key), json={"uses": 0})
    assert r.status_code == 400 and "uses must be" in r.json()["error"]["message"]


def _helpdesk_id(srv) -> str:
    return srv.registry.verify_api_key(srv.helpdesk_key).key_id


def test_every_lookup_of_a_person_is_in_the_audit_log_who_whom_when_where(srv):
    t0 = time.time_ns() // 1000
    key = auth(srv.helpdesk_key)
    window = {"window": "1h"}
    assert call(srv, "GET", f"/api/v1/agents/{AGENT}", key, params={**window, "timeline": "false"}).status_code == 200
    assert call(srv, "GET", f"/api/v1/agents/{AGENT}/timeline", key, params=window).status_code == 200
    assert call(srv, "GET", f"/api/v1/agents/{AGENT}/ticket", key, params=window).status_code == 200
    assert call(srv, "GET", "/api/v1/agents/agent-nobody", key).status_code == 404
    assert call(srv, "GET", "/api/v1/agents", key, params={"q": "porto"}).status_code == 200
    # A spoofed X-Forwarded-For is ignored: no proxy is trusted on this server.
    assert (
        call(srv, "GET", f"/api/v1/agents/{AGENT}/ticket", {**key, "X-Forwarded-For": "203.0.113.99"}).status_code
        == 200
    )
    t1 = time.time_ns() // 1000
    hid = _helpdesk_id(srv)
    r = call(
        srv, "GET", "/api/v1/admin/audit", auth(srv.admin_key), params={"actor": f"key:{hid}", "since": str(t0 / 1e6)}
    )
    assert r.status_code == 200, r.text
    entries = r.json()["entries"]
    assert [(e["action"], e["subject"]) for e in entries] == [
        ("agent.view", AGENT),
        ("agent.timeline", AGENT),
        ("agent.ticket", AGENT),
        ("agent.view", "agent-nobody"),
        ("agents.search", ""),
        ("agent.ticket", AGENT),
    ]
    for e in entries:
        assert t0 <= e["ts_us"] <= t1, "when"
        assert e["actor"] == f"key:{hid}" and e["actor_name"] == "test helpdesk", "who"
        assert e["remote"] == "127.0.0.1", "where (not the forged header)"
    view = entries[0]["detail"]
    assert "user=maria.silva" in view and "host=DESK-042" in view and "window=1h" in view and "status=200" in view, (
        "whom"
    )
    assert "no such agent" in entries[3]["detail"] and "status=404" in entries[3]["detail"]
    search = entries[4]["detail"]
    assert "q='porto'" in search and "agent-0001 (joao.pereira)" in search and "agent-0002 (ana.costa)" in search


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(day_db):
    s = ServerThread(day_db, now_us=lambda: DAY_END, trusted_proxies=("127.0.0.0/8",)).start()
    try:
        t0 = time.time_ns() // 1000
        r = call(
            s,
            "GET",
            f"/api/v1/agents/{AGENT}/ticket",
            {**auth(s.helpdesk_key), "X-Forwarded-For": "198.51.100.7, 10.9.9.9, 127.0.0.1"},
        )
        assert r.status_code == 200
        (e,) = s.registry.audit(since_us=t0, subject=AGENT)
        # The last hop that is not a trusted proxy: 10.9.9.9 (198.51.100.7 could be forged by the client).
        assert e.remote == "10.9.9.9"
    finally:
        s.stop()


class _BrokenAudit:
    """The real registry, except that the audit log cannot be written (a full disk, a lost database)."""

    def __init__(self, reg):
        self._reg = reg

    def __getattr__(self, name):
        return getattr(self._reg, name)

    def record_audit(self, **kw):
        raise OSError("disk full")


def test_a_lookup_that_cannot_be_recorded_is_refused(day_db):
    reg, helpdesk, _ = registry_with_keys(day_db)
    s = ServerThread(day_db, now_us=lambda: DAY_END, registry=_BrokenAudit(reg)).start()
    try:
        for path, params in (
            (f"/api/v1/agents/{AGENT}", {"timeline": "false"}),
            (f"/api/v1/agents/{AGENT}/ticket", {}),
            ("/api/v1/agents", {"q": "maria"}),
            ("/api/v1/fleet", {}),
        ):
            r = call(s, "GET", path, auth(helpdesk), params=params)
            assert r.status_code == 503, (path, r.status_code)
            assert "audit log" in r.json()["error"]["message"] and not any(u in r.text for u in USERS)
        # Views that name nobody still work.
        assert call(s, "GET", "/api/v1/incidents", auth(helpdesk)).status_code == 200
    finally:
        s.stop()
        reg.close()


def test_pseudonymized_views_contain_no_user_names(day_db, tmp_path):
    secret_file = tmp_path / "pseudonym.key"
    s = ServerThread(day_db, now_us=lambda: DAY_END, pseudonymize=True, pseudonym_secret_file=str(secret_file)).start()
    try:
        key = auth(s.helpdesk_key)
        assert secret_file.stat().st_mode & 0o777 == 0o600
        secret = secret_file.read_bytes()
        expect = {u: "u-" + hmac.new(secret, u.encode(), hashlib.sha256).hexdigest()[:12] for u in USERS}
        fleet = call(s, "GET", "/api/v1/fleet", key, params={"window": "15m"})
        by_site = call(s, "GET", "/api/v1/agents", key, params={"q": "porto"})
        everyone = call(s, "GET", "/api/v1/agents", key, params={"q": ""})
        incidents = call(s, "GET", "/api/v1/incidents", key, params={"state": "all"})
        for r in (fleet, by_site, everyone, incidents):
            assert r.status_code == 200, r.text
            assert not any(u in r.text for u in USERS), r.text[:500]
        assert {a["user"] for a in fleet.json()["worst"]} == set(expect.values())
        assert sorted(a["user"] for a in by_site.json()["agents"]) == sorted(
            [expect["joao.pereira"], expect["ana.costa"]]
        )
        # Stable: the same person has the same pseudonym in every view and on every request.
        again = call(s, "GET", "/api/v1/fleet", key, params={"window": "15m"}).json()
        assert {a["agent_id"]: a["user"] for a in again["worst"]} == {
            a["agent_id"]: a["user"] for a in fleet.json()["worst"]
        }
        # Looking a person up by name still shows the name (and is audited): the analyst already knows it.
        named = call(s, "GET", "/api/v1/agents", key, params={"q": "maria"}).json()["agents"]
        assert [a["user"] for a in named] == ["maria.silva"]
        assert (
            call(s, "GET", f"/api/v1/agents/{AGENT}", key, params={"timeline": "false"}).json()["agent"]["user"]
            == "maria.silva"
        )
    finally:
        s.stop()
    # A restart with the same secret file gives the same pseudonyms.
    s = ServerThread(day_db, now_us=lambda: DAY_END, pseudonymize=True, pseudonym_secret_file=str(secret_file)).start()
    try:
        worst = call(s, "GET", "/api/v1/fleet", auth(s.helpdesk_key), params={"window": "15m"}).json()["worst"]
        assert {a["user"] for a in worst} == set(expect.values())
    finally:
        s.stop()


def test_metrics_need_a_key_unless_opened(day_db):
    s = ServerThread(day_db, now_us=lambda: DAY_END).start()
    try:
        assert call(s, "GET", "/metrics").status_code == 401
        assert call(s, "GET", "/metrics", auth(s.helpdesk_key)).status_code == 200
    finally:
        s.stop()
    s = ServerThread(day_db, now_us=lambda: DAY_END, metrics_open=True).start()
    try:
        r = call(s, "GET", "/metrics")
        assert r.status_code == 200 and not any(u in r.text for u in USERS), "metrics hold counts per site, no person"
        assert call(s, "GET", "/api/v1/fleet").status_code == 401, "opening /metrics opens nothing else"
    finally:
        s.stop()


def test_the_command_line_lookup_is_audited_too(day_db):
    """``cxpulse lookup`` reads the database directly, so it writes its own entry: actor cli:<os user>."""
    import getpass

    from ..conftest import run_cli

    t0 = time.time_ns() // 1000
    r = run_cli("lookup", "maria", "--db", day_db, "--window", "15m")
    assert r.returncode == 0, r.stderr
    assert run_cli("lookup", "nobody-at-all", "--db", day_db).returncode == 1
    reg, _, _ = registry_with_keys(day_db)
    try:
        entries = reg.audit(since_us=t0, actor=f"cli:{getpass.getuser()}")
    finally:
        reg.close()
    assert [(e.action, e.subject) for e in entries] == [("cli.lookup", AGENT), ("cli.lookup", "")]
    assert "user=maria.silva" in entries[0].detail and "window=900s" in entries[0].detail
    assert "no match" in entries[1].detail and entries[0].remote.startswith("local:")


def test_admin_reads_and_changes_the_central_config(srv):
    from cxpulse.collector.lookup.admin_api import central_config_available

    assert central_config_available(), "collector/config/central.py is part of this build"
    admin = auth(srv.admin_key)
    text = EXAMPLE_CONFIG.read_text()
    r = call(srv, "PUT", "/api/v1/admin/config", admin, json={"toml": text})
    assert r.status_code == 200, r.text
    version = r.json()["version"]
    assert call(srv, "GET", "/api/v1/admin/config", admin).json() == {"version": version, "toml": text}
    # Raw TOML works too; the same text keeps its version.
    r = call(srv, "PUT", "/api/v1/admin/config", {**admin, "Content-Type": "text/plain"}, content=text.encode())
    assert r.json() == {"version": version}
    bad = call(srv, "PUT", "/api/v1/admin/config", admin, json={"toml": "[cadence]\nprobe = -5\n"})
    assert bad.status_code == 400 and "configuration refused" in bad.json()["error"]["message"], bad.text
    assert call(srv, "GET", "/api/v1/admin/config", admin).json()["version"] == version, "a refused text is not stored"
    assert call(srv, "PUT", "/api/v1/admin/config", auth(srv.helpdesk_key), json={"toml": text}).status_code == 403
    assert [e.action for e in srv.registry.audit(subject=f"version {version}")][-1:] == ["config.update"]


def test_collector_serve_flags_reach_the_api(tmp_path, procs):
    """`collector serve --http ... --pseudonymize --metrics-open --trusted-proxy`: a real collector process."""
    import socket

    from cxpulse.collector.store import open_store

    from ..conftest import CollectorProc
    from .scenario import fill_fleet

    db = tmp_path / "c.sqlite"
    store = open_store(str(db))
    try:
        fill_fleet(store, time.time_ns() // 1000 // 1_000_000 * 1_000_000)
    finally:
        store.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    col = CollectorProc(
        tmp_path,
        db,
        extra=["--http", f"127.0.0.1:{port}", "--pseudonymize", "--metrics-open", "--trusted-proxy", "127.0.0.1"],
    ).start()
    procs.append(col)
    base = f"http://127.0.0.1:{port}"
    reg, helpdesk, _ = registry_with_keys(str(db))
    try:
        assert httpx.get(base + "/api/v1/fleet", timeout=10).status_code == 401
        assert httpx.get(base + "/metrics", timeout=30).status_code == 200, "--metrics-open"
        fleet = httpx.get(base + "/api/v1/fleet", headers=auth(helpdesk), timeout=60)
        assert fleet.status_code == 200 and len(fleet.json()["worst"]) == 3, fleet.text[:300]
        assert not any(u in fleet.text for u in USERS) and all(
            a["user"].startswith("u-") for a in fleet.json()["worst"]
        )
        assert (tmp_path / "pseudonym.key").stat().st_mode & 0o777 == 0o600, "the secret beside the database"
        t0 = time.time_ns() // 1000
        r = httpx.get(
            base + "/api/v1/agents/agent-0001/ticket",
            headers={**auth(helpdesk), "X-Forwarded-For": "10.20.30.40"},
            timeout=60,
        )
        assert r.status_code == 200 and "joao.pereira" in r.text
        (e,) = reg.audit(since_us=t0, subject="agent-0001")
        assert e.remote == "10.20.30.40" and e.action == "agent.ticket"
    finally:
        reg.close()
    assert col.stop() == 0


def test_keys_and_audit_on_postgresql():
    """The same checks on a PostgreSQL store: the registry lives in the store's schema (CXPULSE_TEST_POSTGRES)."""
    from cxpulse.collector.store import open_store

    from ..stores import fresh_schema, postgres_url
    from .scenario import fill_fleet

    with fresh_schema(postgres_url()) as (_, url):
        store = open_store(url)
        try:
            fill_fleet(store, DAY_END)
        finally:
            store.close()
        s = ServerThread(url, now_us=lambda: DAY_END, pseudonymize=True).start()
        try:
            assert call(s, "GET", "/api/v1/fleet").status_code == 401
            assert call(s, "GET", "/api/v1/admin/audit", auth(s.helpdesk_key)).status_code == 403
            fleet = call(s, "GET", "/api/v1/fleet", auth(s.helpdesk_key))
            assert fleet.status_code == 200 and not any(u in fleet.text for u in USERS)
            t0 = time.time_ns() // 1000
            assert call(s, "GET", "/api/v1/agents/agent-0003/ticket", auth(s.helpdesk_key)).status_code == 200
            entries = call(s, "GET", "/api/v1/admin/audit", auth(s.admin_key), params={"subject": "agent-0003"}).json()[
                "entries"
            ]
            (e,) = [e for e in entries if e["ts_us"] >= t0]
            assert e["action"] == "agent.ticket" and "user=rui.santos" in e["detail"] and e["remote"] == "127.0.0.1"
        finally:
            s.stop()


@pytest.mark.parametrize(
    "peer,xff,trusted,expect",
    [
        ("127.0.0.1", "203.0.113.5", (), "127.0.0.1"),  # no proxy trusted: the header is ignored
        ("10.0.0.2", "203.0.113.5", ("127.0.0.1",), "10.0.0.2"),  # the peer is not the trusted proxy
        ("127.0.0.1", "203.0.113.5", ("127.0.0.1",), "203.0.113.5"),
        ("127.0.0.1", "1.1.1.1, 203.0.113.5, 10.0.0.9", ("127.0.0.1", "10.0.0.0/8"), "203.0.113.5"),
        ("127.0.0.1", "not-an-address", ("127.0.0.1",), "127.0.0.1"),  # garbage: keep what we know
        ("127.0.0.1", "", ("127.0.0.1",), "127.0.0.1"),
    ],
)
def test_client_address_for_the_audit_log(peer, xff, trusted, expect):
    from cxpulse.collector.lookup.access import Access

    a = Access(None, trusted_proxies=trusted)
    headers = [(b"x-forwarded-for", xff.encode())] if xff else []
    assert a.remote({"client": (peer, 40000), "headers": headers}) == expect


def test_bad_access_settings_fail_at_start(tmp_path):
    from cxpulse.collector.lookup.access import Access, load_pseudonym_secret

    with pytest.raises(ValueError, match="trusted proxy must be an IP address"):
        Access(None, trusted_proxies=("proxy.example.com",))
    short = tmp_path / "short.key"
    short.write_bytes(b"abc")
    with pytest.raises(ValueError, match="shorter than 16 bytes"):
        load_pseudonym_secret(short)
    made = load_pseudonym_secret(tmp_path / "new" / "p.key")
    assert len(made) == 32 and load_pseudonym_secret(tmp_path / "new" / "p.key") == made
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["p.key"], "no temporary file left behind"


def test_a_key_made_with_pseudonymize_sees_pseudonyms(srv):
    """Per key: a floor supervisor's key sees codes in the fleet while the helpdesk's key sees names."""
    r = call(
        srv,
        "POST",
        "/api/v1/admin/keys",
        auth(srv.admin_key),
        json={"role": "helpdesk", "name": "floor supervisor", "pseudonymize": True},
    )
    assert r.status_code == 201 and r.json()["info"]["pseudonymize"] is True, r.text
    masked = auth(r.json()["key"])
    fleet = call(srv, "GET", "/api/v1/fleet", masked)
    assert fleet.status_code == 200 and not any(u in fleet.text for u in USERS)
    assert all(a["user"].startswith("u-") for a in fleet.json()["worst"])
    assert not any(u in call(srv, "GET", "/api/v1/agents", masked, params={"q": "porto"}).text for u in USERS)
    assert "joao.pereira" in call(srv, "GET", "/api/v1/fleet", auth(srv.helpdesk_key)).text, "the collector shows names"
    bad = call(
        srv,
        "POST",
        "/api/v1/admin/keys",
        auth(srv.admin_key),
        json={"role": "helpdesk", "name": "x", "pseudonymize": "yes"},
    )
    assert bad.status_code == 400 and "pseudonymize must be" in bad.json()["error"]["message"]


def test_reading_the_audit_log_is_recorded(srv):
    t0 = time.time_ns() // 1000
    assert call(srv, "GET", "/api/v1/admin/audit", auth(srv.admin_key), params={"subject": AGENT}).status_code == 200
    admin = srv.registry.verify_api_key(srv.admin_key)
    (e,) = [e for e in srv.registry.audit(since_us=t0, actor=f"key:{admin.key_id}") if e.action == "audit.read"]
    assert f"subject={AGENT}" in e.detail and e.remote == "127.0.0.1"
