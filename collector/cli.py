"""``cxpulse collector serve``, ``cxpulse lookup`` and ``cxpulse demo``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from cxpulse.extras import MissingExtra

from .durations import parse_duration
from .paths import default_db, redact

__all__ = ["default_db", "parse_duration", "redact", "register"]  # the first three re-exported for older callers


def register(sub: argparse._SubParsersAction) -> None:
    col = sub.add_parser("collector", help="the central collector").add_subparsers(
        dest="collector_command", required=True, metavar="ACTION"
    )
    serve = col.add_parser("serve", help="accept agent streams over gRPC and store them")
    serve.add_argument(
        "--listen",
        default="127.0.0.1:50051",
        help="gRPC listen address (default 127.0.0.1:50051; 0.0.0.0:50051 for a network)",
    )
    serve.add_argument("--db", default=None, help=f"SQLite path or postgresql:// URL (default {default_db()})")
    serve.add_argument(
        "--reflector-key-file",
        default=None,
        help="reflector master key file (default: beside a SQLite database, else in the data directory)",
    )
    serve.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="NAME=HOST[:PORT]",
        help="push this target to every agent (repeatable)",
    )
    serve.add_argument("--probe-interval", type=float, default=0, help="push this probe interval (seconds) to agents")
    serve.add_argument("--batch-interval", type=float, default=0, help="push this batch interval (seconds) to agents")
    serve.add_argument(
        "--app", action="append", default=[], metavar="NAME=URL", help="push this app check to every agent (repeatable)"
    )
    serve.add_argument("--app-interval", type=float, default=0, help="push this app check interval (seconds) to agents")
    serve.add_argument(
        "--reflector",
        default="",
        metavar="HOST:PORT",
        help="run the voice-cadence UDP reflector here (e.g. 0.0.0.0:50052); empty: off",
    )
    serve.add_argument(
        "--reflector-advertise",
        default="",
        metavar="HOST:PORT",
        help="reflector address as agents reach it (default: the --reflector address)",
    )
    serve.add_argument(
        "--voice-interval", type=float, default=0, help="push this voice-cadence interval (seconds) to agents"
    )
    serve.add_argument(
        "--http",
        default="",
        metavar="HOST:PORT",
        help="serve the helpdesk page, JSON API and /metrics here (e.g. 127.0.0.1:8080); empty: off",
    )
    serve.add_argument(
        "--http-public-url",
        default="",
        metavar="URL",
        help="how analysts reach the page (links in alerts and tickets; default: the listen address)",
    )
    serve.add_argument(
        "--pseudonymize",
        action="store_true",
        help="show pseudonyms instead of user names in the fleet, incidents and site searches (docs/privacy.md)",
    )
    serve.add_argument(
        "--pseudonym-secret-file",
        default=None,
        metavar="FILE",
        help="HMAC secret for pseudonyms, created 0600 if missing (default: pseudonym.key beside the SQLite "
        "database; collectors sharing PostgreSQL must share it)",
    )
    serve.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="ADDR[/BITS]",
        help="reverse proxy whose X-Forwarded-For names the client in the audit log (repeatable)",
    )
    serve.add_argument(
        "--metrics-open", action="store_true", help="serve /metrics without an API key (counts per site only)"
    )
    serve.add_argument(
        "--alerts-config",
        default=None,
        metavar="FILE",
        help="webhooks into ITSM (TOML, see collector/alerts/alerts.example.toml); needs --http",
    )
    serve.add_argument("--raw-days", type=float, default=7.0, help="keep raw samples this many days (default 7)")
    serve.add_argument(
        "--rollup-days",
        type=float,
        default=400.0,
        help="keep 15-minute rollups (and closed incidents) this many days (default 400)",
    )
    serve.add_argument(
        "--minute-rollup-days",
        type=float,
        default=None,
        help="keep per-minute rollups this many days (default 35, at most --rollup-days)",
    )
    serve.add_argument(
        "--tls-dir",
        default="",
        metavar="DIR",
        help="serve TLS with DIR/server.pem and DIR/server.key, as `collector init` writes them "
        "(default: tls/ beside the SQLite database, if `collector init` made it)",
    )
    serve.add_argument(
        "--tls-cert", default="", metavar="FILE", help="server certificate chain (PEM), instead of --tls-dir"
    )
    serve.add_argument("--tls-key", default="", metavar="FILE", help="its private key (PEM)")
    serve.add_argument(
        "--client-ca",
        default="",
        metavar="FILE",
        help="mutual TLS: require agents to present a client certificate signed by this CA",
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="plain-text gRPC without TLS (development only; logged loudly). Without TLS material and "
        "without this flag the collector refuses to start. Agents must enroll either way",
    )
    serve.add_argument("--ready-file", help="write the bound port here once listening (for scripts)")
    from .ingest.limits import add_arguments as add_limit_arguments
    from .score.isp_name import add_arguments as add_naming_arguments

    add_limit_arguments(serve)
    add_naming_arguments(serve)  # --asn-db, --no-reverse-dns, --reverse-dns-server (score/isp_name.py)
    serve.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="central config pushed to agents (TOML, collector/config/collector.example.toml); "
        "re-read on change and on SIGHUP; the flags above are its base",
    )
    from .config import cli as config_cli

    config_cli.register(col)  # collector config set | show
    serve.set_defaults(func=cmd_serve)
    mig = col.add_parser(
        "migrate-storage",
        help="fold the samples_* rows of an older version into hour chunks now (serve does it in the background)",
        description="Resumable: Ctrl-C stops after the running step, the next run goes on from there "
        "(docs/storage-migration.md).",
    )
    mig.add_argument(
        "--store", "--db", dest="store", default=None, help=f"SQLite path or postgresql:// URL (default {default_db()})"
    )
    mig.set_defaults(func=cmd_migrate_storage)

    lookup = sub.add_parser(
        "lookup",
        help="what an agent measured: search by user, host, agent id or site",
        description="When the problem started and where, the verdict, the next step, how many other desks "
        "saw it at the same time, and the places with the most felt events. --full adds the "
        "ticket text and every figure and event.",
    )
    lookup.add_argument(
        "query",
        help='words of the person\'s name ("maria silva", any order, accents optional), login, host name, '
        "agent id or site (partial, case-insensitive)",
    )
    lookup.add_argument("--db", default=None, help=f"SQLite path or postgresql:// URL (default {default_db()})")
    lookup.add_argument("--window", type=parse_duration, default=3600, help="how far back (default 1h)")
    lookup.add_argument("--json", action="store_true", help="machine-readable output (everything)")
    lookup.add_argument(
        "--full",
        action="store_true",
        help="everything: the ticket text, per hop, apps, voice, device, Wi-Fi, paths and each event",
    )
    lookup.add_argument(
        "--tz", default=None, help="time zone of the short output's times, e.g. Europe/Lisbon (default UTC)"
    )
    add_naming_arguments(lookup)
    lookup.set_defaults(func=cmd_lookup)

    from .security import cli as security_cli

    security_cli.register(col)  # collector init | tokens | agents | keys

    demo = sub.add_parser("demo", help="collector + agent on this machine, then the lookup")
    demo.add_argument("--duration", type=float, default=30, help="seconds to measure (default 30; Ctrl-C stops early)")
    demo.add_argument("--data-dir", help="where the demo keeps its database and spool (default: a per-user directory)")
    demo.add_argument("--interval", type=float, default=1.0, help="seconds between probes (default 1)")
    demo.add_argument("--batch-interval", type=float, default=5.0, help="seconds between batches (default 5)")
    demo.add_argument(
        "--local-only", action="store_true", help="measure only this machine (loopback), not the default gateway"
    )
    demo.set_defaults(func=cmd_demo)

    from .score import cli as score_cli

    score_cli.register(sub)

    from .alerts import cli as alerts_cli

    alerts_cli.register(sub)  # cxpulse alerts check-config FILE | test-send ...


def cmd_serve(args: argparse.Namespace) -> int:
    from cxpulse.agent.config import ConfigError, parse_target

    from .ingest.service import IngestConfig
    from .server import serve

    try:
        targets = [parse_target(t) for t in args.target]
    except ConfigError as exc:
        print(f"cxpulse collector: {exc}", file=sys.stderr)
        return 2
    apps = []
    for spec in args.app:
        name, sep, url = spec.partition("=")
        if not sep or not name or not (url.startswith("https://") or url.startswith("http://")):
            print(f"cxpulse collector: --app must look like NAME=https://host/path, got {spec!r}", file=sys.stderr)
            return 2
        apps.append((name, url, 500))
    config = IngestConfig(
        probe_interval_ms=int(args.probe_interval * 1000),
        batch_interval_ms=int(args.batch_interval * 1000),
        targets=[(t.name, t.host, t.port) for t in targets],
        apps=apps,
        app_interval_ms=int(args.app_interval * 1000),
        voice_interval_ms=int(args.voice_interval * 1000),
        reflector=args.reflector_advertise,
    )
    alerts_config = None
    if args.alerts_config:
        from .alerts import ConfigError as AlertsConfigError
        from .alerts import load_config

        if not args.http:
            print("cxpulse collector: --alerts-config needs --http", file=sys.stderr)
            return 2
        try:
            alerts_config = load_config(args.alerts_config)
        except AlertsConfigError as exc:
            print(f"cxpulse collector: {exc}", file=sys.stderr)
            return 2
    if args.rollup_days < args.raw_days or args.raw_days <= 0:
        print("cxpulse collector: --rollup-days must be >= --raw-days > 0", file=sys.stderr)
        return 2
    if args.minute_rollup_days is not None and not args.raw_days <= args.minute_rollup_days <= args.rollup_days:
        print("cxpulse collector: --minute-rollup-days must be within --raw-days .. --rollup-days", file=sys.stderr)
        return 2
    tls = _server_tls(args)
    if tls == 2:
        return 2
    from .ingest.limits import from_arguments as limits_from_arguments

    try:
        limits = limits_from_arguments(args)
    except ValueError as exc:
        print(f"cxpulse collector: {exc}", file=sys.stderr)
        return 2
    if _install_isp_namer(args, "cxpulse collector") == 2:
        return 2
    try:
        asyncio.run(
            serve(
                args.db or default_db(),
                args.listen,
                config,
                args.ready_file,
                args.reflector,
                limits=limits,
                central_config=args.config,
                reflector_key_file=args.reflector_key_file,
                http_listen=args.http,
                http_public_url=args.http_public_url,
                alerts_config=alerts_config,
                raw_days=args.raw_days,
                rollup_days=args.rollup_days,
                minute_rollup_days=args.minute_rollup_days,
                tls=tls,
                insecure=args.insecure,
                http_options=_http_options(args),
            )
        )
    except MissingExtra:  # cxpulse.cli prints it: one line naming the extra, exit 2
        raise
    except Exception as exc:  # fail fast at start-up with one clear line (no traceback for config errors)
        print(f"cxpulse collector: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def _server_tls(args: argparse.Namespace):
    """The TLS material to serve with, None for --insecure, or 2 after printing why it cannot start."""
    from .security.cli import default_tls_dir
    from .security.tls import SERVER_CERT, TlsConfigError, load_server_tls

    given = args.tls_dir or args.tls_cert or args.tls_key
    if args.insecure:
        if given or args.client_ca:
            print("cxpulse collector: --insecure and TLS options exclude each other", file=sys.stderr)
            return 2
        return None
    tls_dir, fallback = args.tls_dir, default_tls_dir(args.db)
    if not given and os.path.exists(os.path.join(fallback, SERVER_CERT)):
        tls_dir = fallback
    try:
        tls = load_server_tls(tls_dir, args.tls_cert, args.tls_key, args.client_ca)
    except TlsConfigError as exc:
        print(f"cxpulse collector: {exc}", file=sys.stderr)
        return 2
    if tls is None:
        print(
            "cxpulse collector: refusing to start without TLS: no TLS material was given and none was found in "
            f"{fallback}. Run `cxpulse collector init --name HOST` once, then serve with --tls-dir DIR "
            "(or --tls-cert/--tls-key); for development on a trusted network only, pass --insecure",
            file=sys.stderr,
        )
        return 2
    return tls


def _http_options(args: argparse.Namespace) -> dict:
    """The lookup API's access options from the serve flags (collector/lookup/access.py)."""
    secret = args.pseudonym_secret_file
    db = args.db or default_db()
    if secret is None and "://" not in db:  # also for keys made with pseudonymize on a collector without it
        secret = os.path.join(os.path.dirname(os.path.abspath(db)), "pseudonym.key")
    return {
        "pseudonymize": args.pseudonymize,
        "pseudonym_secret_file": secret,
        "trusted_proxies": tuple(args.trusted_proxy),
        "metrics_open": args.metrics_open,
    }


