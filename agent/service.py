"""The agent as installed: the frozen ``cxpulse`` executable, ``agent once``, ``agent configure``.
Its parser is built from the agent's modules only: the collector's imports have no place on a desk.
Design notes: docs/agent-internals.md, "agent/service.py"; installers: docs/installers.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import logging
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from cxpulse import __version__
from cxpulse.atomicfile import write_atomic

from . import acl_windows
from . import cli as agent_cli
from .cli import add_agent_options, config_from_args
from .config import ENROLL_FILE, AgentConfig, ConfigError, load
from .path.child_argv import trace_child_argv
from .service_runner import SERVICE_NAME, ServiceRunner

__all__ = [
    "ENROLL_FILE",
    "SERVICE_NAME",
    "ServiceRunner",
    "build_parser",
    "cmd_configure",
    "cmd_once",
    "main",
    "quick_check",
    "register",
    "register_agent",
    "trace_child_argv",
    "write_bootstrap",
]

# The keys ``enroll_token`` and ``ca_file`` live in this file beside the bootstrap file, readable by
# the service only (agent.toml stays readable for `agent once`); config.load merges it (ENROLL_FILE).
CA_FILE = "ca.pem"

log = logging.getLogger("cxpulse.agent.service")


# --- the frozen executable's command line ------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """``cxpulse [-v] [--version] agent ACTION``: the agent's actions only."""
    parser = argparse.ArgumentParser(prog="cxpulse", description="cxpulse endpoint agent (installed build).")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("--version", action="version", version=version_line())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register_agent(sub)
    return parser


def register_agent(sub: argparse._SubParsersAction) -> None:
    """``cxpulse agent``: ``run`` and ``wifi`` (agent/cli.py) plus the installed build's actions.

    The one place both meet, for the frozen executable and the full ``cxpulse`` command alike:
    agent/cli.py does not import this module (no import cycle, issue 20).
    """
    register(agent_cli.register(sub))


def version_line() -> str:
    build = "frozen" if getattr(sys, "frozen", False) else "source"
    return f"cxpulse {__version__} ({build}; Python {platform.python_version()}; {sys.platform} {platform.machine()})"


def register(agent_sub: argparse._SubParsersAction) -> None:
    """Add ``once``, ``configure``, ``service`` (and ``wifi`` if missing) to ``cxpulse agent``.

    Skips actions that are already there.
    """
    have = set(agent_sub.choices)
    if "once" not in have:
        p = agent_sub.add_parser("once", help="one round of measurements, printed: a quick check on a desk")
        add_agent_options(p)
        p.add_argument("--count", type=int, default=3, help="probes per target (default 3)")
        p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
        p.add_argument("--no-wifi", action="store_true", help="skip the Wi-Fi reading")
        p.set_defaults(func=cmd_once)
    if "configure" not in have:
        p = agent_sub.add_parser("configure", help="write the bootstrap file from installer parameters")
        p.add_argument("--config", required=True, help="bootstrap file to create or update")
        p.add_argument(
            "--root",
            default="",
            help="write below this directory, as if it were / "
            "(paths inside the files stay as the agent will see them; image builds, dpkg --root)",
        )
        p.add_argument("--collector", default="", help="collector gRPC address HOST:PORT")
        p.add_argument("--site", default="", help="site label")
        p.add_argument("--state-dir", default="", help="spool, identity and sequence state")
        p.add_argument(
            "--enroll-token",
            default="",
            help=f"enrollment token, kept in {ENROLL_FILE} beside --config "
            "('-' reads it from standard input, out of sight of process listings)",
        )
        p.add_argument(
            "--ca-cert",
            default="",
            help="collector CA: a PEM file path, PEM text, or base64 of PEM/DER (stored as ca.pem)",
        )
        p.set_defaults(func=cmd_configure)
    if "service" not in have:
        p = agent_sub.add_parser("service", help="run as a Windows service (started by the service manager)")
        p.add_argument("--config", required=True, help="bootstrap TOML file")
        p.add_argument("--log-file", default="", help="log file (default: logs\\agent.log beside the config)")
        p.set_defaults(func=cmd_service)
    if "wifi" not in have:
        from .wifi import cli as wifi_cli

        wifi_cli.register(agent_sub)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * args.verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, level))
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130


# --- agent once ----------------------------------------------------------------------------------


