"""``cxpulse collector init | tokens | agents | keys``: what IT runs to let desks in and keep them out.
All work on ``--db``, so a revocation here reaches every collector sharing that database within seconds.
Design notes: docs/security.md, "collector/security/cli.py".
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys


def default_tls_dir(db: str | None = None) -> str:
    """``tls`` beside the SQLite database (beside the default one for a PostgreSQL URL): init and
    serve given the same --db find the same directory without being told."""
    from ..paths import default_db

    if not db or "://" in db:
        db = default_db()
    return os.path.join(os.path.dirname(os.path.abspath(db)), "tls")


def register(col: argparse._SubParsersAction) -> None:
    from ..durations import parse_duration
    from ..paths import default_db

    def db_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", default=None, help=f"SQLite path or postgresql:// URL (default {default_db()})")

    init = col.add_parser(
        "init", help="create the CA, the server certificate, an admin API key and a first enrollment token"
    )
    init.add_argument("--dir", default=None, help="TLS directory (default: tls/ beside the SQLite database)")
    init.add_argument(
        "--name",
        action="append",
        default=[],
        metavar="DNS_NAME",
        help="a name agents use to reach the collector (repeatable)",
    )
    init.add_argument("--ip", action="append", default=[], metavar="IP", help="an address agents use (repeatable)")
    init.add_argument(
        "--port", type=int, default=50051, help="gRPC port, for the printed collector address (default 50051)"
    )
    db_arg(init)
    init.add_argument("--site", default="", help="site label of the first enrollment token")
    init.add_argument("--token-uses", type=int, default=100, help="desks the first token may enroll (default 100)")
    init.add_argument("--token-ttl", type=parse_duration, default=7 * 86400, help="first token's lifetime (default 7d)")
    init.add_argument(
        "--renew", action="store_true", help="issue a new server certificate even if the names are unchanged"
    )
    init.add_argument("--no-admin-key", action="store_true", help="do not create an admin API key")
    init.add_argument("--json", action="store_true", help="print the result as JSON (for scripts)")
    init.set_defaults(func=cmd_init)

    tokens = col.add_parser("tokens", help="enrollment tokens").add_subparsers(
        dest="tokens_command", required=True, metavar="ACTION"
    )
    p = tokens.add_parser("create", help="a new enrollment token (printed once)")
    db_arg(p)
    p.add_argument("--site", default="", help="site label given to the desks that enroll with it")
    p.add_argument("--uses", type=int, default=1, help="how many desks may enroll with it (default 1)")
    p.add_argument("--ttl", type=parse_duration, default=7 * 86400, help="lifetime (default 7d)")
    p.add_argument("--note", default="")
    p.set_defaults(func=cmd_tokens_create)
    p = tokens.add_parser("list", help="tokens with their uses left and expiry")
    db_arg(p)
    p.set_defaults(func=cmd_tokens_list)
    p = tokens.add_parser("revoke", help="stop a token from enrolling more desks")
    db_arg(p)
    p.add_argument("token_id")
    p.set_defaults(func=cmd_tokens_revoke)

    agents = col.add_parser("agents", help="enrolled agents").add_subparsers(
        dest="agents_command", required=True, metavar="ACTION"
    )
    p = agents.add_parser("list", help="enrolled agents and whether they are revoked")
    db_arg(p)
    p.set_defaults(func=cmd_agents_list)
    p = agents.add_parser("revoke", help="revoke an agent's credential; its open stream is closed within seconds")
    db_arg(p)
    p.add_argument("agent_id")
    p.set_defaults(func=cmd_agents_revoke)

    keys = col.add_parser("keys", help="API keys for the helpdesk page and API").add_subparsers(
        dest="keys_command", required=True, metavar="ACTION"
    )
    p = keys.add_parser("create", help="a new API key (printed once)")
    db_arg(p)
    p.add_argument("--role", choices=["helpdesk", "admin"], required=True)
    p.add_argument("--name", required=True, help="who or what uses it (shown in the audit log)")
    p.add_argument(
        "--pseudonymize",
        action="store_true",
        help="views through this key show pseudonyms instead of user names where names are not needed",
    )
    p.add_argument(
        "--site",
        action="append",
        default=[],
        metavar="SITE",
        help="this key sees only this site's desks (repeat for several; default: every site; helpdesk role only)",
    )
    p.set_defaults(func=cmd_keys_create)
    p = keys.add_parser("list", help="API keys")
    db_arg(p)
    p.set_defaults(func=cmd_keys_list)
    p = keys.add_parser("revoke", help="revoke an API key")
    db_arg(p)
    p.add_argument("key_id")
    p.set_defaults(func=cmd_keys_revoke)


def _registry(args):
    from ..paths import default_db
    from .registry import Registry

    return Registry.open(args.db or default_db())


def _when(us: int | None) -> str:
    return "-" if us is None else dt.datetime.fromtimestamp(us / 1e6, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _me():
    """The audit log's actor for this command: ``cli:<os user>``, from ``local``."""
    import getpass

    from .registry import Actor

    try:
        user = getpass.getuser()
    except Exception:
        user = "?"
    return Actor(f"cli:{user}", "local")


