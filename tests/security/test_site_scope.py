"""Site-scoped keys and webhooks, route by route (issue 18): a client's team never sees another's desks.

Two sites share one collector: Lisbon (two desks) and Porto (three desks, in worse shape, so they
would head every list). A helpdesk key scoped to Lisbon asks every route the app serves; the
list of routes is read from the running app, so a route added without a case here fails
``test_every_route_has_a_scope_case``. For each route: nothing of Porto in the answer (agent ids,
users, names, hosts, the site's name, its desk counts), and Lisbon's data where the route shows
desks. A Porto desk asked for by id, pseudonym, login, name or host answers exactly as a desk
that does not exist. A webhook scoped to Lisbon gets Lisbon's incidents only, counted over
Lisbon's desks. Both stores (PostgreSQL with CXPULSE_TEST_POSTGRES).
"""

from __future__ import annotations

import json
import random
import time

import httpx
import pytest

from cxpulse.collector.alerts import AlertConfig, WebhookConfig
from cxpulse.collector.security.registry import Registry
from cxpulse.collector.store import AgentInfo, IncidentRecord, PendingBatch, open_store
from cxpulse.v1 import payload as p
from tests.web.conftest import ServerThread, auth
from tests.web.test_alerts import Receiver

S = 1_000_000
M = 60 * S
NOW = int(time.time()) // 60 * M
A_SITE, B_SITE = "Lisbon", "Porto"
A = [
    AgentInfo("agent-lis-1", "LIS-DESK-01", "ana.lisboa", "Windows 11", "0.1.0", A_SITE, "Ana Lisboa"),
    AgentInfo("agent-lis-2", "LIS-DESK-02", "alvaro.lis", "Windows 11", "0.1.0", A_SITE, "Alvaro Lis"),
]
B = [
    AgentInfo("agent-opo-1", "OPO-DESK-01", "bruno.portela", "Windows 10", "0.1.0", B_SITE, "Bruno Portela"),
    AgentInfo("agent-opo-2", "OPO-DESK-02", "beatriz.opo", "Windows 10", "0.1.0", B_SITE, "Beatriz Oporto"),
    AgentInfo("agent-opo-3", "OPO-DESK-03", "bento.douro", "macOS 15", "0.1.0", B_SITE, "Bento Douro"),
]
# Everything that would say a Porto desk exists. "3 of 5" and "2 sites" are the detector's counts
# over both sites, which a Lisbon key must not read either.
B_MARKERS = [x for i in B for x in (i.agent_id, i.host, i.os_user, i.display_name)] + [B_SITE, "3 of 5", "2 sites"]
A_IDS = [i.agent_id for i in A]
NOBODY = "agent-nobody-0"

PLATFORM_EVIDENCE = (
    "salesforce failing for 3 of 5 agents checking it with a clean path, behind 2 sites/ISPs "
    f"({A_SITE}, {B_SITE}); typical: HTTP 503; 10:00-10:05, 3 agents"
)


