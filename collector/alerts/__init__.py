"""Alerts into IT service management, and the collector's Prometheus metrics.

- ``config``: typed webhook and debounce settings, validated at start, loaded from TOML
  (``alerts.example.toml`` is the documented example; a test loads it).
- ``rules``: pure state machines: an agent poor for N minutes opens one episode, resolved only after
  M minutes back above a higher line (no flapping); platform and site incidents open and close.
- ``templates``: the payload shapes: generic JSON, ServiceNow Table API incident, Jira Service
  Management alert, Slack and Teams chat messages.
- ``webhook``: one bounded queue and worker per URL, HMAC-signed, retried with jittered
  exponential backoff, a delivery log; ``verify_signature`` for receivers.
- ``alerter``: the loop that reads the fleet every minute and feeds rules -> webhooks.
- ``metrics``: ``/metrics`` (prometheus_client exposition).
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
