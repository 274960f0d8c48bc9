"""The agent's bootstrap configuration: typed, validated at start, documented by agent.example.toml.
Fail fast on bad configuration at start-up; never crash after start-up; the collector may override (``apply``).
Design notes: docs/agent-internals.md, "agent/config.py".
"""

from __future__ import annotations

import os
import sys
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxpulse.v1.contract import WIFI_WEAK_RSSI_DBM, interval_s

from .detector import DetectorConfig
from .presets import App, expand
from .probes.base import Target

if TYPE_CHECKING:
    from cxpulse.v1 import telemetry_pb2 as pb


class ConfigError(ValueError):
    pass


def default_state_dir() -> str:
    """Per-OS default for a service; a user running by hand gets a per-user directory."""
    if sys.platform == "win32":
        return os.path.join(os.environ.get("PROGRAMDATA", r"C:\ProgramData"), "cxpulse", "agent")
    if os.geteuid() == 0:
        return "/Library/Application Support/cxpulse/agent" if sys.platform == "darwin" else "/var/lib/cxpulse/agent"
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "cxpulse", "agent")


@dataclass(frozen=True)
class AgentConfig:
    collector: str = "127.0.0.1:50051"
    state_dir: str = field(default_factory=default_state_dir)
    site: str = ""
    # Who sits at the desk; empty means ask the OS (the logged-in console user).
    user: str = ""
    agent_id: str = ""
    probe_interval_s: float = 1.0
    probe_timeout_s: float = 1.0
    # 30 s: the helpdesk sees samples at most 30 s old (events flush at once), and the upload
    # fits 0.5 kbit/s with TLS (issue 9; 10 s batches cost 2-3x the bytes: docs/benchmarks.md).
    batch_interval_s: float = 30.0
    measure_gateway: bool = True
    # Restrict the RTT method chain, e.g. ["tcp_connect"]; empty means the best the OS allows.
    rtt_methods: tuple[str, ...] = ()
    targets: tuple[Target, ...] = ()
    spool_max_bytes: int = 64 * 1024 * 1024
    spool_max_age_s: int = 7 * 24 * 3600
    reconnect_max_s: float = 30.0
    # Applications (HTTP timing), from [[apps]] and from [[presets]] expanded at load.
    apps: tuple[App, ...] = ()
    app_interval_s: float = 30.0
    app_timeout_s: float = 10.0
    # Extra CA bundle for app checks (TLS-inspecting proxies, private CAs); empty: system store.
    app_ca_file: str = ""
    # Voice-cadence runs through the collector's reflector (address and key come from the collector).
    voice_interval_s: float = 60.0
    voice_duration_s: float = 5.0
    device_interval_s: float = 10.0
    # Path traces (in a short-lived child process) and continuous RTT to the hops they find.
    trace_enabled: bool = True
    trace_interval_s: float = 900.0
    hop_probing: bool = True
    # Wi-Fi: the current link every few seconds (never a scan); events against these thresholds.
    wifi_interval_s: float = 5.0
    wifi_weak_rssi_dbm: int = -70
    # Send SSID/BSSID as keyed hashes instead of names (privacy option); the salt keys the hash.
    wifi_hash_identity: bool = False
    wifi_hash_salt: str = ""
    # Reaching the collector (issue 6). The agent verifies the collector against ca_file, the CA it
    # was installed with (empty: the system's trust store, for a collector with a public certificate).
    ca_file: str = ""
    # Spent once: the agent trades it for its own credential, kept in state_dir (mode 0600).
    enroll_token: str = ""
    # Plain-text gRPC, for development only; logged loudly. Enrollment is still required.
    insecure: bool = False
    # Name to check the collector's certificate against when `collector` is an address it does not carry.
    tls_server_name: str = ""
    # Mutual TLS, when the collector asks for client certificates.
    client_cert_file: str = ""
    client_key_file: str = ""

    def validate(self) -> AgentConfig:
        if not _is_host_port(self.collector):
            raise ConfigError(f"collector must be HOST:PORT, got {self.collector!r}")
        # The cadences a collector may push have the contract's ranges (cxpulse/v1/contract.py): a push
        # can never set what this file could not.
        for name in ("probe_interval_s", "batch_interval_s", "app_interval_s", "voice_interval_s", "wifi_interval_s"):
            lo, hi = interval_s(name[: -len("_s")] + "_ms")
            if not lo <= getattr(self, name) <= hi:
                raise ConfigError(f"{name} must be between {lo:g} and {hi:g}, got {getattr(self, name)}")
        if not 0.01 <= self.probe_timeout_s <= 60:
            raise ConfigError(f"probe_timeout_s must be between 0.01 and 60, got {self.probe_timeout_s}")
        if self.spool_max_bytes < 64 * 1024:
            raise ConfigError("spool_max_bytes must be at least 65536")
        if self.spool_max_age_s < 60:
            raise ConfigError("spool_max_age_s must be at least 60")
        from cxpulse.v1.payload import METHODS

        for m in self.rtt_methods:
            if m not in METHODS:
                raise ConfigError(f"rtt_methods: unknown method {m!r}; choose from {list(METHODS)}")
        names = set()
        for t in self.targets:
            if not t.name or not t.host:
                raise ConfigError(f"target {t!r} needs a name and a host")
            if t.name in names or t.name == "gateway":
                raise ConfigError(f'target name {t.name!r} is used twice ("gateway" is reserved)')
            if t.method and t.method not in METHODS:
                raise ConfigError(f"target {t.name}: unknown method {t.method!r}; choose from {list(METHODS)}")
            if not 0 < t.port < 65536:
                raise ConfigError(f"target {t.name}: port {t.port} is not 1..65535")
            names.add(t.name)
        if not self.state_dir:
            raise ConfigError("state_dir must not be empty")
        for name, lo, hi in (
            ("app_timeout_s", 1, 120),
            ("voice_duration_s", 1, 30),
            ("device_interval_s", 1, 3600),
            ("trace_interval_s", 30, 86400),
            ("wifi_weak_rssi_dbm", *WIFI_WEAK_RSSI_DBM),
        ):
            if not lo <= getattr(self, name) <= hi:
                raise ConfigError(f"{name} must be between {lo} and {hi}, got {getattr(self, name)}")
        app_names = set()
        for a in self.apps:
            if not a.name or a.name in app_names:
                raise ConfigError(f"app name {a.name!r} is empty or used twice")
            if not (a.url.startswith("https://") or a.url.startswith("http://")):
                raise ConfigError(f"app {a.name}: url must start with https:// or http://, got {a.url!r}")
            app_names.add(a.name)
        if self.app_ca_file and not os.path.isfile(self.app_ca_file):
            raise ConfigError(f"app_ca_file {self.app_ca_file} does not exist")
        if self.insecure and (self.ca_file or self.client_cert_file):
            raise ConfigError("insecure excludes ca_file and client certificates (they would be ignored)")
        for name in ("ca_file", "client_cert_file", "client_key_file"):
            if getattr(self, name) and not os.path.isfile(getattr(self, name)):
                raise ConfigError(f"{name} {getattr(self, name)} does not exist")
        if bool(self.client_cert_file) != bool(self.client_key_file):
            raise ConfigError("client_cert_file and client_key_file go together")
        return self

    def with_overrides(self, **kw) -> AgentConfig:
        return replace(self, **{k: v for k, v in kw.items() if v is not None}).validate()


