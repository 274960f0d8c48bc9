"""The registry's contract on both databases: hashes only, token limits, revocation, audit."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator

import pytest

from cxpulse.collector.security.registry import Actor, EnrollError, LastAdminKeyError, Registry
from cxpulse.collector.store import open_store
from tests.stores import fresh_schema, postgres_url

BACKENDS = ["sqlite", "postgres"]


class Clock:
    """Registry time under the test's control: expiry is tested by moving it, not by sleeping."""

    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(params=BACKENDS)
def url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "c.sqlite")
        return
    with fresh_schema(postgres_url()) as (_, u):
        yield u


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def reg(url, clock) -> Iterator[Registry]:
    r = Registry.open(url, clock=clock)
    yield r
    r.close()


def all_text(url: str) -> str:
    """Every value in the database as one string, to prove a secret is not in it."""
    if "://" not in url:
        db = sqlite3.connect(url)
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        out = [repr(db.execute(f'SELECT * FROM "{n}"').fetchall()) for n in names]
        db.close()
        return "\n".join(out)
    import psycopg

    with psycopg.connect(url) as db:
        names = [r[0] for r in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]
        return "\n".join(repr(db.execute(f'SELECT * FROM "{n}"').fetchall()) for n in names)


def test_enroll_gives_credential_that_authenticates(reg):
    tok, info = reg.create_token(site="Lisbon 3", uses=2, note="floor 3")
    assert tok.startswith(f"cxp_enr_{info.token_id}_")
    cred, ident = reg.enroll(tok, "desk-1", host="PC1")
    assert ident.agent_id == "desk-1" and ident.site == "Lisbon 3" and ident.host == "PC1"
    got = reg.authenticate_agent(cred)
    assert got is not None and got.agent_id == "desk-1" and got.token_id == info.token_id
    assert reg.authenticate_agent(cred[:-1] + ("A" if cred[-1] != "A" else "B")) is None
    assert reg.authenticate_agent("") is None and reg.authenticate_agent("cxp_agt_x") is None
    assert reg.authenticate_agent(tok) is None  # a token is not a credential
    [t] = reg.list_tokens()
    assert t.uses_left == 1 and t.uses_total == 2 and t.site == "Lisbon 3"


def test_only_hashes_are_stored(reg, url):
    tok, _ = reg.create_token()
    cred, _ = reg.enroll(tok, "desk-1")
    key, _ = reg.create_api_key("admin", "it")
    text = all_text(url)
    for secret in (tok, cred, key):
        # cxp_<kind>_<hex id>_<random>: the random part may itself hold "_", so split from the left
        # (the tail after its last "_" can be a few characters that occur in any hex hash)
        random_part = secret.split("_", 3)[3]
        assert len(random_part) >= 40 and random_part not in text and secret not in text


def test_token_use_count_is_enforced(reg):
    tok, _ = reg.create_token(uses=2)
    reg.enroll(tok, "a")
    reg.enroll(tok, "b")
    with pytest.raises(EnrollError, match="used up"):
        reg.enroll(tok, "c")
    assert [a.agent_id for a in reg.list_agents()] == ["a", "b"]


def test_token_expiry_and_revocation(reg, clock):
    tok, _ = reg.create_token(uses=5, ttl_s=3600)
    clock.t += 3599
    reg.enroll(tok, "a")
    clock.t += 2
    with pytest.raises(EnrollError, match="expired"):
        reg.enroll(tok, "b")
    tok2, info2 = reg.create_token(uses=5)
    assert reg.revoke_token(info2.token_id) and not reg.revoke_token(info2.token_id)
    with pytest.raises(EnrollError, match="revoked"):
        reg.enroll(tok2, "c")
    with pytest.raises(EnrollError, match="unknown"):
        reg.enroll(tok2[:-2] + "zz", "c")
    with pytest.raises(EnrollError, match="not an enrollment token"):
        reg.enroll("hello", "c")


def test_enrolled_agent_cannot_be_taken_over_and_revoked_stays_out(reg, clock):
    tok, _ = reg.create_token(uses=3)
    cred1, _ = reg.enroll(tok, "desk-1")
    with pytest.raises(EnrollError, match="already enrolled"):
        reg.enroll(tok, "desk-1")
    assert reg.authenticate_agent(cred1) is not None
    clock.t += 10
    assert reg.revoke_agent("desk-1") and not reg.revoke_agent("desk-1")
    assert reg.authenticate_agent(cred1) is None
    with pytest.raises(EnrollError, match="revoked"):
        reg.enroll(tok, "desk-1")
    assert reg.authenticate_agent(cred1) is None
    assert [t.uses_left for t in reg.list_tokens()] == [2]  # refusals spend no use


def test_revoked_since(reg, clock):
    tok, _ = reg.create_token(uses=3)
    for a in ("a", "b", "c"):
        reg.enroll(tok, a)
    t0 = int(clock.t * 1e6)
    reg.revoke_agent("a")
    clock.t += 5
    reg.revoke_agent("b")
    assert reg.revoked_since(t0) == ["a", "b"]
    assert reg.revoked_since(t0 + 1) == ["b"]
    assert reg.revoked_since(int(clock.t * 1e6) + 1) == []


def test_revocation_is_seen_by_another_registry_on_the_same_database(url, clock):
    """Two collectors sharing one database: a revocation on one reaches the other's poll."""
    r1, r2 = Registry.open(url, clock=clock), Registry.open(url, clock=clock)
    try:
        tok, _ = r1.create_token()
        cred, _ = r1.enroll(tok, "desk-9")
        assert r2.authenticate_agent(cred) is not None
        r1.revoke_agent("desk-9")
        assert r2.revoked_since(0) == ["desk-9"] and r2.authenticate_agent(cred) is None
    finally:
        r1.close()
        r2.close()