def cmd_once(args: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(args)
    except ConfigError as exc:
        print(f"cxpulse agent once: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.count < 1 or args.count > 100:
        print("cxpulse agent once: --count must be 1..100", file=sys.stderr)
        return 2
    report = asyncio.run(quick_check(cfg, count=args.count, wifi=not args.no_wifi))
    report["config"] = args.config or ""
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


async def quick_check(cfg: AgentConfig, *, count: int = 3, wifi: bool = True, spacing_s: float = 0.2) -> dict:
    """Measure once what the running agent measures continuously; never raises for a network problem."""
    from . import netinfo
    from .probes.base import Target
    from .probes.rtt import RttProbe

    probe = RttProbe(methods=list(cfg.rtt_methods) or None)
    await probe.start()
    targets = []
    gw = netinfo.default_gateway() if cfg.measure_gateway else None
    if gw is not None:
        targets.append(Target("gateway", gw.address, 53))  # the port the runner uses when only TCP works
    targets.extend(cfg.targets)

    async def series(t: Target) -> dict:
        rtts, address, method = [], t.host, ""
        for i in range(count):
            if i:
                await asyncio.sleep(spacing_s)
            m = await probe.measure(t, cfg.probe_timeout_s)
            address, method = m.address, m.method
            rtts.append(m.rtt_us)
        got = [r for r in rtts if r is not None]
        return {
            "name": t.name,
            "host": t.host,
            "address": address,
            "method": method,
            "sent": count,
            "lost": count - len(got),
            "min_us": min(got, default=None),
            "median_us": int(statistics.median(got)) if got else None,
            "max_us": max(got, default=None),
        }

    try:
        collector, security, *rows = await asyncio.gather(
            _collector_check(cfg.collector, cfg.probe_timeout_s * 3),
            _security_check(cfg, cfg.probe_timeout_s * 3),
            *(series(t) for t in targets),
        )
    finally:
        await probe.close()
    collector["security"] = security
    report = {
        "version": __version__,
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "collector": collector,
        "targets": rows,
        "wifi": None,
        "device": None,
    }
    if wifi:
        report["wifi"] = await asyncio.to_thread(_wifi_summary)
    report["device"] = await asyncio.to_thread(_device_summary, gw.interface if gw else None)
    return report


async def _collector_check(address: str, timeout_s: float) -> dict:
    """Name lookup, then TCP connect to the collector's gRPC port: the part of delivery a desk decides.

    Timed apart, so that a slow resolver does not pass for a slow network.
    """
    host, _, port = address.rpartition(":")
    result = {"address": address, "reachable": False, "dns_ms": None, "connect_ms": None, "error": None}
    loop = asyncio.get_running_loop()
    try:
        started = time.perf_counter()
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM), timeout_s
        )
        result["dns_ms"] = round((time.perf_counter() - started) * 1000, 2)
        ip, real_port = str(infos[0][4][0]), int(infos[0][4][1])
        started = time.perf_counter()
        _, writer = await asyncio.wait_for(asyncio.open_connection(ip, real_port), timeout_s)
    except (TimeoutError, OSError) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return result
    result["connect_ms"] = round((time.perf_counter() - started) * 1000, 2)
    result["reachable"] = True
    writer.close()
    return result