@dataclass(frozen=True)
class Running:
    """What the agent runs: its file with the collector's last good push applied (``apply``)."""

    cfg: AgentConfig
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    # The collector's voice reflector (host, port) and this agent's key for it; None: no voice runs.
    reflector: tuple[str, int] | None = None
    reflector_key: bytes = b""


def apply(base: AgentConfig, pushed: pb.AgentConfig, detector: DetectorConfig | None = None) -> Running:
    """The local file ``base`` (and its detector) with what a checked push sets (agent/central.py).

    A value the push leaves at 0 or empty is the file's. A setting named in the push's
    ``local_overrides`` stays the file's when the file set it (differs from the default), so IT
    decides what a desk may keep and the desk's file what it keeps.
    """
    local_detector = detector or DetectorConfig()
    default = AgentConfig(state_dir=base.state_dir)
    keep = set(pushed.local_overrides)

    def central_sets(setting: str, attr: str) -> bool:
        return not (setting in keep and getattr(base, attr) != getattr(default, attr))

    kw: dict = {}
    for setting in ("probe_interval", "batch_interval", "app_interval", "voice_interval", "wifi_interval"):
        ms = getattr(pushed, f"{setting}_ms")
        if ms and central_sets(setting, f"{setting}_s"):
            kw[f"{setting}_s"] = ms / 1000
    if pushed.apps and central_sets("apps", "apps"):
        kw["apps"] = tuple(App(a.name, a.url, a.apdex_t_ms or 500) for a in pushed.apps)
    if pushed.targets and central_sets("targets", "targets"):
        kw["targets"] = tuple(Target(t.name, t.host, t.port or 443) for t in pushed.targets)
    if pushed.wifi_weak_rssi_dbm and central_sets("wifi_weak_rssi_dbm", "wifi_weak_rssi_dbm"):
        kw["wifi_weak_rssi_dbm"] = pushed.wifi_weak_rssi_dbm
    if pushed.hash_wifi_identity and central_sets("hash_wifi_identity", "wifi_hash_identity"):
        kw["wifi_hash_identity"] = True  # central can require hashing; false leaves the local choice
    thresholds: dict[str, Any] = {k: int(v) if k.endswith("_us") else v for k, v in pushed.detector.items()}
    if "detector" in keep and local_detector != DetectorConfig():
        thresholds = {}
    reflector = None
    if pushed.reflector:
        host, _, port = pushed.reflector.rpartition(":")
        reflector = (host.strip("[]"), int(port))
    return Running(
        replace(base, **kw),
        replace(local_detector, **thresholds),
        reflector,
        bytes(pushed.reflector_key) if reflector else b"",
    )


