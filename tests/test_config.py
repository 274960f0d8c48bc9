"""Agent configuration: the example file loads, and bad values fail fast with a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxpulse.agent.config import AgentConfig, ConfigError, load, parse_target
from cxpulse.agent.probes.base import Target

EXAMPLE = Path(__file__).resolve().parent.parent / "agent" / "agent.example.toml"


def test_example_config_loads():
    cfg = load(EXAMPLE)
    assert cfg.collector == "127.0.0.1:50051" and cfg.probe_interval_s == 1.0 and cfg.batch_interval_s == 30.0
    assert [t.name for t in cfg.targets] == ["ccaas-edge", "crm-edge"]
    assert cfg.targets[1].method == "tcp_connect"
    assert cfg.apps[0].name == "crm" and any(a.url.startswith("https://acme.my.salesforce.com") for a in cfg.apps)


@pytest.mark.parametrize(
    "text, message",
    [
        ('collector = "nohost"', "collector must be HOST:PORT"),
        ("probe_interval_s = 0", "probe_interval_s must be between"),
        ('probe_interval_s = "1"', "wrong type"),
        ("measure_gateway = 1", "wrong type"),
        ("colector = 'x:1'", "unknown key 'colector'"),
        ('rtt_methods = ["smoke_signal"]', "unknown method"),
        ('[[targets]]\nname = "a"\nhost = "h"\n[[targets]]\nname = "a"\nhost = "h2"', "used twice"),
        ('[[targets]]\nname = "gateway"\nhost = "h"', "reserved"),
        ('[[targets]]\nname = "a"\nhost = "h"\nport = 70000', "port 70000"),
        ('[[targets]]\nhost = "h"', "lacks 'name'"),
        ("this is = not toml", "not valid TOML"),
        ('[[apps]]\nname = "x"\nurl = "ftp://x"', "must start with https://"),
        ('[[apps]]\nname = "x"', "apps\\[0\\] must be a table"),
        ('[[presets]]\nname = "salesforce"\norg = "evil.com/x"', "not a DNS label"),
        ('[[presets]]\nname = "no-such-vendor"', "presets\\[0\\]"),
        ("app_interval_s = 1", "app_interval_s must be between"),
        ('app_ca_file = "/nonexistent/ca.pem"', "does not exist"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path, text, message):
    f = tmp_path / "a.toml"
    f.write_text(text + "\n")
    with pytest.raises(ConfigError, match=message):
        load(f)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    "spec, target",
    [
        ("crm=crm.example.test", Target("crm", "crm.example.test", 443)),
        ("edge=10.1.2.3:5061", Target("edge", "10.1.2.3", 5061)),
        ("v6=[::1]:8443", Target("v6", "::1", 8443)),
        ("v6=[fe80::1]", Target("v6", "fe80::1", 443)),
    ],
)
def test_parse_target(spec, target):
    assert parse_target(spec) == target


@pytest.mark.parametrize("spec", ["nohost", "=h", "a=", "a=h:x", "a=[::1"])
def test_parse_target_errors(spec):
    with pytest.raises(ConfigError):
        parse_target(spec)


def test_overrides_validate():
    with pytest.raises(ConfigError):
        AgentConfig().with_overrides(batch_interval_s=0.0)
    assert AgentConfig().with_overrides(site="HQ", user=None).site == "HQ"
