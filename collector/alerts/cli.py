"""``cxpulse alerts check-config FILE`` and ``cxpulse alerts test-send``: set up ITSM webhooks by hand.
``test-send`` posts one test alert through the real sender (same body, signature and retries) and prints each attempt,
so IT sees in one command whether ServiceNow, JSM or the chat channel accepts what the collector will send.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

__all__ = ["register"]


def register(sub) -> None:
    p = sub.add_parser("alerts", help="webhooks into IT service management: check a config, send a test")
    asub = p.add_subparsers(dest="alerts_cmd", required=True)
    chk = asub.add_parser("check-config", help="validate an alerts TOML file")
    chk.add_argument("config", help="path to the alerts TOML (see collector/alerts/alerts.example.toml)")
    chk.set_defaults(func=cmd_check_config)
    ts = asub.add_parser("test-send", help="send one test alert and show every delivery attempt")
    src = ts.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="alerts TOML: send to its webhooks")
    src.add_argument("--url", help="send to this URL instead of a config's webhooks")
    ts.add_argument("--webhook", help="with --config: only this webhook (by name)")
    ts.add_argument("--format", default="generic", help="with --url: generic, servicenow, jsm, slack or teams")
    ts.add_argument("--secret-file", default="", help="with --url: HMAC key file for X-Cxpulse-Signature")
    ts.add_argument("--timeout", type=float, default=30, help="give up after this many seconds (default 30)")
    ts.set_defaults(func=cmd_test_send)


def cmd_check_config(args: argparse.Namespace) -> int:
    from .config import ConfigError, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"cxpulse alerts: {exc}", file=sys.stderr)
        return 2
    print(
        f"{args.config}: ok; poor for {cfg.poor_minutes} min opens, {cfg.resolve_minutes} min at >= "
        f"{cfg.resolve_score:.0f} resolves"
    )
    for w in cfg.webhooks:
        signed = "signed" if (w.secret_file or w.secret_env) else "UNSIGNED"
        print(f"  {w.name}: {w.format} -> {w.redacted_url()} ({', '.join(w.alerts)}; {signed})")
    return 0


def cmd_test_send(args: argparse.Namespace) -> int:
    from .config import AlertConfig, ConfigError, WebhookConfig, load_config

    try:
        if args.config:
            cfg = load_config(args.config)
            if args.webhook:
                cfg.webhooks = [w for w in cfg.webhooks if w.name == args.webhook]
                if not cfg.webhooks:
                    print(f"cxpulse alerts: no webhook named {args.webhook!r} in {args.config}", file=sys.stderr)
                    return 2
        else:
            cfg = AlertConfig(
                webhooks=[WebhookConfig(name="cli", url=args.url, format=args.format, secret_file=args.secret_file)],
                backoff_base_s=1.0,
                backoff_max_s=8.0,
                give_up_after_s=max(1.0, args.timeout),
            )
            cfg.validate()
    except ConfigError as exc:
        print(f"cxpulse alerts: {exc}", file=sys.stderr)
        return 2
    cfg.give_up_after_s = min(cfg.give_up_after_s, args.timeout)
    cfg.test_send_min_interval_s = 0
    return asyncio.run(_send(cfg, args.timeout))


async def _send(cfg, timeout: float) -> int:
    from .alerter import Alerter

    class _NoFleet:  # test-send needs no store
        public_url = ""

    al = Alerter(cfg, _NoFleet())
    await al.start(loop=False)
    al.test_send()
    deadline = time.monotonic() + timeout
    for s in al.senders.values():
        await s.flush(max(0.1, deadline - time.monotonic()))
    await al.stop(flush_timeout=0.1)
    ok = True
    for e in al.deliveries.entries():
        status = e["status"] if e["status"] is not None else "-"
        print(
            f"  {e['webhook']}: attempt {e['attempt']}: {e['outcome']} (HTTP {status}"
            + (f", {e['error']}" if e.get("error") else "")
            + ")"
        )
    for name, s in al.senders.items():
        if not s.counts.get("delivered"):
            ok = False
            print(f"cxpulse alerts: {name}: not delivered", file=sys.stderr)
    return 0 if ok else 1