def _fill(url: str) -> None:
    """15 minutes of every desk up to NOW (Porto's lossy) and three incidents: one platform incident
    across both sites (one Lisbon desk, two Porto desks), one site incident each."""
    store = open_store(url)
    rnd = random.Random(5)
    start = NOW - 15 * M
    keys = {}
    try:
        for info in A + B:
            keys[info.agent_id] = key = store.upsert_agent(info, NOW)
            bad = info.site == B_SITE
            gw = p.Series(target="gateway", address="10.1.0.1", method="icmp_raw", hop=1)
            isp = p.Series(target="hop2", address="100.64.9.1", method="icmp_raw", hop=2)
            app = p.Series(target="salesforce", address="203.0.113.20", method="https", kind="http")
            for i in range(15 * 60):
                ts = start + i * S
                gw.add(ts, 1500 + rnd.randrange(0, 400))
                isp.add(ts + 200, None if bad and rnd.random() < 0.3 else 9000 + rnd.randrange(0, 900))
                if i % 30 == 0:
                    app.add(
                        ts,
                        dns=2000,
                        tcp=20000,
                        tls=40000,
                        ttfb=150_000,
                        total=200_000,
                        status=200,
                        ver="HTTP/2",
                        cert=80,
                        err=None,
                    )
            events = (
                [
                    p.Event(
                        f"loss:{info.agent_id}",
                        "loss_burst",
                        "hop2",
                        start + 60 * S,
                        start + 600 * S,
                        3,
                        "30% loss at hop 2; gateway clean",
                    )
                ]
                if bad
                else []
            )
            store.commit_batches([PendingBatch(key, 1, 1, p.SampleBatch([gw, isp, app], events, []))])
        span = {"start_us": NOW - 10 * M, "last_us": NOW - 5 * M}

        def agents(*ids):
            return {keys[i]: (span["start_us"], span["last_us"]) for i in ids}

        store.update_incidents(
            lambda open_now: [
                IncidentRecord(
                    None,
                    "platform",
                    "salesforce",
                    span["start_us"],
                    span["last_us"],
                    None,
                    span["start_us"],
                    PLATFORM_EVIDENCE,
                    agents("agent-lis-1", "agent-opo-1", "agent-opo-2"),
                ),
                IncidentRecord(
                    None,
                    "site",
                    B_SITE,
                    span["start_us"],
                    span["last_us"],
                    None,
                    span["start_us"],
                    f"{B_SITE}: 3 of 3 agents lose the path beyond their desks together (30% loss); "
                    "elsewhere 0 of 2; 10:00-10:05, 3 agents",
                    agents(*[i.agent_id for i in B]),
                ),
                IncidentRecord(
                    None,
                    "site",
                    A_SITE,
                    span["start_us"],
                    span["last_us"],
                    None,
                    span["start_us"],
                    f"{A_SITE}: 2 of 2 agents lose the path beyond their desks together (20% loss); "
                    "elsewhere 3 of 5; 10:00-10:05, 2 agents",
                    agents(*A_IDS),
                ),
            ]
        )
    finally:
        store.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request, tmp_path_factory):
    """A collector serving both sites over HTTP, with a Lisbon-scoped helpdesk key (plain and
    pseudonymizing), an unscoped helpdesk key, an admin key, and two webhooks (all, Lisbon)."""
    if request.param == "sqlite":
        url, cleanup = str(tmp_path_factory.mktemp("scope") / "collector.sqlite"), None
    else:
        from tests.stores import fresh_schema, postgres_url

        cleanup = fresh_schema(postgres_url())
        url = cleanup.__enter__()[1]
    _fill(url)
    reg = Registry.open(url)
    keys = {
        "scoped": reg.create_api_key("helpdesk", "acme team", sites=[A_SITE])[0],
        "scoped_pseudo": reg.create_api_key("helpdesk", "acme analyst", sites=[A_SITE], pseudonymize=True)[0],
        "helpdesk": reg.create_api_key("helpdesk", "bpo helpdesk")[0],
        "admin": reg.create_api_key("admin", "bpo admin")[0],
    }
    all_rx, lis_rx = Receiver(), Receiver()
    cfg = AlertConfig(
        webhooks=[
            WebhookConfig(name="bpo", url=all_rx.url),
            WebhookConfig(name="acme", url=lis_rx.url, sites=[A_SITE]),
        ],
        backoff_base_s=0.05,
        backoff_max_s=0.2,
        give_up_after_s=30.0,
    )
    cfg.validate()
    server = ServerThread(url, registry=reg, now_us=lambda: NOW, alerts_config=cfg).start()
    server.keys, server.receivers = keys, {"bpo": all_rx, "acme": lis_rx}
    try:
        yield server
    finally:
        server.stop()
        reg.close()
        all_rx.close()
        lis_rx.close()
        if cleanup is not None:
            cleanup.__exit__(None, None, None)


def call(s, method: str, path: str, key: str = "scoped", **params) -> httpx.Response:
    return httpx.request(method, s.url + path, params=params, headers=auth(s.keys[key]), timeout=60)


def no_b(r: httpx.Response) -> None:
    leaked = [m for m in B_MARKERS if m in r.text]
    assert not leaked, f"{r.request.method} {r.request.url.path} shows Porto: {leaked}"


