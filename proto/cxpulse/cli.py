"""The ``cxpulse`` command. Subcommands live with their part: agent/cli.py, collector/cli.py."""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cxpulse", description="Endpoint experience monitoring for contact centers.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    from cxpulse.agent.service import register_agent, version_line

    parser.add_argument("--version", action="version", version=version_line())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    register_agent(sub)
    if _command(sys.argv[1:] if argv is None else argv) != "agent":  # the agent's process never loads the collector
        from cxpulse.collector import cli as collector_cli

        collector_cli.register(sub)

    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * args.verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # One INFO line per app check is noise; our own log says what matters.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, level))
    from cxpulse.extras import EXTRAS, MissingExtra, report

    try:
        return args.func(args) or 0
    except MissingExtra as exc:  # one line naming the extra, never a traceback
        return report(exc)
    except ImportError as exc:  # an extra's module imported without require(): the same line
        if exc.name and exc.name.split(".")[0] in EXTRAS:
            return report(MissingExtra(exc.name))
        raise
    except KeyboardInterrupt:
        return 130


def _command(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


if __name__ == "__main__":
    sys.exit(main())
