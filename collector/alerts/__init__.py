"""Alerts into IT service management, and the collector's Prometheus metrics.
``config``, ``rules`` (pure state machines), ``templates``, ``webhook`` (signed delivery), ``alerter``, ``metrics``.
Design notes: docs/collector-internals.md, "collector/alerts/__init__.py".
"""

from .alerter import Alerter
from .config import AlertConfig, ConfigError, WebhookConfig, load_config
from .rules import Alert, IncidentWatch, PoorEpisodes
from .webhook import sign, verify_signature

__all__ = [
    "Alert",
    "AlertConfig",
    "Alerter",
    "ConfigError",
    "IncidentWatch",
    "PoorEpisodes",
    "WebhookConfig",
    "load_config",
    "sign",
    "verify_signature",
]