def _is_host_port(s: str) -> bool:
    host, sep, port = s.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)


def parse_target(spec: str) -> Target:
    """``NAME=HOST[:PORT]`` (IPv6 as ``NAME=[::1]:443``) as given on command lines."""
    name, sep, rest = spec.partition("=")
    if not sep or not name or not rest:
        raise ConfigError(f"target must look like NAME=HOST[:PORT], got {spec!r}")
    host, port = rest, 443
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            raise ConfigError(f"unclosed '[' in target {spec!r}")
        host, tail = rest[1:end], rest[end + 1 :]
        if tail:
            if not tail.startswith(":") or not tail[1:].isdigit():
                raise ConfigError(f"bad port in target {spec!r}")
            port = int(tail[1:])
    elif rest.count(":") == 1:
        host, p = rest.split(":")
        if not p.isdigit():
            raise ConfigError(f"bad port in target {spec!r}")
        port = int(p)
    return Target(name=name, host=host, port=port)


_KEYS: dict[str, type | tuple[type, ...]] = {
    "collector": str,
    "state_dir": str,
    "site": str,
    "user": str,
    "agent_id": str,
    "probe_interval_s": (int, float),
    "probe_timeout_s": (int, float),
    "batch_interval_s": (int, float),
    "measure_gateway": bool,
    "rtt_methods": list,
    "targets": list,
    "spool_max_bytes": int,
    "spool_max_age_s": int,
    "reconnect_max_s": (int, float),
    "apps": list,
    "presets": list,
    "app_interval_s": (int, float),
    "app_timeout_s": (int, float),
    "app_ca_file": str,
    "voice_interval_s": (int, float),
    "voice_duration_s": (int, float),
    "device_interval_s": (int, float),
    "trace_enabled": bool,
    "trace_interval_s": (int, float),
    "hop_probing": bool,
    "wifi_interval_s": (int, float),
    "wifi_weak_rssi_dbm": int,
    "wifi_hash_identity": bool,
    "wifi_hash_salt": str,
    "ca_file": str,
    "enroll_token": str,
    "insecure": bool,
    "tls_server_name": str,
    "client_cert_file": str,
    "client_key_file": str,
}
# Installers write the token and the CA into this file beside the bootstrap file, readable by the
# service only (agent.toml stays readable, for `agent once`); only these keys may appear in it.
ENROLL_FILE = "enroll.toml"
_ENROLL_KEYS = ("enroll_token", "ca_file")


