"""``cxpulse collector config set FILE`` / ``show``: the central config's versions in the database."""

from __future__ import annotations

import argparse
import getpass
import sys


def register(col: argparse._SubParsersAction) -> None:
    from ..paths import default_db

    cfg = col.add_parser("config", help="central configuration pushed to agents").add_subparsers(
        dest="config_command", required=True, metavar="ACTION"
    )
    s = cfg.add_parser("set", help="check a TOML file and store it as the next version (running collectors push it)")
    s.add_argument("file")
    s.add_argument("--db", default=None, help=f"SQLite path or postgresql:// URL (default {default_db()})")
    s.add_argument("--actor", default="", help="who made the change (default: this OS user)")
    s.set_defaults(func=cmd_set)
    c = cfg.add_parser("check", help="check a TOML file without storing it")
    c.add_argument("file")
    c.set_defaults(func=cmd_check)
    sh = cfg.add_parser("show", help="print the newest stored version (or --history)")
    sh.add_argument("--db", default=None, help=f"SQLite path or postgresql:// URL (default {default_db()})")
    sh.add_argument("--history", action="store_true", help="list versions, newest first")
    sh.set_defaults(func=cmd_show)


def _read(path: str) -> str:
    from .watch import _read as read

    return read(path)


def cmd_check(args: argparse.Namespace) -> int:
    from .central import ConfigError, parse

    try:
        parse(_read(args.file))
    except ConfigError as exc:
        print(f"cxpulse collector config: {args.file}: {exc.reason}", file=sys.stderr)
        return 1
    print(f"{args.file}: ok")
    return 0


def cmd_set(args: argparse.Namespace) -> int:
    from ..paths import default_db
    from .central import ConfigError, current, update

    db = args.db or default_db()
    try:
        text = _read(args.file)
        before, _ = current(db)
        version = update(db, text, args.actor or f"cli {getpass.getuser()}")
    except ConfigError as exc:
        print(f"cxpulse collector config: {args.file} refused, nothing stored: {exc.reason}", file=sys.stderr)
        return 1
    print(
        f"version {version}"
        + (" (unchanged)" if version == before else " stored; running collectors push it within seconds")
    )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from ..paths import default_db
    from .versions import VersionStore

    vs = VersionStore(args.db or default_db())
    try:
        if args.history:
            import datetime

            for v in vs.history():
                when = datetime.datetime.fromtimestamp(v.created_us / 1e6, datetime.UTC)
                print(f"{v.version:5d}  {when:%Y-%m-%d %H:%M:%S}Z  {v.actor}")
            return 0
        latest = vs.latest()
    finally:
        vs.close()
    if latest is None:
        print("no central config stored (agents get the collector serve flags)", file=sys.stderr)
        return 1
    print(f"# version {latest.version} by {latest.actor}")
    print(latest.toml, end="" if latest.toml.endswith("\n") else "\n")
    return 0
