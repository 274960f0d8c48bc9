"""Fuzz the config parsers: the agent's bootstrap TOML (agent/config.py) and the central config
(collector/config/central.py). Whatever the text, a parser answers with its own ConfigError or a
config that passes its own checks; nothing else escapes (a TypeError at start-up is a crash with a
traceback instead of a line that says what to fix)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cxpulse.agent import config as agent_config
from cxpulse.agent.central import check as agent_check
from cxpulse.collector.config import central
from cxpulse.collector.ingest.service import IngestConfig

from .strategies import toml_doc, toml_scalars, toml_values

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

AGENT_KEYS = sorted(agent_config._KEYS)
TARGET_KEYS = ["name", "host", "port", "method", "x"]
APP_KEYS = ["name", "url", "apdex_t_ms", "x"]
PRESET_KEYS = ["name", "org", "region", "instance", "domain", "tenant", "x"]


def tables(keys: list[str]):
    return st.dictionaries(st.sampled_from(keys), st.one_of(toml_scalars, toml_values), max_size=len(keys))


agent_docs = st.builds(
    toml_doc,
    st.dictionaries(st.sampled_from(AGENT_KEYS + ["unknown"]), toml_values, max_size=8),
    st.just({}),
    st.fixed_dictionaries(
        {},
        optional={
            "targets": st.lists(tables(TARGET_KEYS), max_size=3),
            "apps": st.lists(tables(APP_KEYS), max_size=3),
            "presets": st.lists(tables(PRESET_KEYS), max_size=2),
        },
    ),
)

_dir = tempfile.mkdtemp(prefix="cxpulse-fuzz-")


def load_agent(text: str) -> None:
    path = Path(_dir) / "agent.toml"
    path.write_text(text, encoding="utf-8")
    try:
        cfg = agent_config.load(path)
    except agent_config.ConfigError:
        return
    assert cfg.validate() is cfg


@FUZZ
@given(st.text(max_size=300))
@example('[[targets]]\nname = "a"\nhost = "h"\nport = "x"')
@example('[[targets]]\nname = "a"\nhost = "h"\nport = {a = 1}')
@example('[[apps]]\nname = "a"\nurl = "https://x/"\napdex_t_ms = [1]')
def test_agent_config_arbitrary_text(text):
    load_agent(text)


@FUZZ
@given(agent_docs)
def test_agent_config_structured(text):
    load_agent(text)


CADENCE = ["probe", "batch", "app", "voice", "wifi", "x"]
central_docs = st.builds(
    toml_doc,
    st.dictionaries(st.sampled_from(["x", "cadence"]), toml_scalars, max_size=1),
    st.fixed_dictionaries(
        {},
        optional={
            "cadence": tables(CADENCE),
            "detector": tables(["spike_abs_us", "spike_rel", "spike_mad_k", "jitter_us", "cpu_pct", "mem_pct", "x"]),
            "wifi": tables(["weak_rssi_dbm", "x"]),
            "privacy": tables(["hash_wifi_identity", "x"]),
            "agents": st.fixed_dictionaries(
                {"local_overrides": st.lists(st.sampled_from(["targets", "apps", "detector", "nope"]), max_size=3)}
            ),
            "retention": tables(["rtt_days", "events_days", "wifi_days", "rollup_days", "x"]),
        },
    ),
    st.fixed_dictionaries(
        {},
        optional={
            "targets": st.lists(tables(["name", "host", "port", "x"]), max_size=3),
            "apps": st.lists(tables(APP_KEYS), max_size=3),
            "presets": st.lists(tables(PRESET_KEYS), max_size=2),
        },
    ),
)


def parse_central(text: str) -> None:
    try:
        cc = central.parse(text)
    except central.ConfigError as exc:
        assert exc.reason
        return
    msg = central.apply(IngestConfig(), cc, 1).to_proto(0)
    assert agent_check(msg) is None  # what the collector stores, every agent of this release runs
    msg.SerializeToString()


@FUZZ
@given(st.text(max_size=300))
@example("[[targets]]\nname = 'a'\nhost = 'h'\nport = 1e3")
@example("[cadence]\nprobe = 1e400")
def test_central_config_arbitrary_text(text):
    parse_central(text)


@FUZZ
@given(central_docs)
def test_central_config_structured(text):
    parse_central(text)