def _read_toml(path: str | Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _as_int(v: object, where: str) -> int:
    """An integer from TOML, or a ConfigError that says where (found by tests/fuzz)."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{where} must be an integer, got {v!r}")
    return v


def load(path: str | Path) -> AgentConfig:
    """Read a TOML bootstrap file; unknown keys and wrong types are errors, not silently ignored.

    ``enroll.toml`` beside it (the installers' token and CA), if present and readable, adds its keys;
    a key set in both is an error, since which one wins would be a guess.
    """
    raw = _read_toml(path)
    enroll = Path(path).with_name(ENROLL_FILE)
    if enroll.exists():
        try:
            extra = _read_toml(enroll)
        except PermissionError:  # `agent once` by a user: the secrets are the service's only
            extra = {}
        for key, value in extra.items():
            if key not in _ENROLL_KEYS:
                raise ConfigError(f"{enroll}: unknown key {key!r} (allowed: {', '.join(_ENROLL_KEYS)})")
            if key in raw and raw[key] != value:
                raise ConfigError(f"{key} is set in both {path} and {enroll}")
            raw[key] = value
    kw: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _KEYS:
            raise ConfigError(f"{path}: unknown key {key!r} (known: {', '.join(sorted(_KEYS))})")
        if not isinstance(value, _KEYS[key]) or (isinstance(value, bool) and _KEYS[key] is not bool):
            raise ConfigError(f"{path}: {key} has the wrong type ({type(value).__name__})")
        kw[key] = value
    if "targets" in kw:
        targets = []
        for i, t in enumerate(kw["targets"]):
            if not isinstance(t, dict) or set(t) - {"name", "host", "port", "method"}:
                raise ConfigError(f"{path}: targets[{i}] must be a table with name, host and optional port, method")
            try:
                targets.append(
                    Target(
                        name=str(t["name"]),
                        host=str(t["host"]),
                        port=_as_int(t.get("port", 443), f"{path}: targets[{i}].port"),
                        method=str(t.get("method", "")),
                    )
                )
            except KeyError as exc:
                raise ConfigError(f"{path}: targets[{i}] lacks {exc}") from None
        kw["targets"] = tuple(targets)
    apps: list[App] = []
    for i, a in enumerate(kw.pop("apps", [])):
        if not isinstance(a, dict) or not {"name", "url"} <= set(a) or set(a) - {"name", "url", "apdex_t_ms"}:
            raise ConfigError(f"{path}: apps[{i}] must be a table with name, url and optional apdex_t_ms")
        apps.append(
            App(str(a["name"]), str(a["url"]), _as_int(a.get("apdex_t_ms", 500), f"{path}: apps[{i}].apdex_t_ms"))
        )
    for i, pr in enumerate(kw.pop("presets", [])):
        if not isinstance(pr, dict) or "name" not in pr:
            raise ConfigError(f"{path}: presets[{i}] must be a table with name and the preset's parameters")
        params = {k: str(v) for k, v in pr.items() if k != "name"}
        try:
            apps.extend(expand(str(pr["name"]), **params))
        except ValueError as exc:
            raise ConfigError(f"{path}: presets[{i}] ({pr['name']}): {exc}") from None
    if apps:
        kw["apps"] = tuple(apps)
    if "rtt_methods" in kw:
        kw["rtt_methods"] = tuple(kw["rtt_methods"])
    if "state_dir" in kw:
        kw["state_dir"] = os.path.expanduser(kw["state_dir"])
    for name in ("ca_file", "client_cert_file", "client_key_file"):
        if kw.get(name):  # relative to the bootstrap file, where the installers put ca.pem
            kw[name] = os.path.join(os.path.dirname(os.path.abspath(path)), os.path.expanduser(kw[name]))
    return AgentConfig(**kw).validate()


MAX_TOKEN_CHARS = 4096


def read_token_file(path: str, stdin=None) -> str:
    """The enrollment token from a file, or from standard input when ``path`` is ``-``.

    A token on the command line is visible to every local user in ``ps`` for as long as the agent
    runs, and one token often enrolls a whole floor, so installers and scripts pass it this way
    (as the packages do): the first non-empty line, surrounding spaces dropped.
    """
    try:
        if path == "-":
            text = (stdin or sys.stdin).read(MAX_TOKEN_CHARS + 1)
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read(MAX_TOKEN_CHARS + 1)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the enrollment token from {path}: {exc}") from None
    token = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not token or len(text) > MAX_TOKEN_CHARS:
        raise ConfigError(
            f"{'standard input' if path == '-' else path} holds no enrollment token "
            f"(expected one line such as cxp_enr_..., at most {MAX_TOKEN_CHARS} characters)"
        )
    return token
