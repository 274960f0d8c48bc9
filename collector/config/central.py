"""The central configuration: what IT tells every agent to measure, from one TOML file.
The ``collector serve`` flags are its base; a text is checked against the agent's contract before storing.
Design notes: docs/collector-internals.md, "collector/config/central.py".
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, replace

from cxpulse.v1.contract import (
    APDEX_T_MS,
    DETECTOR_BOUNDS,
    MAX_HOST,
    MAX_NAME,
    MAX_URL,
    OVERRIDABLE,
    WIFI_WEAK_RSSI_DBM,
    check,
    interval_s,
)
from cxpulse.v1.kinds import KINDS

__all__ = ["MAX_TEXT", "CentralConfig", "ConfigError", "apply", "current", "parse", "update"]

MAX_TEXT = 256 * 1024  # a config is a few kB; this bounds what an admin route or a file can make us parse

# [cadence] key -> (pushed field, low, high in seconds): the contract's ranges (cxpulse/v1/contract.py).
_CADENCE = {
    k: (f"{k}_interval_ms", *interval_s(f"{k}_interval_ms")) for k in ("probe", "batch", "app", "voice", "wifi")
}
RETENTION_KINDS = (*KINDS, "events", "paths")  # a new sample kind gets its [retention] key with it
_TABLES = {"cadence", "targets", "apps", "presets", "detector", "wifi", "privacy", "agents", "retention"}


class ConfigError(ValueError):
    """A central config that cannot be stored or pushed; ``reason`` says why, for a person."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class CentralConfig:
    """What a TOML text sets; None/empty: left to the base (flags)."""

    intervals_ms: dict[str, int] = field(default_factory=dict)
    targets: list[tuple[str, str, int]] | None = None
    apps: list[tuple[str, str, int]] | None = None
    detector: dict[str, float] = field(default_factory=dict)
    wifi_weak_rssi_dbm: int = 0
    hash_wifi_identity: bool = False
    local_overrides: list[str] = field(default_factory=list)
    raw_days: dict[str, float] = field(default_factory=dict)
    rollup_days: float | None = None  # 15-minute rollups (jobs/retention.py)
    minute_rollup_days: float | None = None


def _num(where: str, v: object) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"{where} must be a number, got {v!r}")
    return float(v)


def _str(where: str, v: object, max_len: int = 256) -> str:
    if not isinstance(v, str) or not v or len(v) > max_len:
        raise ConfigError(f"{where} must be a non-empty string of at most {max_len} characters")
    return v


def _table(where: str, v: object, keys: set[str]) -> dict:
    if not isinstance(v, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(v) - keys)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(keys))})")
    return v


def _list(where: str, v: object, limit: int = 64) -> list:
    if not isinstance(v, list) or len(v) > limit:
        raise ConfigError(f"{where} must be an array of at most {limit} entries")
    return v


