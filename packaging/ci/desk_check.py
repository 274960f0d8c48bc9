#!/usr/bin/env python3
"""Check, through the helpdesk lookup, that an installed desk agent measured what a desk must.

Gateway, ICMP, path, spool, desk user, each with its figures: docs/installers.md, "packaging/ci/desk_check.py".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.parse
import urllib.request
from pathlib import Path

__all__ = ["Check", "console_user", "fetch_api", "fetch_db", "main", "run_checks"]

REJECTED_DIR = ("spool", "rejected")  # agent/spool.py: set-aside batches and their reasons
GAPS_FILE = ("spool", "gaps.json")
CORRUPT_REASON = "corrupt on disk"  # agent/spool.py CORRUPT


class Check(tuple):
    """(name, ok, detail)."""

    def __new__(cls, name: str, ok: bool, detail: str):
        return super().__new__(cls, (name, ok, detail))

    name = property(lambda self: self[0])
    ok = property(lambda self: self[1])
    detail = property(lambda self: self[2])


def fetch_api(base: str, key: str, query: str, window_s: int = 900, timeout: float = 20) -> dict:
    """The agent's lookup view from the collector's JSON API (the first agent the search finds)."""
    headers = {"Authorization": f"Bearer {key}"}

    def get(path: str, **params) -> dict:
        url = base.rstrip("/") + path + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as r:
            return json.load(r)

    found = get("/api/v1/agents", q=query).get("agents") or []
    if not found:
        raise LookupError(f"no agent matches {query!r} in the lookup")
    body = get(f"/api/v1/agents/{urllib.parse.quote(found[0]['agent_id'])}", window=f"{window_s}s", timeline="false")
    return body["agent"]


def fetch_db(db: str, query: str, window_s: int = 900) -> dict:
    """The same view read from the store (needs the collector's code: ``pip install .``)."""
    from cxpulse.collector.lookup.report import build
    from cxpulse.collector.store import open_store

    store = open_store(db)
    try:
        return build(store, query, window_s)["agents"][0]
    finally:
        store.close()


def console_user() -> str | None:
    """Who sits at this machine's console, or None when nobody does (a hosted runner may have no
    console session). macOS: the owner of /dev/console; Windows: the user of the local
    session as psutil lists it; Linux: a user on a seat (tty/":0")."""
    if sys.platform == "darwin":
        import pwd

        try:
            name = pwd.getpwuid(os.stat("/dev/console").st_uid).pw_name
        except (OSError, KeyError):
            return None
        return None if name in ("root", "_mbsetupuser", "loginwindow") else name
    import psutil

    users = psutil.users()
    if sys.platform == "win32":  # no terminal there; a session at the console has no client address
        console = [u.name for u in users if (u.host or "0.0.0.0") == "0.0.0.0"]
    else:
        console = [u.name for u in users if (u.terminal or "").startswith(("tty", ":"))]
    return console[0] if console else None


def _same_user(seen: str, expected: str) -> bool:
    """Windows names come as DOMAIN\\user or user; case does not matter there."""
    a, b = seen.rsplit("\\", 1)[-1], expected.rsplit("\\", 1)[-1]
    return a.lower() == b.lower() if sys.platform == "win32" or "\\" in seen + expected else a == b


def run_checks(
    view: dict,
    *,
    target_address: str = "127.0.0.1",
    state_dir: str | None = None,
    expect_user: str | None = None,
    need_console: bool = False,
) -> list[Check]:
    """The checks over one agent's lookup view (``report.build``'s agent section)."""
    checks = []
    targets = view.get("targets") or []
    gw = next((t for t in targets if t.get("target") == "gateway"), None)
    if gw and gw.get("samples", 0) > 0:
        checks.append(
            Check(
                "gateway",
                True,
                f"gateway {','.join(gw['addresses'])}: {gw['samples']} samples, "
                f"loss {gw['loss_pct']}%, median {gw['rtt_median_ms']} ms, "
                f"methods {','.join(gw['methods'])}",
            )
        )
    else:
        checks.append(
            Check(
                "gateway",
                False,
                "no gateway row: the agent found no default gateway "
                f"(targets seen: {[t.get('target') for t in targets]})",
            )
        )

    icmp = [
        t
        for t in targets
        if target_address in (t.get("addresses") or []) and any(m.startswith("icmp") for m in t.get("methods") or [])
    ]
    if icmp:
        t = icmp[0]
        checks.append(
            Check(
                "icmp",
                True,
                f"{t['target']} -> {target_address}: {t['samples']} samples by "
                f"{','.join(t['methods'])}, loss {t['loss_pct']}%, median {t['rtt_median_ms']} ms",
            )
        )
    else:
        seen = {t.get("target"): (t.get("addresses"), t.get("methods")) for t in targets}
        checks.append(Check("icmp", False, f"no ICMP row to {target_address} (rows: {seen})"))

    paths = view.get("paths") or []
    gw_addrs = set(gw["addresses"]) if gw else set()
    first_hops = [(p, h) for p in paths for h in p.get("hops") or [] if h.get("ttl") == 1]
    answered = [(p, h) for p, h in first_hops if h.get("address")]
    if answered and (not gw_addrs or any(h["address"] in gw_addrs for _, h in answered)):
        p, h = answered[0]
        checks.append(
            Check(
                "path",
                True,
                f"path to {p['target']} ({p['address']}, {p['method']}): "
                f"{len(p['hops'])} hops, hop 1 {h['address']} {h['rtt_ms']} ms",
            )
        )
    elif answered:
        checks.append(Check("path", False, f"hop 1 is {answered[0][1]['address']}, not the gateway {sorted(gw_addrs)}"))
    else:
        why = (
            "no path trace in the window"
            if not paths
            else f"{len(paths)} trace(s), hop 1 never answered (hops: {[p.get('hops') for p in paths][:2]})"
        )
        checks.append(Check("path", False, why))

    if state_dir is not None:
        rejected = Path(state_dir, *REJECTED_DIR)
        aside = sorted(p.name for p in rejected.glob("*")) if rejected.is_dir() else []
        corrupt = []
        gaps = Path(state_dir, *GAPS_FILE)
        if gaps.is_file():
            try:
                data = json.loads(gaps.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                corrupt.append(f"gaps.json unreadable: {exc}")
            else:
                items = data if isinstance(data, list) else data.get("gaps", []) if isinstance(data, dict) else []
                corrupt += [json.dumps(g) for g in items if CORRUPT_REASON in json.dumps(g)]
        checks.append(
            Check(
                "spool",
                not aside and not corrupt,
                f"set aside: {aside or 'none'}; corrupt gaps: {corrupt or 'none'} ({rejected})",
            )
        )

    user = view.get("user")
    if "user" not in view:
        checks.append(Check("user", False, "the view has no user field"))
    elif expect_user:
        checks.append(
            Check(
                "user",
                bool(user) and _same_user(user, expect_user),
                f"desk user {user!r}, console user {expect_user!r}",
            )
        )
    elif need_console:
        checks.append(Check("user", False, f"no console session to compare with (desk user {user!r})"))
    else:
        checks.append(
            Check(
                "user",
                True,
                f"desk user {user!r}; this machine has no console session "
                "(a hosted runner may have none), so only the field's presence is checked",
            )
        )
    return checks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--api", help="the collector's HTTP base URL (collector serve --http)")
    src.add_argument("--db", help="the collector's store (SQLite path or postgresql:// URL)")
    ap.add_argument("--key", default=os.environ.get("CXPULSE_API_KEY", ""), help="API key (or $CXPULSE_API_KEY)")
    ap.add_argument("--query", required=True, help="user, host, agent id or site to look up")
    ap.add_argument("--window", type=int, default=900, help="seconds back (default 900)")
    ap.add_argument("--target-address", default="127.0.0.1")
    ap.add_argument("--state-dir", help="the agent's state directory (the spool's set-aside batches)")
    who = ap.add_mutually_exclusive_group()
    who.add_argument("--expect-user", help="the desk user the agent must report")
    who.add_argument("--console-user", action="store_true", help="expect this machine's console user, if any")
    ap.add_argument("--json-out", help="write the view's figures and the checks here")
    args = ap.parse_args(argv)

    try:
        view = (
            fetch_api(args.api, args.key, args.query, args.window)
            if args.api
            else fetch_db(args.db, args.query, args.window)
        )
    except Exception as exc:
        print(f"desk_check: cannot read the lookup: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    expect = args.expect_user or (console_user() if args.console_user else None)
    checks = run_checks(view, target_address=args.target_address, state_dir=args.state_dir, expect_user=expect)
    print(
        f"desk_check: agent {view.get('agent_id')} on {view.get('host')} ({view.get('os')}), "
        f"user {view.get('user')!r}, version {view.get('agent_version')}"
    )
    for c in checks:
        print(f"  {'ok  ' if c.ok else 'FAIL'} {c.name:8} {c.detail}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"view": view, "checks": [list(c) for c in checks]}, indent=2))
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
