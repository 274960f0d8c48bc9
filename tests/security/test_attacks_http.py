"""Attacks on the collector's HTTP and file side (issue 18, findings 3, 5, 9 and 10), each on real parts.

- A local user on the collector host reads the database files (finding 3): a real ``collector
  serve`` under umask 022 makes them 0600 in a 0700 directory, and a process running as
  ``nobody`` is refused; files an older version left 0644 are tightened on open; the keys too.
- A pseudonymizing key lists people (finding 5): every documented route that can list people,
  asked through a real HTTP server, names no login, display name, host or agent id unless the
  analyst typed that person's name, host or id.
- Out-of-range parameters (finding 9): ``inf``, ``1e400``, ``nan``, year 9999, ten-thousand-week
  windows on every time parameter of every route: 400 with the parameter's name, never 500, and
  a refused lookup of a person still leaves its audit entry.
- The last admin key (finding 10): refused in the registry, the HTTP API (409) and the CLI; the
  enrollment token reaches ``agent run`` from a file, out of sight of ``ps``.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from cxpulse.collector.lookup.openapi import openapi_document
from cxpulse.collector.security.registry import Registry
from cxpulse.collector.store import open_store

from ..conftest import REPO, CollectorProc, Proc, run_cli, wait_for
from ..requirements import require
from ..web.conftest import ServerThread, auth
from ..web.scenario import DAY_END, MARIA, fill_day, fill_fleet

USERS = ("maria.silva", "joao.pereira", "ana.costa", "rui.santos")
HOSTS = ("DESK-042", "DESK-101", "DESK-102", "LAPTOP-77")
AGENT_IDS = ("agent-7f3a", "agent-0001", "agent-0002", "agent-0003")
S = 1_000_000


def _mode(p: Path) -> int:
    return p.stat().st_mode & 0o777


def _call(server, method: str, path: str, headers: dict | None = None, **kw) -> httpx.Response:
    return httpx.request(method, server.url + path, headers=headers or {}, timeout=60, **kw)


@pytest.fixture(scope="module")
def people_db(tmp_path_factory):
    """Maria's last two hours and three more desks' last 15 minutes, in a store of this module's own."""
    path = tmp_path_factory.mktemp("attacks-http") / "collector.sqlite"
    store = open_store(str(path))
    try:
        fill_day(store, start_us=DAY_END - 7200 * S, seconds=7200)
        fill_fleet(store, DAY_END)
    finally:
        store.close()
    return str(path)


@pytest.fixture(scope="module")
def srv(people_db):
    s = ServerThread(people_db, now_us=lambda: DAY_END).start()
    yield s
    s.stop()


# --- finding 3: the database and keys are private to the collector's account ------------------


def test_a_real_collector_makes_its_database_private_even_under_umask_022(tmp_path, procs):
    data = tmp_path / "var-lib-cxpulse"  # does not exist yet: the collector creates it
    db = data / "collector.sqlite"
    old = os.umask(0o022)  # the usual service umask, under which SQLite alone makes 0644 files
    try:
        col = CollectorProc(tmp_path, db).start()  # its enrollment token is written first, by the registry
        procs.append(col)
    finally:
        os.umask(old)
    wait_for(lambda: Path(str(db) + "-wal").exists() and Path(str(db) + "-shm").exists(), 20, what="WAL files")
    modes = {p.name: _mode(p) for p in data.iterdir() if p.name.startswith("collector.sqlite")}
    assert set(modes) >= {"collector.sqlite", "collector.sqlite-wal", "collector.sqlite-shm"}, modes
    assert set(modes.values()) == {0o600}, modes
    assert _mode(data) == 0o700