def parse(text: str) -> CentralConfig:
    """Parse and check a TOML text; raises ConfigError (never anything else) with the first problem."""
    if not isinstance(text, str):
        raise ConfigError("the config must be text")
    if len(text) > MAX_TEXT:
        raise ConfigError(f"the config is larger than {MAX_TEXT} characters")
    try:
        raw = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise ConfigError(f"not valid TOML: {exc}") from None
    _table("config", raw, _TABLES)
    cc = CentralConfig()
    for key, value in _table("[cadence]", raw.get("cadence", {}), set(_CADENCE)).items():
        name, lo, hi = _CADENCE[key]
        s = _num(f"cadence.{key}", value)
        if not lo <= s <= hi:
            raise ConfigError(f"cadence.{key} must be between {lo:g} and {hi:g} seconds, got {s:g}")
        cc.intervals_ms[name] = round(s * 1000)
    if "targets" in raw:
        cc.targets = []
        for i, t in enumerate(_list("[[targets]]", raw["targets"])):
            t = _table(f"targets[{i}]", t, {"name", "host", "port"})
            port = t.get("port", 443)
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                raise ConfigError(f"targets[{i}].port must be 1..65535, got {port!r}")
            cc.targets.append(
                (
                    _str(f"targets[{i}].name", t.get("name"), MAX_NAME),
                    _str(f"targets[{i}].host", t.get("host"), MAX_HOST),
                    port,
                )
            )
    apps: list[tuple[str, str, int]] = []
    for i, a in enumerate(_list("[[apps]]", raw.get("apps", []))):
        a = _table(f"apps[{i}]", a, {"name", "url", "apdex_t_ms"})
        t_ms = a.get("apdex_t_ms", 500)
        lo, hi = APDEX_T_MS
        if isinstance(t_ms, bool) or not isinstance(t_ms, int) or not lo <= t_ms <= hi:
            raise ConfigError(f"apps[{i}].apdex_t_ms must be {lo}..{hi}, got {t_ms!r}")
        apps.append(
            (_str(f"apps[{i}].name", a.get("name"), MAX_NAME), _str(f"apps[{i}].url", a.get("url"), MAX_URL), t_ms)
        )
    for i, p in enumerate(_list("[[presets]]", raw.get("presets", []))):
        if not isinstance(p, dict):
            raise ConfigError(f"presets[{i}] must be a table")
        name = _str(f"presets[{i}].name", p.get("name"), 64)
        params = {k: _str(f"presets[{i}].{k}", v) for k, v in p.items() if k != "name"}
        from cxpulse.agent.presets import expand

        try:
            apps.extend((x.name, x.url, x.apdex_t_ms) for x in expand(name, **params))
        except ValueError as exc:
            raise ConfigError(f"presets[{i}] ({name}): {exc}") from None
    if "apps" in raw or "presets" in raw:
        cc.apps = apps
    for k, v in _table("[detector]", raw.get("detector", {}), set(DETECTOR_BOUNDS)).items():
        cc.detector[k] = _num(f"detector.{k}", v)
    wifi = _table("[wifi]", raw.get("wifi", {}), {"weak_rssi_dbm"})
    if "weak_rssi_dbm" in wifi:
        v = wifi["weak_rssi_dbm"]
        lo, hi = WIFI_WEAK_RSSI_DBM
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ConfigError(f"wifi.weak_rssi_dbm must be an integer {lo}..{hi}, got {v!r}")
        cc.wifi_weak_rssi_dbm = v
    privacy = _table("[privacy]", raw.get("privacy", {}), {"hash_wifi_identity"})
    if "hash_wifi_identity" in privacy:
        if not isinstance(privacy["hash_wifi_identity"], bool):
            raise ConfigError("privacy.hash_wifi_identity must be true or false")
        cc.hash_wifi_identity = privacy["hash_wifi_identity"]
    agents = _table("[agents]", raw.get("agents", {}), {"local_overrides"})
    for i, k in enumerate(_list("agents.local_overrides", agents.get("local_overrides", []))):
        if k not in OVERRIDABLE:
            raise ConfigError(f"agents.local_overrides[{i}] {k!r} is not one of {', '.join(OVERRIDABLE)}")
        cc.local_overrides.append(k)
    keys = {f"{k}_days" for k in RETENTION_KINDS} | {"rollup_days", "minute_rollup_days"}
    ret = _table("[retention]", raw.get("retention", {}), keys)
    for k, v in ret.items():
        days = _num(f"retention.{k}", v)
        if not 0 < days <= 36_500:
            raise ConfigError(f"retention.{k} must be more than 0 and at most 36500 days, got {days:g}")
        if k == "rollup_days":
            cc.rollup_days = days
        elif k == "minute_rollup_days":
            cc.minute_rollup_days = days
        else:
            cc.raw_days[k[: -len("_days")]] = days
    if cc.rollup_days is not None and cc.raw_days and max(cc.raw_days.values()) > cc.rollup_days:
        raise ConfigError(
            f"retention.rollup_days ({cc.rollup_days:g}) must be at least the longest raw horizon "
            f"({max(cc.raw_days.values()):g})"
        )
    if cc.minute_rollup_days is not None:
        longest = max(cc.raw_days.values(), default=0.0)
        if not longest <= cc.minute_rollup_days <= (cc.rollup_days or math.inf):
            raise ConfigError(
                f"retention.minute_rollup_days ({cc.minute_rollup_days:g}) must be at least the longest raw "
                f"horizon ({longest:g}) and at most retention.rollup_days"
            )
    # The check every agent runs, on exactly what would be pushed.
    from ..ingest.service import IngestConfig

    problem = check(apply(IngestConfig(), cc, 1).to_proto(0))
    if problem:
        raise ConfigError(problem)
    return cc


def apply(base, cc: CentralConfig, version: int):
    """``base`` (an IngestConfig from the flags) with what ``cc`` sets; ``version`` is the stored one."""
    cfg = replace(
        base,
        **cc.intervals_ms,
        detector=dict(cc.detector),
        wifi_weak_rssi_dbm=cc.wifi_weak_rssi_dbm,
        hash_wifi_identity=cc.hash_wifi_identity,
        local_overrides=list(cc.local_overrides),
        central_version=version,
    )
    if cc.targets is not None:
        cfg.targets = list(cc.targets)
    if cc.apps is not None:
        cfg.apps = list(cc.apps)
    return cfg


def _url(registry_or_url) -> str:
    if isinstance(registry_or_url, str):
        return registry_or_url
    for path in (("url",), ("db", "url"), ("_db", "url"), ("store", "url")):
        obj = registry_or_url
        for attr in path:
            obj = getattr(obj, attr, None)
        if isinstance(obj, str):
            return obj
    raise TypeError(f"cannot find a database URL in {type(registry_or_url).__name__}")


def current(registry_or_url) -> tuple[int, str]:
    """(version, TOML text) of the newest stored config; (0, "") if none was ever stored."""
    from .versions import VersionStore

    vs = VersionStore(_url(registry_or_url))
    try:
        latest = vs.latest()
    finally:
        vs.close()
    return (latest.version, latest.toml) if latest else (0, "")


def update(url: str, toml_text: str, actor: str) -> int:
    """Check ``toml_text`` and store it as the next version (the same text again: the same version).

    Raises ConfigError when the text cannot run; running collectors pick the new version up
    within seconds and push it to their agents.
    """
    parse(toml_text)
    from .versions import VersionStore

    vs = VersionStore(_url(url))
    try:
        version, _ = vs.add(toml_text, actor)
    finally:
        vs.close()
    return version