async def _security_check(cfg: AgentConfig, timeout_s: float) -> dict:
    """The TLS handshake with the configured CA (a health check over the agent's own channel), and
    whether this desk holds a credential: the two things a wrong install gets wrong."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from .enrollment import CREDENTIAL_FILE, ChannelSecurity

    result = {
        "tls": "insecure (plain text)" if cfg.insecure else f"CA {cfg.ca_file}" if cfg.ca_file else "system CAs",
        "handshake": "",
        "enrolled": os.path.exists(os.path.join(cfg.state_dir, CREDENTIAL_FILE)),
        "token_configured": bool(cfg.enroll_token),
    }
    try:
        async with ChannelSecurity.from_config(cfg).channel(cfg.collector) as channel:
            stub = health_pb2_grpc.HealthStub(channel)  # its methods are set in __init__, unseen by mypy
            await stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)  # type: ignore[attr-defined]
        result["handshake"] = "ok"
    except grpc.aio.AioRpcError as exc:
        detail = exc.details() or ""
        result["handshake"] = f"failed: {detail[detail.find('SSL_ERROR') :] if 'SSL_ERROR' in detail else detail}"[:300]
    except (OSError, ValueError) as exc:
        result["handshake"] = f"failed: {exc}"
    return result


def _wifi_summary() -> dict:
    try:
        from .wifi import read_wifi
        from .wifi.cli import reading_json

        return reading_json(read_wifi())
    except Exception as exc:  # a quick check reports what it could not read instead of failing
        return {"error": f"{type(exc).__name__}: {exc}"}


def _device_summary(iface: str | None) -> dict:
    try:
        from .device import read_device

        snap, _ = read_device(None, iface)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {
        "cpu_pct_since_boot": snap.cpu_pct,
        "mem_pct": snap.mem_pct,
        "iface": snap.iface,
        "iface_kind": snap.iface_kind,
        "vpn": snap.vpn,
        "proxy": snap.proxy,
    }


def _ms(us: int | None) -> str:
    return "-" if us is None else f"{us / 1000:.1f}"


def format_report(r: dict) -> str:
    c = r["collector"]
    lines = [
        f"cxpulse {r['version']} quick check on {r['os']}" + (f" (config {r['config']})" if r.get("config") else "")
    ]
    state = (
        f"reachable, name lookup {c['dns_ms']} ms, TCP connect {c['connect_ms']} ms"
        if c["reachable"]
        else f"NOT reachable: {c['error']}"
    )
    lines.append(f"collector  {c['address']}: {state}")
    sec = c.get("security")
    if sec:
        enrolled = (
            "enrolled"
            if sec["enrolled"]
            else "not enrolled yet"
            + (" (token configured)" if sec["token_configured"] else " and NO enroll_token configured")
        )
        lines.append(f"security   {sec['tls']}; handshake {sec['handshake']}; {enrolled}")
    if r["targets"]:
        lines.append(
            f"{'target':<14} {'address':<26} {'method':<12} {'lost':>6} {'min ms':>8} {'median':>8} {'max ms':>8}"
        )
        for t in r["targets"]:
            lines.append(
                f"{t['name']:<14} {t['address']:<26} {t['method']:<12} {t['lost']:>3}/{t['sent']:<2} "
                f"{_ms(t['min_us']):>8} {_ms(t['median_us']):>8} {_ms(t['max_us']):>8}"
            )
    else:
        lines.append("no targets (no gateway found, none configured)")
    w = r.get("wifi")
    if w is not None:
        if "error" in w:
            lines.append(f"wifi       cannot read: {w['error']}")
        elif not w.get("connected"):
            lines.append(
                "wifi       not connected"
                if w.get("connected") is False
                else "wifi       unknown (no radio or no permission)"
            )
        else:
            lines.append(
                f"wifi       {w.get('ssid')} rssi {w.get('rssi_dbm')} dBm, channel {w.get('channel')} "
                f"({w.get('band')} GHz), tx {w.get('tx_rate_mbps')} Mbit/s [{w.get('source')}]"
            )
    d = r.get("device") or {}
    if "error" in d:
        lines.append(f"device     cannot read: {d['error']}")
    elif d:
        lines.append(
            f"device     cpu {d['cpu_pct_since_boot']}% (since boot), memory {d['mem_pct']}%, "
            f"interface {d['iface'] or '-'} ({d['iface_kind']}), vpn {','.join(d['vpn']) or 'none'}, "
            f"proxy {d['proxy'] or 'none'}"
        )
    return "\n".join(lines)


# --- agent configure -----------------------------------------------------------------------------


def cmd_configure(args: argparse.Namespace) -> int:
    token = sys.stdin.read() if args.enroll_token == "-" else args.enroll_token
    try:
        written = write_bootstrap(
            args.config,
            collector=args.collector,
            site=args.site,
            state_dir=args.state_dir,
            enroll_token=token,
            ca_cert=args.ca_cert,
            root=args.root,
        )
    except (ConfigError, OSError, ValueError, subprocess.CalledProcessError) as exc:
        print(f"cxpulse agent configure: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


def write_bootstrap(
    config: str | os.PathLike[str],
    *,
    collector: str = "",
    site: str = "",
    state_dir: str = "",
    enroll_token: str = "",
    ca_cert: str = "",
    root: str | os.PathLike[str] = "",
) -> list[Path]:
    """Create or update the bootstrap file; return the files written.

    Empty values mean "not given" (an MSI passes every property, set or not). An existing file keeps
    everything but the given keys. The result is loaded with ``config.load`` before it replaces the
    old file, so a bad value (``COLLECTOR=nonsense``) fails the install instead of the service.
    With ``root``, files go below it while the paths written into them stay as the agent sees them.
    """
    seen = Path(config)  # the path as the installed agent will see it
    path = Path(root, *seen.parts[1:]) if root and seen.is_absolute() else Path(root or "", seen)
    path.parent.mkdir(parents=True, exist_ok=True)
    acl_windows.restrict_data_folder(path.parent)
    written = []
    keys = {k: v.strip() for k, v in (("collector", collector), ("site", site), ("state_dir", state_dir)) if v.strip()}
    old = path.read_text(encoding="utf-8") if path.exists() else None
    if old is None or keys:
        text = _set_top_level_keys(old if old is not None else _NEW_FILE_HEADER, keys)
        write_atomic(path, text.encode(), mode=0o644, check=load)  # checked whole before it replaces the old
        written.append(path)
    secrets = {}
    if enroll_token.strip():
        secrets["enroll_token"] = enroll_token.strip()
    if ca_cert.strip():
        ca_path = path.parent / CA_FILE
        write_atomic(ca_path, _ca_pem(ca_cert.strip()).encode(), mode=0o644)
        written.append(ca_path)
        secrets["ca_file"] = str(seen.parent / CA_FILE)
    if secrets:
        enroll = path.parent / ENROLL_FILE
        old_enroll = enroll.read_text(encoding="utf-8") if enroll.exists() else _ENROLL_HEADER
        # A secret: locked down while still empty (0600; the ACL on Windows), never readable by others.
        write_atomic(
            enroll,
            _set_top_level_keys(old_enroll, secrets).encode(),
            mode=0o600,
            restrict=_restrict_secret,
            check=_check_toml,
        )
        written.append(enroll)
    return written


_NEW_FILE_HEADER = """\
# cxpulse agent bootstrap configuration, written at install time by `cxpulse agent configure`.
# Edit freely: upgrades keep this file; installer parameters given again replace only their keys.
# Every key is described in agent.example.toml (docs/installers.md links it).
"""

_ENROLL_HEADER = """\
# Enrollment secrets given at install time; readable by the service only. The agent merges these
# keys into its bootstrap file's and spends the token once for a credential of its own.
"""


def _toml_string(value: str) -> str:
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _set_top_level_keys(text: str, keys: dict[str, str]) -> str:
    """Replace ``key = ...`` lines before the first table header, or add them just before it.

    Line-based on purpose: a TOML library would rewrite the admin's comments and layout.
    """
    lines = text.splitlines()
    first_table = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("[")), len(lines))
    pending = dict(keys)
    for i in range(first_table):
        name = lines[i].split("=", 1)[0].strip() if "=" in lines[i] and not lines[i].lstrip().startswith("#") else ""
        if name in pending:
            lines[i] = f"{name} = {_toml_string(pending.pop(name))}"
    new = [f"{k} = {_toml_string(v)}" for k, v in pending.items()]
    if new and first_table < len(lines):
        new.append("")
    lines[first_table:first_table] = new
    return "\n".join(lines) + "\n"


def _check_toml(path: str | Path) -> None:
    import tomllib

    try:
        with open(path, "rb") as f:
            tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} would not be valid TOML: {exc}") from None


def _restrict_secret(tmp: str) -> None:
    acl_windows.restrict_secret_file(Path(tmp))


def _ca_pem(value: str) -> str:
    """The CA as PEM text, from a file path, PEM text or base64 (one line fits on an msiexec command line)."""
    if "-----BEGIN" not in value and os.path.isfile(value):
        with open(value, "rb") as f:
            value = f.read().decode("ascii", "replace")
    if "-----BEGIN CERTIFICATE-----" in value:
        return value.strip().replace("\r\n", "\n") + "\n"
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("ca cert is neither a file, PEM text nor base64") from None
    if b"-----BEGIN CERTIFICATE-----" in raw:
        return raw.decode("ascii").strip().replace("\r\n", "\n") + "\n"
    if raw[:1] == b"\x30":  # DER: an ASN.1 SEQUENCE
        body = base64.encodebytes(raw).decode("ascii").replace("\n", "")
        wrapped = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
        return f"-----BEGIN CERTIFICATE-----\n{wrapped}\n-----END CERTIFICATE-----\n"
    raise ValueError("ca cert decodes to neither PEM nor DER")


def cmd_service(args: argparse.Namespace) -> int:
    from . import service_windows

    if not service_windows.AVAILABLE:
        print(
            "cxpulse agent service: only for the Windows service manager; on this OS run "
            "`cxpulse agent run --config FILE` under systemd or launchd",
            file=sys.stderr,
        )
        return 2
    log_file = args.log_file or os.path.join(os.path.dirname(os.path.abspath(args.config)), "logs", "agent.log")
    return service_windows.dispatch(args.config, log_file, getattr(args, "verbose", 0))