def cmd_init(args: argparse.Namespace) -> int:
    import ipaddress
    import json

    from .tls import CA_CERT, cert_expiry, init_dir

    if not args.name and not args.ip:
        print(
            "cxpulse collector init: give at least one --name or --ip that agents will use to reach the collector",
            file=sys.stderr,
        )
        return 2
    try:
        for ip in args.ip:
            ipaddress.ip_address(ip)
    except ValueError as exc:
        print(f"cxpulse collector init: {exc}", file=sys.stderr)
        return 2
    tls_dir = os.path.abspath(args.dir or default_tls_dir(args.db))
    done = init_dir(tls_dir, args.name, args.ip, renew=args.renew)
    me = _me()
    with _registry(args) as reg:
        try:
            token, tinfo = reg.create_token(
                site=args.site, uses=args.token_uses, ttl_s=args.token_ttl, note="collector init", by=me
            )
        except ValueError as exc:
            print(f"cxpulse collector init: {exc}", file=sys.stderr)
            return 2
        key = kinfo = None
        if not args.no_admin_key:
            key, kinfo = reg.create_api_key("admin", "collector init", by=me)
        reg.record(
            me, "collector.init", tls_dir, f"token {tinfo.token_id}" + (f", admin key {kinfo.key_id}" if kinfo else "")
        )
    host = args.name[0] if args.name else args.ip[0]
    address = f"[{host}]:{args.port}" if ":" in host else f"{host}:{args.port}"
    ca = os.path.join(tls_dir, CA_CERT)
    result = {
        "tls_dir": tls_dir,
        "ca_file": ca,
        "collector": address,
        "enroll_token": token,
        "token_expires": _when(tinfo.expires_us),
        "token_uses": tinfo.uses_total,
        "admin_api_key": key or "",
        "files": done,
        "server_cert_expires": f"{cert_expiry(os.path.join(tls_dir, 'server.pem')):%Y-%m-%d}",
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"TLS directory {tls_dir}: CA {done['ca.pem']}, server certificate {done['server.pem']} "
        f"(valid until {result['server_cert_expires']})"
    )
    print(
        f"serve with:  cxpulse collector serve --listen 0.0.0.0:{args.port} --tls-dir {tls_dir}"
        + (f" --db {args.db}" if args.db else "")
    )
    print("\nGive the installers (MSI properties / profile keys / deb environment):")
    print(f"  COLLECTOR     {address}")
    print(f"  CA_CERT       {ca}   (copy the file; the .key files never leave this machine)")
    print(f"  ENROLL_TOKEN  {token}")
    print(
        f"                (up to {tinfo.uses_total} desks, until {result['token_expires']}"
        + (f", site {args.site!r}" if args.site else "")
        + ")"
    )
    if key:
        print(f"\nAdmin API key (shown once, keep it safe): {key}")
    print("\nMore tokens: cxpulse collector tokens create --uses N --site LABEL")
    return 0


