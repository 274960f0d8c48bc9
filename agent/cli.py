"""``cxpulse agent ...``: run the agent as a service or in a terminal."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from .config import AgentConfig, ConfigError, load, parse_target, read_token_file


def register(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """``cxpulse agent run`` and ``wifi``; returns the actions for service.register_agent to add
    the installed build's (once, configure, service)."""
    agent = sub.add_parser("agent", help="the endpoint agent").add_subparsers(
        dest="agent_command", required=True, metavar="ACTION"
    )
    run = agent.add_parser("run", help="measure and stream to the collector until SIGTERM/SIGINT")
    add_agent_options(run)
    run.set_defaults(func=cmd_run)

    from .wifi import cli as wifi_cli

    wifi_cli.register(agent)
    return agent


def add_agent_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="bootstrap TOML file (see agent/agent.example.toml)")
    p.add_argument("--collector", help="collector gRPC address HOST:PORT")
    p.add_argument("--state-dir", help="spool, identity and sequence state")
    p.add_argument("--site", help="site label shown in lookups")
    p.add_argument("--user", help="override the desk user name reported")
    p.add_argument("--agent-id", help="fixed agent id (default: generated once and kept in the state dir)")
    p.add_argument(
        "--target", action="append", default=[], metavar="NAME=HOST[:PORT]", help="a target to measure (repeatable)"
    )
    p.add_argument("--interval", type=float, help="seconds between probes (default 1)")
    p.add_argument("--timeout", type=float, help="seconds a probe waits for an answer (default 1)")
    p.add_argument("--batch-interval", type=float, help="seconds between batches (default 30)")
    p.add_argument("--no-gateway", action="store_true", help="do not measure the default gateway")
    p.add_argument("--ca-file", help="CA to verify the collector against (the one given at install time)")
    p.add_argument(
        "--enroll-token",
        help="enrollment token, spent once for this agent's own credential "
        "(visible to local users in ps: prefer --enroll-token-file)",
    )
    p.add_argument(
        "--enroll-token-file",
        metavar="PATH",
        help="read the enrollment token from this file ('-': standard input), kept out of ps",
    )
    p.add_argument("--insecure", action="store_true", help="plain-text gRPC (development only; logged loudly)")
    p.add_argument("--methods", help="comma-separated RTT methods to allow: icmp_raw,icmp_dgram,tcp_connect")


def config_from_args(args: argparse.Namespace) -> AgentConfig:
    cfg = load(args.config) if args.config else AgentConfig()
    token = getattr(args, "enroll_token", None)
    if getattr(args, "enroll_token_file", None):
        if token:
            raise ConfigError("give the enrollment token once: --enroll-token or --enroll-token-file, not both")
        token = read_token_file(args.enroll_token_file)
    targets = tuple(parse_target(t) for t in args.target) if args.target else None
    return cfg.with_overrides(
        collector=args.collector,
        state_dir=args.state_dir,
        site=args.site,
        user=args.user,
        agent_id=args.agent_id,
        targets=targets,
        probe_interval_s=args.interval,
        probe_timeout_s=args.timeout,
        batch_interval_s=args.batch_interval,
        measure_gateway=False if args.no_gateway else None,
        rtt_methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()) if args.methods else None,
        ca_file=os.path.abspath(args.ca_file) if getattr(args, "ca_file", None) else None,
        enroll_token=token,
        insecure=True if getattr(args, "insecure", False) else None,
    )


def cmd_run(args: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(args)
    except ConfigError as exc:
        print(f"cxpulse agent: configuration error: {exc}", file=sys.stderr)
        return 2
    from . import memory

    memory.prepare()  # before the runner's imports and grpc's threads
    from .runner import run_until_signalled

    asyncio.run(_run(cfg, run_until_signalled))
    return 0


SETTLE_AFTER_S = 30.0  # start-up done: first app checks, first trace, first voice run


async def _run(cfg: AgentConfig, run_until_signalled) -> None:
    from . import memory

    asyncio.get_running_loop().call_later(SETTLE_AFTER_S, memory.settle)
    await run_until_signalled(cfg)
