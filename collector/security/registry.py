"""Who may talk to the collector: enrollment tokens, agent credentials, API keys, and the audit log.
In the store's own database, shared by collectors; only SHA-256 hashes of secrets are kept.
Design notes: docs/security.md, "collector/security/registry.py".
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..store.db import Db

log = logging.getLogger(__name__)

ROLES = ("helpdesk", "admin")

_KIND_TOKEN = "enr"
_KIND_AGENT = "agt"
_KIND_KEY = "key"

# Numbered migrations; never edit a released one, add the next. ``{serial}`` and ``{bigint}``
# differ between SQLite and PostgreSQL, the rest is plain SQL both accept.
_MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS enroll_tokens (
        token_id TEXT PRIMARY KEY,
        secret_hash TEXT NOT NULL,
        site TEXT NOT NULL DEFAULT '',
        note TEXT NOT NULL DEFAULT '',
        uses_total INTEGER NOT NULL,
        uses_left INTEGER NOT NULL,
        created_us {bigint} NOT NULL,
        expires_us {bigint} NOT NULL,
        revoked_us {bigint}
    );
    CREATE TABLE IF NOT EXISTS agent_credentials (
        agent_id TEXT PRIMARY KEY,
        cred_id TEXT NOT NULL UNIQUE,
        secret_hash TEXT NOT NULL,
        host TEXT NOT NULL DEFAULT '',
        site TEXT NOT NULL DEFAULT '',
        token_id TEXT NOT NULL DEFAULT '',
        enrolled_us {bigint} NOT NULL,
        revoked_us {bigint}
    );
    CREATE INDEX IF NOT EXISTS agent_credentials_revoked ON agent_credentials (revoked_us);
    CREATE TABLE IF NOT EXISTS api_keys (
        key_id TEXT PRIMARY KEY,
        secret_hash TEXT NOT NULL,
        role TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        created_us {bigint} NOT NULL,
        revoked_us {bigint}
    );
    CREATE TABLE IF NOT EXISTS audit_log (
        id {serial},
        ts_us {bigint} NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL DEFAULT '',
        remote TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX IF NOT EXISTS audit_log_ts ON audit_log (ts_us);
    """,
    # 2: per-key pseudonymization (the HTTP API shows such a key pseudonyms instead of user names).
    """
    ALTER TABLE api_keys ADD COLUMN pseudonymize INTEGER NOT NULL DEFAULT 0;
    """,
    # 3: site-scoped keys (a BPO's client team sees only its own sites): a JSON list, '' = every site.
    """
    ALTER TABLE api_keys ADD COLUMN sites TEXT NOT NULL DEFAULT '';
    """,
]
SCHEMA_VERSION = len(_MIGRATIONS)

_MIGRATE_LOCK_CLASS = 0x63787073  # "cxps": advisory lock namespace for the security tables


class EnrollError(Exception):
    """Enrollment refused; ``reason`` is safe to send back to the agent (it names no secret)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class LastAdminKeyError(ValueError):
    """Revoking this key would leave no active admin key; create another admin key first."""

    def __init__(self, key_id: str):
        super().__init__(
            f"{key_id} is the last active admin key: create another admin key first "
            "(cxpulse collector keys create --role admin --name ...), then revoke this one"
        )
        self.key_id = key_id


@dataclass(frozen=True)
class TokenInfo:
    token_id: str
    site: str
    note: str
    uses_total: int
    uses_left: int
    created_us: int
    expires_us: int
    revoked_us: int | None = None

    def usable(self, now_us: int) -> bool:
        return self.revoked_us is None and self.uses_left > 0 and now_us < self.expires_us


@dataclass(frozen=True)
class AgentIdentity:
    agent_id: str
    credential_id: str
    host: str
    site: str
    token_id: str
    enrolled_us: int
    revoked_us: int | None = None


@dataclass(frozen=True)
class ApiKeyInfo:
    key_id: str
    role: str
    name: str
    created_us: int
    revoked_us: int | None = None
    pseudonymize: bool = False
    # The sites this key may see; empty: every site (the default, as before site scopes existed).
    sites: tuple[str, ...] = ()


MAX_SITE_CHARS = 200
MAX_KEY_SITES = 100
MAX_KEY_NAME_CHARS = 100
MAX_NOTE_CHARS = 500
MAX_TOKEN_USES = 100_000
MIN_TOKEN_TTL_S = 60
MAX_TOKEN_TTL_S = 365 * 86_400

# What the administrative changes are called in the audit log (docs/api.md, "Audit log"). Before
# issue 20 the command line wrote its own names; rows it wrote then keep them in the database and
# are shown under these when read.
_OLD_ACTIONS = {
    "token_create": "token.create",
    "token_revoke": "token.revoke",
    "agent_revoke": "agent.revoke",
    "key_create": "api_key.create",
    "key_revoke": "api_key.revoke",
    "init": "collector.init",
    "agent_host_change": "agent.host_change",
}


@dataclass(frozen=True)
class Actor:
    """Who makes a change, as the audit log records them: ``key:<key_id>`` or ``cli:<os user>``,
    from where (a peer address, ``local``), and an API key's name (written as ``by=<name>``)."""

    actor: str
    remote: str = ""
    name: str = ""