def _install_isp_namer(args: argparse.Namespace, who: str) -> int:
    """The ISP namer the flags describe, for this process (score/isp_name.py); 2 after saying why not."""
    from .score import isp_name

    try:
        isp_name.install(isp_name.from_arguments(args))
    except isp_name.NamingError as exc:
        print(f"{who}: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_lookup(args: argparse.Namespace) -> int:
    from .lookup.report import NoMatch, build, render_json, render_text
    from .store import open_store

    if _install_isp_namer(args, "cxpulse lookup") == 2:
        return 2
    db = args.db or default_db()
    is_url = "://" in db
    if not is_url and not os.path.exists(db):
        print(f"cxpulse lookup: no collector database at {db} (use --db)", file=sys.stderr)
        return 2
    try:
        store = open_store(db)
    except Exception as exc:  # unreachable server, wrong credentials, missing driver
        print(f"cxpulse lookup: cannot open {redact(db)}: {exc}", file=sys.stderr)
        return 2
    from .lookup.access import record_cli_lookup

    try:
        view = build(store, args.query, args.window)
    except NoMatch as exc:
        view = None
        print(f"cxpulse lookup: {exc}", file=sys.stderr)
    finally:
        store.close()
    try:  # a lookup of a person is recorded, also from the command line; unrecorded, it is not shown
        record_cli_lookup(db, args.query, args.window, view)
    except Exception as exc:
        print(f"cxpulse lookup: cannot write the audit log, so the lookup is not shown: {exc}", file=sys.stderr)
        return 2
    if view is None:
        return 1
    if args.json:
        print(render_json(view))
        return 0
    if not args.full:
        from .lookup.report import render_compact
        from .lookup.timefmt import zone

        try:
            zone(args.tz)
        except (KeyError, ValueError):
            print(
                f"cxpulse lookup: unknown time zone {args.tz!r} (an IANA name such as Europe/Lisbon)", file=sys.stderr
            )
            return 2

        print(render_compact(view, args.tz), end="")
        return 0
    from .lookup.ticket import ticket_summary

    # The ticket summary first (what to paste into the ticket), then the figures behind it.
    for a in view["agents"]:
        print(ticket_summary(a, view["window"]).rstrip() + "\n")
    print(render_text(view), end="")
    return 0


def cmd_migrate_storage(args: argparse.Namespace) -> int:
    from .jobs.raw_compaction import migrate, open_existing

    url = args.store or default_db()
    try:
        store = open_existing(url)
    except (OSError, ValueError, MissingExtra) as exc:
        print(f"cxpulse collector migrate-storage: {exc}", file=sys.stderr)
        return 2
    try:
        r = migrate(store)
    finally:
        store.close()
    return 130 if r.stopped else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return asyncio.run(run_demo(args))