def test_a_local_user_cannot_read_the_database():
    require(hasattr(os, "geteuid") and os.geteuid() == 0, "switching to another local user needs root")
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="cxpulse-modes-"))  # not below pytest's 0700 tmp: nobody can reach it
    try:
        os.chmod(base, 0o755)  # the way down to the directory is open, as /var/lib is; the directory itself is not
        data = base / "data"
        db = data / "collector.sqlite"
        old = os.umask(0o022)
        try:
            store = open_store(str(db))  # open while nobody tries: the -wal and -shm exist only then
        finally:
            os.umask(old)
        try:
            fill_fleet(store, DAY_END, minutes=1)
            for name in ("collector.sqlite", "collector.sqlite-wal", "collector.sqlite-shm"):
                assert (data / name).exists()
                # head(1) as nobody: a plain system binary, no Python (the venv may not be reachable for nobody)
                r = subprocess.run(
                    ["head", "-c", "16", str(data / name)], user=65534, group=65534, capture_output=True, timeout=30
                )
                assert r.returncode != 0 and b"Permission denied" in r.stderr and not r.stdout, (
                    name,
                    r.stdout,
                    r.stderr,
                )
            # The same command as this account reads it: the refusal is the file modes, not a missing file.
            mine = subprocess.run(["head", "-c", "16", str(db)], capture_output=True, timeout=30)
            assert mine.stdout.startswith(b"SQLite format 3")
        finally:
            store.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_files_an_older_version_left_open_are_tightened_on_open(tmp_path):
    data = tmp_path / "old"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    db = data / "collector.sqlite"
    old = os.umask(0o022)
    try:
        con = sqlite3.connect(db)  # as before: SQLite's own 0644, WAL files beside it
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE x (a)")
        con.execute("INSERT INTO x VALUES (1)")
        con.commit()
        assert _mode(db) == 0o644 and _mode(Path(str(db) + "-wal")) == 0o644
        reg = Registry.open(str(db))  # the registry opens the same file; it tightens too
        reg.close()
        assert _mode(db) == 0o600 and _mode(data) == 0o700
        os.chmod(db, 0o644)
        os.chmod(data, 0o755)
        store = open_store(str(db))
        try:
            store.upsert_agent(MARIA, DAY_END)
            modes = {p.name: _mode(p) for p in data.iterdir()}
        finally:
            store.close()
        con.close()
    finally:
        os.umask(old)
    assert set(modes.values()) == {0o600} and "collector.sqlite-wal" in modes, modes
    assert _mode(data) == 0o700


def test_a_database_in_the_working_directory_leaves_that_directory_alone(tmp_path, monkeypatch):
    """``--db collector.sqlite`` in a checkout: the files are 0600, the checkout keeps its mode."""
    os.chmod(tmp_path, 0o755)
    monkeypatch.chdir(tmp_path)
    store = open_store("collector.sqlite")
    try:
        store.upsert_agent(MARIA, DAY_END)
        assert _mode(tmp_path) == 0o755
        assert {_mode(p) for p in tmp_path.glob("collector.sqlite*")} == {0o600}
    finally:
        store.close()


def test_keys_are_private_and_binary_safe(tmp_path):
    from cxpulse.collector.lookup.access import load_pseudonym_secret
    from cxpulse.collector.security import tls
    from cxpulse.collector.server import load_or_create_secret

    old = os.umask(0o022)
    try:
        # New: 0600, and the bytes come back exactly (no text-mode newline translation).
        refl = tmp_path / "reflector.key"
        made = load_or_create_secret(str(refl))
        assert _mode(refl) == 0o600 and refl.read_bytes() == made and len(made) == 32
        pseudo = tmp_path / "secrets" / "pseudonym.key"
        secret = load_pseudonym_secret(pseudo)
        assert _mode(pseudo) == 0o600 and _mode(pseudo.parent) == 0o700 and pseudo.read_bytes() == secret
        # Existing keys someone left 0644 (by hand, or an older version): tightened when read.
        os.chmod(refl, 0o644)
        os.chmod(pseudo, 0o644)
        assert load_or_create_secret(str(refl)) == made and load_pseudonym_secret(pseudo) == secret
        assert _mode(refl) == 0o600 and _mode(pseudo) == 0o600
        tls_dir = tmp_path / "tls"
        tls.init_dir(tls_dir, ["localhost"], ["127.0.0.1"])
        assert _mode(tls_dir) == 0o700
        keys = {p.name: _mode(p) for p in tls_dir.iterdir() if "key" in p.name}
        assert keys and set(keys.values()) == {0o600}, keys
    finally:
        os.umask(old)