def test_concurrent_enrollment_never_exceeds_token_uses(url, clock):
    tok, _ = Registry.open(url, clock=clock).create_token(uses=3)
    regs = [Registry.open(url, clock=clock) for _ in range(6)]
    ok, refused = [], []

    def go(i: int) -> None:
        try:
            regs[i].enroll(tok, f"desk-{i}")
            ok.append(i)
        except EnrollError:
            refused.append(i)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for r in regs:
        r.close()
    assert len(ok) == 3 and len(refused) == 3


def test_api_keys(reg):
    secret, info = reg.create_api_key("helpdesk", "service desk")
    assert reg.verify_api_key(secret) == info
    with pytest.raises(ValueError):
        reg.create_api_key("root", "x")
    assert reg.verify_api_key(secret + "x") is None and reg.verify_api_key("nope") is None
    assert [k.key_id for k in reg.list_api_keys()] == [info.key_id]
    assert reg.revoke_api_key(info.key_id) and not reg.revoke_api_key(info.key_id)
    assert reg.verify_api_key(secret) is None
    assert reg.list_api_keys()[0].revoked_us is not None


def test_audit_log(reg, clock):
    t0 = int(clock.t * 1e6)
    reg.record_audit(actor="key:1", action="lookup", subject="maria", remote="10.0.0.9")
    clock.t += 1
    reg.record_audit(actor="key:2", action="lookup", subject="joao")
    clock.t += 1
    reg.record_audit(actor="key:1", action="revoke_agent", subject="desk-1", detail="stolen laptop")
    assert [e.subject for e in reg.audit()] == ["maria", "joao", "desk-1"]
    assert [e.subject for e in reg.audit(actor="key:1")] == ["maria", "desk-1"]
    assert [e.actor for e in reg.audit(subject="joao")] == ["key:2"]
    assert [e.subject for e in reg.audit(t0 + 1, t0 + 2_000_000)] == ["joao"]
    assert len(reg.audit(limit=2)) == 2
    e = reg.audit()[0]
    assert e.remote == "10.0.0.9" and e.action == "lookup" and e.ts_us == t0


def test_admin_changes_write_their_own_audit_entries_with_one_set_of_names(reg):
    admin = Actor("key:k1", "10.0.0.9", "it team")
    _, tok = reg.create_token(site="Porto", uses=3, ttl_s=3600, by=admin)
    _, key = reg.create_api_key("helpdesk", "desk team", sites=["Porto"], by=admin)
    reg.enroll(reg.create_token()[0], "desk-1")  # no ``by``: a set-up, not recorded
    assert reg.revoke_agent("desk-1", by=admin) and not reg.revoke_agent("desk-1", by=admin)
    assert reg.revoke_api_key(key.key_id, by=Actor("cli:root", "local"))
    assert reg.revoke_token(tok.token_id, by=admin) and not reg.revoke_token(tok.token_id, by=admin)
    got = [(e.actor, e.action, e.subject, e.remote, e.detail) for e in reg.audit()]
    assert got == [
        ("key:k1", "token.create", tok.token_id, "10.0.0.9", "by=it team; site=Porto uses=3 ttl_s=3600"),
        (
            "key:k1",
            "api_key.create",
            key.key_id,
            "10.0.0.9",
            "by=it team; role=helpdesk name=desk team pseudonymize=False sites=Porto",
        ),
        ("key:k1", "agent.revoke", "desk-1", "10.0.0.9", "by=it team"),
        ("cli:root", "api_key.revoke", key.key_id, "local", ""),
        ("key:k1", "token.revoke", tok.token_id, "10.0.0.9", "by=it team"),
    ]


def test_a_refused_change_writes_no_audit_entry(reg):
    admin = Actor("cli:root", "local")
    _, only = reg.create_api_key("admin", "only admin")
    with pytest.raises(LastAdminKeyError):
        reg.revoke_api_key(only.key_id, by=admin)
    for bad in (
        {"uses": 0},
        {"uses": 100_001},
        {"ttl_s": 59},
        {"ttl_s": 366 * 86_400},
        {"site": "x" * 201},
        {"note": "a\nb"},
    ):
        with pytest.raises(ValueError):
            reg.create_token(**bad, by=admin)
    for role, name in (("root", "x"), ("helpdesk", " "), ("helpdesk", "x" * 101)):
        with pytest.raises(ValueError):
            reg.create_api_key(role, name, by=admin)
    assert reg.audit() == [] and reg.list_tokens() == []


def test_entries_written_under_the_old_command_line_names_read_under_todays(reg):
    for old in ("token_create", "token_revoke", "agent_revoke", "key_create", "key_revoke", "init", "enroll"):
        reg.record_audit(actor="cli:root", action=old, subject="x", remote="local")
    assert [e.action for e in reg.audit()] == [
        "token.create",
        "token.revoke",
        "agent.revoke",
        "api_key.create",
        "api_key.revoke",
        "collector.init",
        "enroll",
    ]


def test_lives_beside_the_store_and_migration_is_idempotent(url):
    store = open_store(url)
    try:
        r = Registry.open(url)
        r.create_token()
        r.close()
        r = Registry.open(url)  # second open: no error, data kept
        assert len(r.list_tokens()) == 1
        r.close()
        assert store.sample_count() == 0
    finally:
        store.close()
