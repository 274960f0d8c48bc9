"""Alert settings: typed, validated at start-up (a bad URL or format fails before the collector runs).
Loaded from TOML (``alerts.example.toml`` beside this module documents every key); HMAC secrets come from a file
or an environment variable, never from the TOML itself, so the config can be kept in version control.
"""

from __future__ import annotations

import os
import tomllib
import urllib.parse
from dataclasses import dataclass, field, fields

__all__ = ["FORMATS", "AlertConfig", "ConfigError", "WebhookConfig", "load_config"]

FORMATS = ("generic", "servicenow", "jsm", "slack", "teams")
ALERT_KINDS = ("agent", "incident")


class ConfigError(ValueError):
    """The alert configuration cannot be used; the message names the key."""


@dataclass
class WebhookConfig:
    """One receiver. ``resolve_url`` (optional) takes resolve messages; ``{alias}`` in it is the alert's id."""

    name: str
    url: str
    format: str = "generic"
    resolve_url: str = ""
    secret_file: str = ""
    secret_env: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 10.0
    alerts: list[str] = field(default_factory=lambda: list(ALERT_KINDS))
    # Only these sites' alerts (a BPO client's own ticket queue); empty: every site. A platform
    # incident reaches it when desks of these sites are affected, counted over them only.
    sites: list[str] = field(default_factory=list)

    def validate(self) -> None:
        where = f"webhook {self.name!r}"
        if not self.name:
            raise ConfigError("every webhook needs a name")
        for key in ("url", "resolve_url"):
            u = getattr(self, key)
            if not u and key == "resolve_url":
                continue
            p = urllib.parse.urlsplit(u.replace("{alias}", "x"))
            if p.scheme not in ("http", "https") or not p.hostname:
                raise ConfigError(f"{where}: {key} must be an http:// or https:// URL; got {u!r}")
        if self.format not in FORMATS:
            raise ConfigError(f"{where}: format must be one of {', '.join(FORMATS)}; got {self.format!r}")
        if not 0.5 <= self.timeout_s <= 120:
            raise ConfigError(f"{where}: timeout_s must be between 0.5 and 120; got {self.timeout_s}")
        bad = [a for a in self.alerts if a not in ALERT_KINDS]
        if bad or not self.alerts:
            raise ConfigError(f"{where}: alerts must list some of {', '.join(ALERT_KINDS)}; got {self.alerts!r}")
        if (
            not isinstance(self.sites, list)
            or len(self.sites) > 100
            or len(set(self.sites)) != len(self.sites)
            or not all(
                isinstance(x, str) and x.strip() == x and 0 < len(x) <= 200 and not any(ord(c) < 32 for c in x)
                for x in self.sites
            )
        ):
            raise ConfigError(
                f"{where}: sites must be a list of distinct site names (1 to 200 printable characters, "
                f"at most 100; empty: every site); got {self.sites!r}"
            )
        if self.secret_file and not os.path.isfile(self.secret_file):
            raise ConfigError(f"{where}: secret_file {self.secret_file!r} does not exist")
        if self.secret_env and not os.environ.get(self.secret_env):
            raise ConfigError(f"{where}: environment variable {self.secret_env} (secret_env) is not set")
        for k, v in self.headers.items():
            if not isinstance(k, str) or not isinstance(v, str) or "\n" in k + v or "\r" in k + v:
                raise ConfigError(f"{where}: headers must be single-line strings")

    def secret(self) -> bytes | None:
        """The HMAC key, or None (then requests go unsigned, and the log says so at start)."""
        if self.secret_file:
            with open(self.secret_file, "rb") as f:
                return f.read().strip()
        if self.secret_env:
            return os.environ[self.secret_env].encode()
        return None

    def redacted_url(self) -> str:
        """Scheme, host and port only: webhook URLs often carry a token in their path or query."""
        p = urllib.parse.urlsplit(self.url)
        return f"{p.scheme}://{p.hostname}{':' + str(p.port) if p.port else ''}/..."