# --- finding 5: a pseudonymizing key sees no person unless it named them -----------------------


def _people_routes() -> list[str]:
    """Every documented GET a helpdesk key may use without naming a person (no path parameter)."""
    doc = openapi_document()
    return [
        p
        for p, ops in doc["paths"].items()
        if "get" in ops
        and "{" not in p
        and not p.startswith("/api/v1/admin/")
        and not p.startswith("/api/v1/alerts/")
        and p not in ("/api/v1/health", "/api/v1/openapi.json")
    ]


def _leaks(text: str) -> list[str]:
    return [x for x in USERS + HOSTS + AGENT_IDS + ("Maria", "Silva") if x.casefold() in text.casefold()]


def test_a_pseudonymizing_key_sees_no_names_hosts_or_ids_on_any_route(srv):
    masked_key, _ = srv.registry.create_api_key("helpdesk", "floor supervisor", pseudonymize=True)
    masked = auth(masked_key)
    routes = _people_routes()
    assert {"/api/v1/agents", "/api/v1/fleet", "/api/v1/incidents"} <= set(routes), routes
    asked = 0
    for path in routes:
        for params in (
            {},
            {"q": "a"},
            {"q": "desk"},
            {"q": "agent"},
            {"q": "porto"},
            {"q": ""},
            {"window": "1h"},
            {"state": "all"},
        ):
            r = _call(srv, "GET", path, masked, params=params)
            asked += 1
            assert r.status_code == 200, (path, params, r.text[:300])
            assert not _leaks(r.text), (path, params, _leaks(r.text), r.text[:500])
    assert asked == 8 * len(routes)
    # The rows are still there, as stable codes: the search found people, the fleet lists them.
    found = _call(srv, "GET", "/api/v1/agents", masked, params={"q": "a"}).json()["agents"]
    assert len(found) == 4 and all(
        a["user"].startswith("u-") and a["host"].startswith("h-") and a["agent_id"].startswith("a-") for a in found
    ), found
    fleet = _call(srv, "GET", "/api/v1/fleet", masked).json()
    assert {a["agent_id"] for a in fleet["worst"]} == {a["agent_id"] for a in found}
    # The helpdesk's ordinary key still sees names: the key, not the collector, pseudonymizes.
    assert "joao.pereira" in _call(srv, "GET", "/api/v1/fleet", auth(srv.helpdesk_key)).text


def test_a_name_shows_only_when_that_person_is_looked_up_by_name(srv):
    masked_key, _ = srv.registry.create_api_key("helpdesk", "floor supervisor 2", pseudonymize=True)
    masked = auth(masked_key)

    def users(q: str) -> list[str]:
        r = _call(srv, "GET", "/api/v1/agents", masked, params={"q": q})
        assert r.status_code == 200, r.text
        return sorted(a["user"] for a in r.json()["agents"])

    assert users("maria") == ["maria.silva"], "a whole word of the name"
    assert users("Maria Silva") == ["maria.silva"]
    assert users("DESK-042") == ["maria.silva"], "the whole host name"
    assert users("agent-0002") == ["ana.costa"], "the whole agent id"
    assert all(u.startswith("u-") for u in users("mari")), "part of a name names nobody"
    assert all(u.startswith("u-") for u in users("desk-04")), "part of a host names nobody"


def test_a_pseudonymized_row_still_opens_that_persons_audited_view(srv):
    masked_key, info = srv.registry.create_api_key("helpdesk", "floor supervisor 3", pseudonymize=True)
    masked = auth(masked_key)
    worst = _call(srv, "GET", "/api/v1/fleet", masked).json()["worst"]
    assert worst and all(a["agent_id"].startswith("a-") for a in worst)
    t0 = time.time_ns() // 1000
    opened = {}
    for row in worst:
        r = _call(srv, "GET", f"/api/v1/agents/{row['agent_id']}/ticket", masked)
        assert r.status_code == 200, r.text
        opened[row["agent_id"]] = r.text
    entries = [e for e in srv.registry.audit(since_us=t0, actor=f"key:{info.key_id}") if e.action == "agent.ticket"]
    assert sorted(e.subject for e in entries) == sorted(AGENT_IDS), "each opening recorded under the real agent id"
    assert _call(srv, "GET", "/api/v1/agents/a-000000000000", masked).status_code == 404