def same_as_nobody(s, path_of, b_id: str, nobody: str = NOBODY, key: str = "scoped", **params) -> None:
    """Asking for a Porto desk answers as asking for a desk that does not exist (the id echoed aside)."""
    got = call(s, "GET", path_of(b_id), key, **params)
    none = call(s, "GET", path_of(nobody), key, **params)
    assert got.status_code == none.status_code == 404
    assert got.text.replace(b_id, nobody) == none.text


def incidents_of(s, key: str = "scoped") -> list[dict]:
    r = call(s, "GET", "/api/v1/incidents", key, state="all", window="1h")
    assert r.status_code == 200
    return r.json()["incidents"]


# --- every route ----------------------------------------------------------------------------------


def _agents(s):
    r = call(s, "GET", "/api/v1/agents", q="", limit=500)
    assert r.status_code == 200 and sorted(a["agent_id"] for a in r.json()["agents"]) == A_IDS
    no_b(r)
    for q in ("bruno.portela", "Bruno Portela", "OPO-DESK-01", "agent-opo-1", B_SITE, "opo"):
        got, none = call(s, "GET", "/api/v1/agents", q=q), call(s, "GET", "/api/v1/agents", q="zz-nobody-zz")
        assert got.status_code == none.status_code == 200 and got.json()["agents"] == none.json()["agents"] == [], q
    # The unscoped key does find them: the check above can fail.
    assert [
        a["agent_id"] for a in call(s, "GET", "/api/v1/agents", "helpdesk", q="bruno.portela").json()["agents"]
    ] == ["agent-opo-1"]


def _person(suffix: str, **params):
    def check(s):
        r = call(s, "GET", f"/api/v1/agents/agent-lis-1{suffix}", **params)
        assert r.status_code == 200 and ("agent-lis-1" in r.text or suffix == "/ticket")
        no_b(r)
        for b in B:
            same_as_nobody(s, lambda i: f"/api/v1/agents/{i}{suffix}", b.agent_id, **params)
        # A pseudonymizing key follows a desk pseudonym: Porto's opens nothing either.
        pseudo = s.handle.access.desk_pseudonym("agent-opo-1")
        same_as_nobody(
            s, lambda i: f"/api/v1/agents/{i}{suffix}", pseudo, "a-000000000000", key="scoped_pseudo", **params
        )
        assert call(s, "GET", f"/api/v1/agents/agent-opo-1{suffix}", "helpdesk", **params).status_code == 200

    return check


def _fleet(s):
    r = call(s, "GET", "/api/v1/fleet", limit=1000)
    assert r.status_code == 200
    no_b(r)
    f = r.json()
    assert f["agents_total"] == 2 and f["agents_active"] == 2
    assert sorted(x["agent_id"] for x in f["worst"]) == A_IDS
    assert [x["site"] for x in f["sites"]] == [A_SITE] and f["sites"][0]["agents"] == 2
    assert all(a["agents"] <= 2 and a["sites"] == [A_SITE] for a in f["apps"])
    # The same route with the unscoped key counts both sites.
    assert call(s, "GET", "/api/v1/fleet", "helpdesk").json()["agents_total"] == 5


def _incidents(s):
    r = call(s, "GET", "/api/v1/incidents", state="all", window="1h")
    no_b(r)
    got = {(i["kind"], i["scope"]): i for i in r.json()["incidents"]}
    assert set(got) == {("platform", "salesforce"), ("site", A_SITE)}
    platform = got[("platform", "salesforce")]
    assert platform["agents"] == 1 and platform["agent_ids"] == ["agent-lis-1"]
    assert "1 agents" in platform["evidence"] and "HTTP 503" in platform["evidence"]
    assert "elsewhere" not in got[("site", A_SITE)]["evidence"]
    every = {(i["kind"], i["scope"]): i for i in incidents_of(s, "helpdesk")}
    assert every[("platform", "salesforce")]["agents"] == 3 and ("site", B_SITE) in every


def _metrics(s):
    r = call(s, "GET", "/metrics")
    assert r.status_code == 403 and "site scope" in r.json()["error"]["message"]
    no_b(r)
    assert B_SITE in call(s, "GET", "/metrics", "helpdesk").text  # what a scoped key would have read


def _admin_only(method: str, path: str):
    def check(s):
        r = call(
            s, method, path.replace("{key_id}", "x").replace("{token_id}", "x").replace("{agent_id}", "agent-opo-1")
        )
        assert r.status_code == 403
        no_b(r)

    return check