@dataclass
class AlertConfig:
    """When to alert and how to deliver. Minutes are the scorer's per-minute scores."""

    webhooks: list[WebhookConfig] = field(default_factory=list)
    # An agent is alerted after this many consecutive poor minutes (score below 30)...
    poor_minutes: int = 5
    # ...and resolved after this many consecutive minutes at or above resolve_score (hysteresis:
    # an agent hovering at the poor line neither opens nor closes an alert every minute).
    resolve_minutes: int = 10
    resolve_score: float = 40.0
    # An open episode whose agent sends nothing for this long is resolved as "no data".
    stale_minutes: int = 30
    eval_interval_s: float = 60.0
    queue_max: int = 1000
    backoff_base_s: float = 2.0
    backoff_max_s: float = 300.0
    # A delivery still failing after this long is given up and logged (the receiver was down too long).
    give_up_after_s: float = 6 * 3600.0
    test_send_min_interval_s: float = 10.0
    public_url: str = ""

    def validate(self) -> None:
        names = [w.name for w in self.webhooks]
        if len(set(names)) != len(names):
            raise ConfigError(f"webhook names must be unique; got {names}")
        for w in self.webhooks:
            w.validate()
        if not 1 <= self.poor_minutes <= 240:
            raise ConfigError(f"poor_minutes must be between 1 and 240; got {self.poor_minutes}")
        if not 1 <= self.resolve_minutes <= 240:
            raise ConfigError(f"resolve_minutes must be between 1 and 240; got {self.resolve_minutes}")
        if not 30 <= self.resolve_score <= 100:
            raise ConfigError(f"resolve_score must be between 30 (the poor line) and 100; got {self.resolve_score}")
        if self.stale_minutes < self.resolve_minutes:
            raise ConfigError("stale_minutes must be at least resolve_minutes")
        if not 1 <= self.eval_interval_s <= 3600:
            raise ConfigError(f"eval_interval_s must be between 1 and 3600; got {self.eval_interval_s}")
        if not 1 <= self.queue_max <= 1_000_000:
            raise ConfigError(f"queue_max must be between 1 and 1000000; got {self.queue_max}")
        if not 0 < self.backoff_base_s <= self.backoff_max_s:
            raise ConfigError("backoff_base_s must be > 0 and at most backoff_max_s")
        if self.give_up_after_s < self.backoff_base_s:
            raise ConfigError("give_up_after_s must be at least backoff_base_s")
        if self.public_url:
            p = urllib.parse.urlsplit(self.public_url)
            if p.scheme not in ("http", "https") or not p.hostname:
                raise ConfigError(f"public_url must be an http(s) URL; got {self.public_url!r}")

    @property
    def lookback_s(self) -> int:
        """How far back each evaluation reads: enough minutes to see a whole open or resolve run."""
        return max(900, 60 * (max(self.poor_minutes, self.resolve_minutes) + 3))

    @classmethod
    def from_dict(cls, d: dict) -> AlertConfig:
        d = dict(d)
        hooks = d.pop("webhook", None) or d.pop("webhooks", None) or []
        known = {f.name for f in fields(cls)} - {"webhooks"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown alert setting(s): {', '.join(unknown)}")
        wknown = {f.name for f in fields(WebhookConfig)}
        webhooks = []
        for i, h in enumerate(hooks):
            if not isinstance(h, dict):
                raise ConfigError(f"webhook #{i + 1} must be a table")
            bad = sorted(set(h) - wknown)
            if bad:
                raise ConfigError(f"webhook #{i + 1}: unknown key(s): {', '.join(bad)}")
            try:
                webhooks.append(WebhookConfig(**h))
            except TypeError as exc:
                raise ConfigError(f"webhook #{i + 1}: {exc}") from None
        try:
            cfg = cls(webhooks=webhooks, **d)
        except TypeError as exc:
            raise ConfigError(str(exc)) from None
        return cfg


def load_config(path: str) -> AlertConfig:
    """Read and validate a TOML alert config; ConfigError says what is wrong and where."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"alert config {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"alert config {path} is not valid TOML: {exc}") from None
    cfg = AlertConfig.from_dict(data.get("alerts", data))
    cfg.validate()
    return cfg
