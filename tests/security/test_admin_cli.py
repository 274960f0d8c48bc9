"""`cxpulse collector tokens|keys|agents` on a database, as IT runs them: what they print and what they store.

The secrets go to stdout alone (so `KEY=$(cxpulse collector keys create ...)` works), everything
else to stderr, and every change is in the audit log.
"""

from __future__ import annotations

from cxpulse.collector.security.registry import Registry
from tests.conftest import run_cli


def test_tokens_keys_and_agents_from_the_command_line(tmp_path):
    db = str(tmp_path / "c.sqlite")

    tok = run_cli("collector", "tokens", "create", "--db", db, "--uses", "3", "--site", "Porto")
    assert tok.returncode == 0, tok.stderr
    secret = tok.stdout.strip()
    assert secret.startswith("cxp_") and "\n" not in secret

    key = run_cli(
        "collector", "keys", "create", "--db", db, "--role", "helpdesk", "--name", "desk team", "--pseudonymize"
    )
    assert key.returncode == 0, key.stderr
    assert "pseudonyms" in key.stderr

    with Registry.open(db) as reg:
        [t] = reg.list_tokens()
        assert (t.uses_total, t.site) == (3, "Porto")
        info = reg.verify_api_key(key.stdout.strip())
        assert info is not None and info.role == "helpdesk" and info.pseudonymize
        _, ident = reg.enroll(secret, "desk-7", "DESK-7")
        assert ident.agent_id == "desk-7"

    listed = run_cli("collector", "agents", "list", "--db", db)
    assert listed.returncode == 0 and "desk-7" in listed.stdout
    assert run_cli("collector", "agents", "revoke", "desk-7", "--db", db).returncode == 0
    again = run_cli("collector", "agents", "revoke", "desk-7", "--db", db)
    assert again.returncode == 1 and "desk-7" in again.stderr
    assert run_cli("collector", "keys", "revoke", info.key_id, "--db", db).returncode == 0
    assert run_cli("collector", "tokens", "revoke", t.token_id, "--db", db).returncode == 0

    with Registry.open(db) as reg:
        assert reg.verify_api_key(key.stdout.strip()) is None
        actions = [e.action for e in reg.audit()]
    assert actions == ["token.create", "api_key.create", "agent.revoke", "api_key.revoke", "token.revoke"], actions