def _open(path: str):
    def check(s):
        r = httpx.get(s.url + path.replace("{name}", "app.js"), headers=auth(s.keys["scoped"]), timeout=30)
        assert r.status_code == 200
        no_b(r)

    return check


CASES = {
    ("GET", "/api/v1/agents"): _agents,
    ("GET", "/api/v1/agents/{agent_id}"): _person("", window="1h", timeline="true"),
    ("GET", "/api/v1/agents/{agent_id}/timeline"): _person("/timeline", window="1h"),
    ("GET", "/api/v1/agents/{agent_id}/ticket"): _person("/ticket", window="1h"),
    ("GET", "/api/v1/fleet"): _fleet,
    ("GET", "/api/v1/incidents"): _incidents,
    ("GET", "/metrics"): _metrics,
    ("GET", "/api/v1/alerts/deliveries"): _admin_only("GET", "/api/v1/alerts/deliveries"),
    ("POST", "/api/v1/alerts/test"): _admin_only("POST", "/api/v1/alerts/test"),
    ("GET", "/api/v1/admin/keys"): _admin_only("GET", "/api/v1/admin/keys"),
    ("POST", "/api/v1/admin/keys"): _admin_only("POST", "/api/v1/admin/keys"),
    ("POST", "/api/v1/admin/keys/{key_id}/revoke"): _admin_only("POST", "/api/v1/admin/keys/{key_id}/revoke"),
    ("GET", "/api/v1/admin/tokens"): _admin_only("GET", "/api/v1/admin/tokens"),
    ("POST", "/api/v1/admin/tokens"): _admin_only("POST", "/api/v1/admin/tokens"),
    ("POST", "/api/v1/admin/tokens/{token_id}/revoke"): _admin_only("POST", "/api/v1/admin/tokens/{token_id}/revoke"),
    ("GET", "/api/v1/admin/agents"): _admin_only("GET", "/api/v1/admin/agents"),
    ("POST", "/api/v1/admin/agents/{agent_id}/revoke"): _admin_only("POST", "/api/v1/admin/agents/{agent_id}/revoke"),
    ("GET", "/api/v1/admin/audit"): _admin_only("GET", "/api/v1/admin/audit"),
    ("GET", "/api/v1/admin/config"): _admin_only("GET", "/api/v1/admin/config"),
    ("PUT", "/api/v1/admin/config"): _admin_only("PUT", "/api/v1/admin/config"),
    ("GET", "/api/v1/health"): _open("/api/v1/health"),
    ("GET", "/api/v1/glossary"): _open("/api/v1/glossary"),  # words only, no site data
    ("GET", "/api/v1/openapi.json"): _open("/api/v1/openapi.json"),
    ("GET", "/openapi.json"): _open("/openapi.json"),
    ("GET", "/"): _open("/"),
    ("GET", "/static/{name}"): _open("/static/{name}"),
}


def app_routes(s) -> list[tuple[str, str]]:
    """(method, path) of every route the running app serves (HEAD aside: Starlette adds it to GET)."""
    app = s.handle._server.config.app
    return sorted((m, r.path) for r in app.routes for m in (r.methods or ()) if m != "HEAD")


def test_every_route_has_a_scope_case(site):
    missing = [r for r in app_routes(site) if r not in CASES]
    assert not missing, f"routes without a site-scope case in {__file__}: {missing}"
    assert len(app_routes(site)) >= 20


@pytest.mark.parametrize("route", sorted(CASES), ids=lambda r: f"{r[0]} {r[1]}")
def test_route_honours_the_site_scope(site, route):
    if route not in app_routes(site):
        pytest.skip(f"{route} is not served by this build")
    CASES[route](site)


# --- keys -----------------------------------------------------------------------------------------