def cmd_tokens_create(args: argparse.Namespace) -> int:
    with _registry(args) as reg:
        try:
            secret, info = reg.create_token(site=args.site, uses=args.uses, ttl_s=args.ttl, note=args.note, by=_me())
        except ValueError as exc:
            print(f"cxpulse collector tokens: {exc}", file=sys.stderr)
            return 2
    print(secret)
    print(f"token {info.token_id}: {info.uses_total} use(s), expires {_when(info.expires_us)}", file=sys.stderr)
    return 0


def cmd_tokens_list(args: argparse.Namespace) -> int:
    import time

    with _registry(args) as reg:
        tokens = reg.list_tokens()
    now = int(time.time() * 1e6)
    print(f"{'TOKEN':16}  {'USES':>9}  {'EXPIRES':20}  {'STATE':8}  SITE / NOTE")
    for t in tokens:
        state = (
            "revoked"
            if t.revoked_us
            else "expired"
            if now >= t.expires_us
            else "used up"
            if t.uses_left <= 0
            else "usable"
        )
        print(
            f"{t.token_id:16}  {t.uses_total - t.uses_left:>4}/{t.uses_total:<4}  {_when(t.expires_us):20}  {state:8}  "
            f"{t.site}{' / ' + t.note if t.note else ''}"
        )
    return 0


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    with _registry(args) as reg:
        ok = reg.revoke_token(args.token_id, by=_me())
    print(
        f"token {args.token_id} revoked" if ok else f"no usable token {args.token_id}",
        file=sys.stderr if not ok else sys.stdout,
    )
    return 0 if ok else 1


def cmd_agents_list(args: argparse.Namespace) -> int:
    with _registry(args) as reg:
        agents = reg.list_agents()
    print(f"{'AGENT':38}  {'ENROLLED':20}  {'REVOKED':20}  HOST / SITE")
    for a in agents:
        print(f"{a.agent_id:38}  {_when(a.enrolled_us):20}  {_when(a.revoked_us):20}  {a.host} / {a.site}")
    return 0


def cmd_agents_revoke(args: argparse.Namespace) -> int:
    with _registry(args) as reg:
        ok = reg.revoke_agent(args.agent_id, by=_me())
    if not ok:
        print(f"cxpulse collector agents: no enrolled, unrevoked agent {args.agent_id}", file=sys.stderr)
        return 1
    print(f"agent {args.agent_id} revoked; collectors close its open stream within seconds")
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    with _registry(args) as reg:
        try:
            secret, info = reg.create_api_key(
                args.role, args.name, pseudonymize=args.pseudonymize, sites=args.site, by=_me()
            )
        except ValueError as exc:
            print(f"cxpulse collector keys: refused: {exc}", file=sys.stderr)
            return 2
    sites = ", ".join(info.sites) if info.sites else "every site"
    print(secret)
    print(
        f"key {info.key_id}: role {info.role}, name {info.name!r}, sees {sites}"
        + (", pseudonyms" if info.pseudonymize else ""),
        file=sys.stderr,
    )
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    with _registry(args) as reg:
        keys = reg.list_api_keys()
    print(f"{'KEY':16}  {'ROLE':8}  {'CREATED':20}  {'REVOKED':20}  {'SITES':20}  NAME")
    for k in keys:
        sites = ",".join(k.sites) if k.sites else "(all)"
        print(f"{k.key_id:16}  {k.role:8}  {_when(k.created_us):20}  {_when(k.revoked_us):20}  {sites:20}  {k.name}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from .registry import LastAdminKeyError

    with _registry(args) as reg:
        try:
            ok = reg.revoke_api_key(args.key_id, by=_me())
        except LastAdminKeyError as exc:
            print(f"cxpulse collector keys: refused: {exc}", file=sys.stderr)
            return 1
    if not ok:
        print(f"cxpulse collector keys: no unrevoked key {args.key_id}", file=sys.stderr)
        return 1
    print(f"key {args.key_id} revoked")
    return 0