def _clean_text(value: str, name: str, max_len: int, *, required: bool = False) -> str:
    """A label stripped and checked: at most ``max_len`` printable characters; ValueError naming it."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    value = value.strip()
    if required and not value:
        raise ValueError(f"{name} is required")
    if len(value) > max_len or any(ord(c) < 32 for c in value):
        raise ValueError(f"{name} must be at most {max_len} printable characters")
    return value


def clean_sites(sites) -> tuple[str, ...]:
    """A key's site list, checked: printable names of at most 200 characters, no duplicates, sorted.

    Raises ValueError with the reason. An empty list means every site, so a key meant for some
    sites must name at least one.
    """
    if sites is None:
        return ()
    if isinstance(sites, str) or not all(isinstance(x, str) for x in sites):
        raise ValueError("sites must be a list of site names")
    out = sorted({x.strip() for x in sites})
    if len(out) > MAX_KEY_SITES:
        raise ValueError(f"a key may name at most {MAX_KEY_SITES} sites")
    for x in out:
        if not x or len(x) > MAX_SITE_CHARS or any(ord(c) < 32 for c in x):
            raise ValueError(f"a site name must be 1 to {MAX_SITE_CHARS} printable characters; got {x!r}")
    return tuple(out)


@dataclass(frozen=True)
class AuditEntry:
    id: int
    ts_us: int
    actor: str
    action: str
    subject: str
    remote: str
    detail: str


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_secret(kind: str) -> tuple[str, str]:
    """(id, full secret). The id is hex (no ``_``), so splitting the secret is unambiguous."""
    ident = secrets.token_hex(8)
    return ident, f"cxp_{kind}_{ident}_{secrets.token_urlsafe(32)}"


def _split(secret: str, kind: str) -> str | None:
    """The id inside a secret of this kind, None if it is not shaped like one."""
    if not isinstance(secret, str) or len(secret) > 200:
        return None
    parts = secret.strip().split("_", 3)
    if len(parts) != 4 or parts[0] != "cxp" or parts[1] != kind or not parts[2] or not parts[3]:
        return None
    return parts[2]


def _matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(_hash(secret.strip()), stored_hash)


_TOKEN_COLS = "token_id, site, note, uses_total, uses_left, created_us, expires_us, revoked_us"
_AGENT_COLS = "agent_id, cred_id, host, site, token_id, enrolled_us, revoked_us"
_KEY_COLS = "key_id, role, name, created_us, revoked_us, pseudonymize, sites"
_AUDIT_COLS = "id, ts_us, actor, action, subject, remote, detail"


def _key_info(row) -> ApiKeyInfo:
    key_id, role, name, created_us, revoked_us, pseudonymize, sites = row
    return ApiKeyInfo(
        key_id, role, name, created_us, revoked_us, bool(pseudonymize), tuple(json.loads(sites)) if sites else ()
    )


class Registry:
    """Tokens, credentials, keys and audit on one connection of its own (never the store's writer)."""

    def __init__(self, db: Db, clock: Callable[[], float] = time.time):
        self._db = db
        self._clock = clock

    @classmethod
    def open(cls, store_url: str, *, clock: Callable[[], float] = time.time) -> Registry:
        """Same URL forms as ``open_store``: a SQLite path, ``sqlite:///path`` or ``postgresql://``."""
        db = Db(store_url, role="registry")
        try:
            db.migrate("security_migrations", _MIGRATIONS, _MIGRATE_LOCK_CLASS, "security")
        except BaseException:
            db.close()
            raise
        return cls(db, clock)

    def _now_us(self) -> int:
        return int(self._clock() * 1_000_000)

    # -- enrollment tokens --

    def create_token(
        self, *, site: str = "", uses: int = 1, ttl_s: float = 7 * 86400, note: str = "", by: Actor | None = None
    ) -> tuple[str, TokenInfo]:
        """A new enrollment token (the secret is returned once; only its hash is kept).

        ``by``: who asked; the ``token.create`` audit entry is written in the same transaction.
        Without it (set-ups in tests, the demo, benchmarks) nothing is recorded. ValueError says
        what is out of range.
        """
        site = _clean_text(site, "site", MAX_SITE_CHARS)
        note = _clean_text(note, "note", MAX_NOTE_CHARS)
        if not 1 <= uses <= MAX_TOKEN_USES:
            raise ValueError(f"uses must be a whole number between 1 and {MAX_TOKEN_USES}")
        if not MIN_TOKEN_TTL_S <= ttl_s <= MAX_TOKEN_TTL_S:
            raise ValueError(
                f"a token's lifetime must be between {MIN_TOKEN_TTL_S} s and {MAX_TOKEN_TTL_S // 86_400} days"
            )
        token_id, secret = _new_secret(_KIND_TOKEN)
        now = self._now_us()
        info = TokenInfo(token_id, site, note, uses, uses, now, now + int(ttl_s * 1_000_000))
        with self._db.transaction():
            self._db.execute(
                "INSERT INTO enroll_tokens (token_id, secret_hash, site, note, uses_total, uses_left, created_us, "
                "expires_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (token_id, _hash(secret), site, note, uses, uses, now, info.expires_us),
            )
            self._audit(by, "token.create", token_id, f"site={site} uses={uses} ttl_s={int(ttl_s)}")
        return secret, info

    def list_tokens(self) -> list[TokenInfo]:
        rows = self._db.query(f"SELECT {_TOKEN_COLS} FROM enroll_tokens ORDER BY created_us, token_id")
        return [TokenInfo(*r) for r in rows]

    def revoke_token(self, token_id: str, *, by: Actor | None = None) -> bool:
        """Stop a token enrolling more desks: True when it was active; audited as ``token.revoke``."""
        with self._db.transaction():
            done = (
                self._db.execute(
                    "UPDATE enroll_tokens SET revoked_us = ? WHERE token_id = ? AND revoked_us IS NULL",
                    (self._now_us(), token_id),
                )
                > 0
            )
            if done:
                self._audit(by, "token.revoke", token_id)
        return done

    def enroll(self, token_secret: str, agent_id: str, host: str = "") -> tuple[str, AgentIdentity]:
        """Spend one use of a token and give the agent its own credential.

        An agent id that is already enrolled is refused, and a revoked one stays revoked: a token
        holder must not be able to take over a running desk's identity, and a revoked desk that
        still has its installer's token must not let itself back in. A reinstall without its state
        directory gets a new agent id, and enrolls as that.
        """
        agent_id = (agent_id or "").strip()
        if not agent_id or len(agent_id) > 128:
            raise EnrollError("agent id missing or too long")
        token_id = _split(token_secret, _KIND_TOKEN)
        if token_id is None:
            raise EnrollError("not an enrollment token")
        now = self._now_us()
        cred_id, cred = _new_secret(_KIND_AGENT)
        with self._db.transaction():
            rows = self._db.query(
                f"SELECT {_TOKEN_COLS}, secret_hash FROM enroll_tokens WHERE token_id = ?"
                + (" FOR UPDATE" if self._db.pg else ""),
                (token_id,),
            )
            if not rows or not _matches(token_secret, rows[0][-1]):
                raise EnrollError("unknown enrollment token")
            tok = TokenInfo(*rows[0][:-1])
            if tok.revoked_us is not None:
                raise EnrollError("enrollment token revoked")
            if now >= tok.expires_us:
                raise EnrollError("enrollment token expired")
            if tok.uses_left <= 0:
                raise EnrollError("enrollment token used up")
            existing = self._db.query("SELECT revoked_us FROM agent_credentials WHERE agent_id = ?", (agent_id,))
            if existing:
                raise EnrollError("agent id is revoked" if existing[0][0] is not None else "agent id already enrolled")
            self._db.execute("UPDATE enroll_tokens SET uses_left = uses_left - 1 WHERE token_id = ?", (token_id,))
            self._db.execute(
                "INSERT INTO agent_credentials (agent_id, cred_id, secret_hash, host, site, token_id, enrolled_us)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (agent_id, cred_id, _hash(cred), host, tok.site, token_id, now),
            )
        return cred, AgentIdentity(agent_id, cred_id, host, tok.site, token_id, now)

    def provision_agents(self, agent_ids: list[str], *, site: str = "") -> dict[str, str]:
        """Credentials for many agents in one transaction, without a token: for load generators and
        tests that simulate thousands of desks (an admin action; real desks enroll with a token)."""
        now = self._now_us()
        out, rows = {}, []
        for agent_id in agent_ids:
            cred_id, cred = _new_secret(_KIND_AGENT)
            out[agent_id] = cred
            rows.append((agent_id, cred_id, _hash(cred), "", site, "provisioned", now))
        with self._db.transaction():
            for row in rows:
                self._db.execute(
                    "INSERT INTO agent_credentials (agent_id, cred_id, secret_hash, host, site, token_id, "
                    "enrolled_us) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
        return out

    # -- agents --

    def authenticate_agent(self, credential: str) -> AgentIdentity | None:
        cred_id = _split(credential, _KIND_AGENT)
        if cred_id is None:
            return None
        rows = self._db.query(f"SELECT {_AGENT_COLS}, secret_hash FROM agent_credentials WHERE cred_id = ?", (cred_id,))
        if not rows or not _matches(credential, rows[0][-1]):
            return None
        ident = AgentIdentity(*rows[0][:-1])
        return None if ident.revoked_us is not None else ident

    def revoke_agent(self, agent_id: str, *, by: Actor | None = None) -> bool:
        """Revoke an enrolled agent's credential: True when it was active; audited as ``agent.revoke``."""
        with self._db.transaction():
            done = (
                self._db.execute(
                    "UPDATE agent_credentials SET revoked_us = ? WHERE agent_id = ? AND revoked_us IS NULL",
                    (self._now_us(), agent_id),
                )
                > 0
            )
            if done:
                self._audit(by, "agent.revoke", agent_id)
        return done

    def list_agents(self) -> list[AgentIdentity]:
        rows = self._db.query(f"SELECT {_AGENT_COLS} FROM agent_credentials ORDER BY enrolled_us, agent_id")
        return [AgentIdentity(*r) for r in rows]

    def revoked_since(self, since_us: int) -> list[str]:
        """Agents revoked at or after ``since_us``. Pollers should overlap their windows by a few
        seconds: clocks of collectors sharing a database differ, and a duplicate costs nothing."""
        rows = self._db.query(
            "SELECT agent_id FROM agent_credentials WHERE revoked_us IS NOT NULL AND revoked_us >= ?"
            " ORDER BY revoked_us",
            (since_us,),
        )
        return [r[0] for r in rows]

    # -- API keys --

    def create_api_key(
        self, role: str, name: str, *, pseudonymize: bool = False, sites=(), by: Actor | None = None
    ) -> tuple[str, ApiKeyInfo]:
        """A new key; ``sites`` limits what it sees to those sites (empty: every site).

        A key scoped to sites is a helpdesk key: administration (keys, tokens, agents, the audit
        log, configuration, webhooks) spans every site, so only an unscoped admin key may do it,
        and a scoped admin key, which could issue itself wider keys, is refused here. Audited as
        ``api_key.create`` when ``by`` is given (see ``create_token``).
        """
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}; got {str(role)[:40]!r}")
        name = _clean_text(name, "name", MAX_KEY_NAME_CHARS, required=True)
        sites = clean_sites(sites)
        if sites and role == "admin":
            raise ValueError("a key scoped to sites can only have the helpdesk role: administration spans every site")
        key_id, secret = _new_secret(_KIND_KEY)
        info = ApiKeyInfo(key_id, role, name, self._now_us(), None, bool(pseudonymize), sites)
        with self._db.transaction():
            self._db.execute(
                "INSERT INTO api_keys (key_id, secret_hash, role, name, created_us, pseudonymize, sites) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    key_id,
                    _hash(secret),
                    role,
                    name,
                    info.created_us,
                    int(pseudonymize),
                    json.dumps(list(sites)) if sites else "",
                ),
            )
            self._audit(
                by,
                "api_key.create",
                key_id,
                f"role={role} name={name} pseudonymize={bool(pseudonymize)}"
                f" sites={','.join(sites) if sites else '(all)'}",
            )
        return secret, info

    def verify_api_key(self, secret: str) -> ApiKeyInfo | None:
        key_id = _split(secret, _KIND_KEY)
        if key_id is None:
            return None
        rows = self._db.query(f"SELECT {_KEY_COLS}, secret_hash FROM api_keys WHERE key_id = ?", (key_id,))
        if not rows or not _matches(secret, rows[0][-1]):
            return None
        info = _key_info(rows[0][:-1])
        return None if info.revoked_us is not None else info

    def list_api_keys(self) -> list[ApiKeyInfo]:
        return [_key_info(r) for r in self._db.query(f"SELECT {_KEY_COLS} FROM api_keys ORDER BY created_us, key_id")]

    def revoke_api_key(self, key_id: str, *, by: Actor | None = None) -> bool:
        """Revoke an active key: True when it was, False when there is no such active key.

        The last active admin key is never revoked (``LastAdminKeyError``): without one nobody
        could issue keys over the API again. The check is inside the UPDATE, so two revokes
        racing on one SQLite database cannot both pass it. Audited as ``api_key.revoke``.
        """
        with self._db.transaction():
            done = (
                self._db.execute(
                    "UPDATE api_keys SET revoked_us = ? WHERE key_id = ? AND revoked_us IS NULL AND (role <> 'admin'"
                    " OR (SELECT COUNT(*) FROM api_keys WHERE role = 'admin' AND revoked_us IS NULL) > 1)",
                    (self._now_us(), key_id),
                )
                > 0
            )
            if done:
                self._audit(by, "api_key.revoke", key_id)
        if not done and self._db.query(
            "SELECT 1 FROM api_keys WHERE key_id = ? AND revoked_us IS NULL AND role = 'admin'", (key_id,)
        ):
            raise LastAdminKeyError(key_id)
        return done

    # -- audit --

    def record_audit(self, *, actor: str, action: str, subject: str = "", remote: str = "", detail: str = "") -> None:
        self._db.execute(
            "INSERT INTO audit_log (ts_us, actor, action, subject, remote, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (self._now_us(), actor, action, subject, remote, detail),
        )

    def record(self, by: Actor, action: str, subject: str = "", detail: str = "") -> None:
        """One audit entry for something ``by`` did (``by=<key name>`` first in the detail)."""
        named = f"by={by.name}" if by.name else ""
        self.record_audit(
            actor=by.actor,
            action=action,
            subject=subject,
            remote=by.remote,
            detail="; ".join(x for x in (named, detail) if x)[:2000],
        )

    def _audit(self, by: Actor | None, action: str, subject: str, detail: str = "") -> None:
        if by is not None:
            self.record(by, action, subject, detail)

    def audit(
        self,
        since_us: int = 0,
        until_us: int | None = None,
        *,
        actor: str | None = None,
        subject: str | None = None,
        limit: int = 1000,
    ) -> list[AuditEntry]:
        """Oldest first within the window; ``limit`` caps the answer, not the log."""
        where: list[str] = ["ts_us >= ?"]
        args: list[int | str] = [since_us]
        if until_us is not None:
            where.append("ts_us < ?")
            args.append(until_us)
        if actor is not None:
            where.append("actor = ?")
            args.append(actor)
        if subject is not None:
            where.append("subject = ?")
            args.append(subject)
        args.append(max(0, int(limit)))
        rows = self._db.query(
            f"SELECT {_AUDIT_COLS} FROM audit_log WHERE {' AND '.join(where)} ORDER BY ts_us, id LIMIT ?", tuple(args)
        )
        return [
            AuditEntry(id_, ts_us, who, _OLD_ACTIONS.get(action, action), subj, remote, detail)
            for id_, ts_us, who, action, subj, remote, detail in rows
        ]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