def test_key_sites_are_listed_and_a_scoped_admin_key_is_refused(site):
    admin = {"Authorization": f"Bearer {site.keys['admin']}"}
    keys = httpx.get(site.url + "/api/v1/admin/keys", headers=admin, timeout=30).json()["keys"]
    assert {k["name"]: k["sites"] for k in keys}["acme team"] == [A_SITE]
    assert {k["name"]: k["sites"] for k in keys}["bpo admin"] == []
    r = httpx.post(
        site.url + "/api/v1/admin/keys",
        headers=admin,
        timeout=30,
        json={"role": "admin", "name": "acme admin", "sites": [A_SITE]},
    )
    assert r.status_code == 400 and "helpdesk role" in r.json()["error"]["message"]
    for bad in ("Lisbon", [""], ["x" * 201], [1]):
        r = httpx.post(
            site.url + "/api/v1/admin/keys",
            headers=admin,
            timeout=30,
            json={"role": "helpdesk", "name": "bad", "sites": bad},
        )
        assert r.status_code == 400, bad
    r = httpx.post(
        site.url + "/api/v1/admin/keys",
        headers=admin,
        timeout=30,
        json={"role": "helpdesk", "name": "porto team", "sites": [B_SITE, " Porto "]},
    )
    assert r.status_code == 201 and r.json()["info"]["sites"] == [B_SITE]
    porto = {"Authorization": f"Bearer {r.json()['key']}"}
    seen = httpx.get(site.url + "/api/v1/agents", headers=porto, timeout=30).json()["agents"]
    assert sorted(a["agent_id"] for a in seen) == [b.agent_id for b in B]
    audit = httpx.get(
        site.url + "/api/v1/admin/audit", headers=admin, params={"subject": r.json()["info"]["key_id"]}, timeout=30
    ).json()["entries"]
    assert [e["action"] for e in audit] == ["api_key.create"] and f"sites={B_SITE}" in audit[0]["detail"]


def test_cli_creates_and_lists_a_scoped_key(tmp_path):
    from tests.conftest import run_cli

    db = str(tmp_path / "c.sqlite")
    made = run_cli(
        "collector",
        "keys",
        "create",
        "--db",
        db,
        "--role",
        "helpdesk",
        "--name",
        "acme",
        "--site",
        A_SITE,
        "--site",
        "Faro",
    )
    assert made.returncode == 0, made.stderr
    assert "sees Faro, Lisbon" in made.stderr
    with Registry.open(db) as reg:
        assert reg.verify_api_key(made.stdout.strip()).sites == ("Faro", A_SITE)
        assert "sites=Faro,Lisbon" in reg.audit()[-1].detail
    listed = run_cli("collector", "keys", "list", "--db", db)
    assert listed.returncode == 0 and "Faro,Lisbon" in listed.stdout
    refused = run_cli("collector", "keys", "create", "--db", db, "--role", "admin", "--name", "x", "--site", A_SITE)
    assert refused.returncode == 2 and "helpdesk role" in refused.stderr


# --- webhooks -------------------------------------------------------------------------------------


def test_a_scoped_webhook_gets_only_its_sites(site):
    alerter = site.handle.alerts
    site.call(alerter.evaluate_once())
    for sender in alerter.senders.values():
        assert site.call(sender.flush(20))
    bodies = {name: [json.loads(r["body"]) for r in rx.delivered()] for name, rx in site.receivers.items()}
    everything = {(b["incident"]["kind"], b["incident"]["scope"]) for b in bodies["bpo"] if b["kind"] == "incident"}
    assert {("platform", "salesforce"), ("site", B_SITE), ("site", A_SITE)} <= everything
    acme = [b for b in bodies["acme"] if b["kind"] != "test"]
    text = json.dumps(acme)
    assert not [m for m in B_MARKERS if m in text], "the Lisbon webhook got Porto data"
    incidents = {(b["incident"]["kind"], b["incident"]["scope"]): b for b in acme if b["kind"] == "incident"}
    assert set(incidents) == {("platform", "salesforce"), ("site", A_SITE)}
    assert incidents[("platform", "salesforce")]["incident"]["agents"] == 1
    assert all(b["agent"]["site"] == A_SITE for b in acme if b["kind"] == "agent_poor")


def test_webhook_sites_are_validated():
    from cxpulse.collector.alerts.config import ConfigError

    for bad in (["Lisbon", "Lisbon"], [""], ["x" * 201], "Lisbon", [" Lisbon"]):
        cfg = AlertConfig(webhooks=[WebhookConfig(name="acme", url="https://x.example", sites=bad)])
        with pytest.raises(ConfigError, match="sites must be"):
            cfg.validate()