# --- finding 9: every parameter range-checked, 400 with a reason, and the lookup still audited ----

BAD_TIMES = ("inf", "-inf", "1e400", "nan", "1e300", "0", "-1e18", "9999-12-31T23:59:59", "0001-01-01T00:00:00+23:59")
BAD_WINDOWS = ("99999999999999999999w", "1e400", "inf", "0", "0.1s")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/agents/agent-7f3a",
        "/api/v1/agents/agent-7f3a/timeline",
        "/api/v1/agents/agent-7f3a/ticket",
        "/api/v1/admin/audit",
    ],
)
def test_out_of_range_times_get_400_with_the_parameter_named(srv, path):
    key = auth(srv.admin_key)
    for name in ("since", "until"):
        for v in BAD_TIMES:
            r = _call(srv, "GET", path, key, params={name: v})
            assert r.status_code == 400, (path, name, v, r.status_code, r.text[:300])
            assert name in r.json()["error"]["message"], r.text
    if path != "/api/v1/admin/audit":
        for v in BAD_WINDOWS:
            r = _call(srv, "GET", path, key, params={"window": v})
            assert r.status_code == 400 and "window" in r.json()["error"]["message"], (path, v, r.text[:300])
    r = _call(srv, "GET", path, key, params={"since": str(DAY_END // S), "until": str(DAY_END // S - 60)})
    assert r.status_code == 400 and "before" in r.json()["error"]["message"], r.text


def test_out_of_range_windows_counts_and_zones_get_400(srv):
    key = auth(srv.admin_key)
    cases = [
        ("/api/v1/fleet", {"window": "1e400"}),
        ("/api/v1/fleet", {"window": "inf"}),
        ("/api/v1/fleet", {"window": "99999999999999999999w"}),
        ("/api/v1/fleet", {"limit": "1e400"}),
        ("/api/v1/incidents", {"window": "99999999999999999999w"}),
        ("/api/v1/agents", {"limit": "9" * 5000}),
        ("/api/v1/agents/agent-7f3a", {"points": "inf"}),
        ("/api/v1/agents/agent-7f3a/ticket", {"tz": "x" * 5000}),
        ("/api/v1/agents/agent-7f3a/ticket", {"tz": "../../../etc/passwd"}),
        ("/api/v1/admin/audit", {"limit": "-1"}),
    ]
    for path, params in cases:
        r = _call(srv, "GET", path, key, params=params)
        assert r.status_code == 400, (path, params, r.status_code, r.text[:300])
        assert any(n in r.json()["error"]["message"] for n in params), r.text
    for body in (b'{"uses": 1e400}', b'{"ttl_s": 1e400}', b'{"uses": NaN}', b'{"ttl_s": -Infinity}'):
        r = _call(srv, "POST", "/api/v1/admin/tokens", {**key, "Content-Type": "application/json"}, content=body)
        assert r.status_code == 400, (body, r.status_code, r.text[:300])


def test_a_refused_lookup_of_a_person_is_audited(srv):
    admin = srv.registry.verify_api_key(srv.admin_key)
    t0 = time.time_ns() // 1000
    for v in ("inf", "1e400"):
        assert (
            _call(srv, "GET", "/api/v1/agents/agent-7f3a", auth(srv.admin_key), params={"until": v}).status_code == 400
        )
    entries = [e for e in srv.registry.audit(since_us=t0, actor=f"key:{admin.key_id}") if e.action == "agent.view"]
    assert [e.subject for e in entries] == ["agent-7f3a", "agent-7f3a"]
    assert all("status=400" in e.detail and "user=maria.silva" in e.detail for e in entries), [
        e.detail for e in entries
    ]


# --- finding 10: the last admin key, and the token out of ps -------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def registry_url(request, tmp_path):
    if request.param == "sqlite":
        yield str(tmp_path / "c.sqlite")
        return
    from ..stores import fresh_schema, postgres_url

    with fresh_schema(postgres_url()) as (_, url):
        yield url


def test_the_last_admin_key_cannot_be_revoked_in_the_registry(registry_url):
    from cxpulse.collector.security.registry import LastAdminKeyError

    with Registry.open(registry_url) as reg:
        _, a = reg.create_api_key("admin", "first admin")
        _, h = reg.create_api_key("helpdesk", "desk")
        with pytest.raises(LastAdminKeyError, match="last active admin key"):
            reg.revoke_api_key(a.key_id)
        _, b = reg.create_api_key("admin", "second admin")
        assert reg.revoke_api_key(a.key_id), "with another admin key, the first goes"
        with pytest.raises(LastAdminKeyError):
            reg.revoke_api_key(b.key_id)
        assert reg.revoke_api_key(h.key_id) and not reg.revoke_api_key(h.key_id)
        assert not reg.revoke_api_key("no-such-key")
        assert [k.key_id for k in reg.list_api_keys() if k.revoked_us is None] == [b.key_id]


def test_the_last_admin_key_cannot_be_revoked_over_http_or_the_cli(tmp_path):
    db = tmp_path / "c.sqlite"
    open_store(str(db)).close()
    s = ServerThread(str(db), now_us=lambda: DAY_END).start()
    try:
        me = s.registry.verify_api_key(s.admin_key)
        r = _call(s, "POST", f"/api/v1/admin/keys/{me.key_id}/revoke", auth(s.admin_key))
        assert r.status_code == 409 and "last active admin key" in r.json()["error"]["message"], r.text
        assert _call(s, "GET", "/api/v1/admin/keys", auth(s.admin_key)).status_code == 200, "the key still works"
        cli = run_cli("collector", "keys", "revoke", me.key_id, "--db", str(db))
        assert cli.returncode == 1 and "last active admin key" in cli.stderr, (cli.stdout, cli.stderr)
        assert s.registry.verify_api_key(s.admin_key) is not None
    finally:
        s.stop()


def test_agent_run_reads_the_enrollment_token_from_a_file_out_of_ps(tmp_path, procs):
    col = CollectorProc(tmp_path, tmp_path / "collector.sqlite").start()
    procs.append(col)
    token_file = tmp_path / "enroll-token.txt"
    token_file.write_text(f"\n  {col.token}  \n")
    os.chmod(token_file, 0o600)
    agent = Proc(
        [
            "-v",
            "agent",
            "run",
            "--collector",
            col.address,
            "--ca-file",
            col.ca_file,
            "--enroll-token-file",
            str(token_file),
            "--agent-id",
            "desk-tokenfile",
            "--state-dir",
            str(tmp_path / "state"),
            "--no-gateway",
            "--interval",
            "0.2",
            "--batch-interval",
            "1",
            "--target",
            "loopback=127.0.0.1:9",
        ],
        tmp_path / "agent.log",
    ).start()
    procs.append(agent)
    cmdline_file = Path(f"/proc/{agent.p.pid}/cmdline")
    wait_for(lambda: b"enroll-token-file" in cmdline_file.read_bytes(), 10, what="the agent's command line")
    cmdline = cmdline_file.read_bytes().decode(errors="replace")
    assert col.token not in cmdline and "enroll-token-file" in cmdline

    def enrolled() -> bool:
        with Registry.open(str(col.db)) as reg:
            return any(a.agent_id == "desk-tokenfile" for a in reg.list_agents())

    wait_for(lambda: enrolled() or not agent.alive(), 30, what="the agent to enroll")
    assert enrolled(), agent.output()[-2000:]


def test_the_token_file_option_refuses_nonsense(tmp_path):
    import argparse
    import io

    from cxpulse.agent.cli import add_agent_options, config_from_args
    from cxpulse.agent.config import ConfigError, read_token_file

    p = argparse.ArgumentParser()
    add_agent_options(p)
    f = tmp_path / "t"
    f.write_text("cxp_enr_abc\n")
    assert config_from_args(p.parse_args(["--enroll-token-file", str(f)])).enroll_token == "cxp_enr_abc"
    assert read_token_file("-", io.StringIO("\ncxp_enr_stdin\n")) == "cxp_enr_stdin"
    with pytest.raises(ConfigError, match="not both"):
        config_from_args(p.parse_args(["--enroll-token-file", str(f), "--enroll-token", "x"]))
    f.write_text("  \n")
    with pytest.raises(ConfigError, match="no enrollment token"):
        read_token_file(str(f))
    with pytest.raises(ConfigError, match="cannot read"):
        read_token_file(str(tmp_path / "missing"))


def test_the_readme_never_puts_a_token_on_a_command_line():
    text = (REPO / "README.md").read_text()
    assert "--enroll-token-file" in text
    assert "--enroll-token cxp_" not in text and "--enroll-token $" not in text


# --- the page in a real headless Chromium: hostile names stay text, masked rows still open -------

from ..web import test_browser  # noqa: E402 - the fixture and helpers of the browser tests

sign_in, wait = test_browser.sign_in, test_browser.wait

EVIL_HOST = '<img src=x onerror="window.__pwned=1">'
EVIL_USER = '"><script>window.__pwned=2</script>'


@pytest.fixture(scope="module")
def evil_srv(tmp_path_factory):
    """The fleet, plus a desk whose host and user names are HTML that would run if the page used innerHTML."""
    from cxpulse.collector.store import AgentInfo

    path = tmp_path_factory.mktemp("attacks-page") / "collector.sqlite"
    store = open_store(str(path))
    try:
        fill_fleet(store, DAY_END)
        store.upsert_agent(AgentInfo("agent-evil", EVIL_HOST, EVIL_USER, "Windows 11", "0.1.0", "Porto"), DAY_END)
    finally:
        store.close()
    s = ServerThread(str(path), now_us=lambda: DAY_END).start()
    yield s
    s.stop()


def test_hostile_host_and_user_names_stay_text_on_the_page(evil_srv, browser):
    from selenium.webdriver.common.by import By

    d = browser
    d.get(evil_srv.url + "/")
    sign_in(d, evil_srv.helpdesk_key)
    wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#worst tbody tr")) >= 3, what="the fleet")
    d.find_element(By.ID, "q").send_keys("agent-evil")
    wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#results li.result"), what="search results")
    assert EVIL_HOST in d.find_element(By.ID, "results").text, "shown as the text it is"
    d.find_element(By.CSS_SELECTOR, "#results li.result").click()
    wait(d, lambda d: d.find_elements(By.ID, "who") and d.find_element(By.ID, "who").text, what="the agent page")
    assert d.find_element(By.ID, "who").text == f"{EVIL_USER} on {EVIL_HOST}"
    assert d.execute_script("return window.__pwned === undefined"), "no injected script or handler ran"
    assert not d.find_elements(By.CSS_SELECTOR, "img[src='x']")


def test_a_pseudonymizing_key_on_the_page_sees_codes_and_opens_the_audited_person(evil_srv, browser):
    from selenium.webdriver.common.by import By

    masked_key, info = evil_srv.registry.create_api_key("helpdesk", "page supervisor", pseudonymize=True)
    d = browser
    d.get(evil_srv.url + "/")
    sign_in(d, masked_key)
    wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#worst tbody tr")) >= 3, what="the fleet")
    body = d.find_element(By.TAG_NAME, "body").text
    assert not _leaks(body) and "u-" in body and "h-" in body, body[:800]
    t0 = time.time_ns() // 1000
    d.find_element(By.CSS_SELECTOR, "#worst tbody tr").click()
    wait(
        d,
        lambda d: d.find_elements(By.ID, "who") and " on " in d.find_element(By.ID, "who").text,
        what="the person's page",
    )
    who = d.find_element(By.ID, "who").text
    assert any(u in who for u in USERS + (EVIL_USER,)), who
    entries = [
        e for e in evil_srv.registry.audit(since_us=t0, actor=f"key:{info.key_id}") if e.action.startswith("agent.")
    ]
    assert entries and all(not e.subject.startswith("a-") for e in entries), [(e.action, e.subject) for e in entries]
