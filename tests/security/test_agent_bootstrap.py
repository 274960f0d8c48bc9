"""The agent's side of enrollment: what installers leave (enroll.toml, ca.pem) is read, and the
credential is kept where only the service can read it."""

from __future__ import annotations

import json
import stat

import pytest

from cxpulse.agent.config import ConfigError, load
from cxpulse.agent.enrollment import CREDENTIAL_FILE, Credential, store_credential
from cxpulse.agent.service import write_bootstrap
from cxpulse.collector.security.tls import make_ca


def test_installer_files_are_merged_into_the_config(tmp_path):
    ca = make_ca().cert_pem.decode()
    written = write_bootstrap(
        tmp_path / "agent.toml",
        collector="collector.example.com:50051",
        site="s",
        enroll_token="cxp_enr_0123456789abcdef_secret",
        ca_cert=ca,
    )
    assert {p.name for p in written} == {"agent.toml", "ca.pem", "enroll.toml"}
    cfg = load(tmp_path / "agent.toml")
    assert cfg.enroll_token == "cxp_enr_0123456789abcdef_secret"
    assert cfg.ca_file == str(tmp_path / "ca.pem") and not cfg.insecure
    assert stat.S_IMODE((tmp_path / "enroll.toml").stat().st_mode) == 0o600


def test_enroll_file_may_not_carry_other_keys_nor_contradict(tmp_path):
    (tmp_path / "agent.toml").write_text('collector = "c.example.com:50051"\nenroll_token = "a"\n')
    (tmp_path / "enroll.toml").write_text('enroll_token = "b"\n')
    with pytest.raises(ConfigError, match="set in both"):
        load(tmp_path / "agent.toml")
    (tmp_path / "enroll.toml").write_text('collector = "evil.example.com:50051"\n')
    with pytest.raises(ConfigError, match="unknown key 'collector'"):
        load(tmp_path / "agent.toml")


def test_insecure_and_a_ca_exclude_each_other(tmp_path):
    (tmp_path / "ca.pem").write_bytes(make_ca().cert_pem)
    (tmp_path / "agent.toml").write_text('insecure = true\nca_file = "ca.pem"\n')
    with pytest.raises(ConfigError, match="insecure excludes"):
        load(tmp_path / "agent.toml")
    (tmp_path / "agent.toml").write_text('ca_file = "missing.pem"\n')
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "agent.toml")


def test_credential_is_private_and_bound_to_its_agent_id(tmp_path):
    path = tmp_path / "state" / CREDENTIAL_FILE
    store_credential(str(path), "desk-1", "cxp_agt_x_y")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"agent_id": "desk-1", "credential": "cxp_agt_x_y"}
    assert [p.name for p in path.parent.iterdir()] == [CREDENTIAL_FILE]  # no temporary left behind
    assert Credential(str(tmp_path / "state"), "desk-1", "h").metadata() == (("authorization", "Bearer cxp_agt_x_y"),)
    assert Credential(str(tmp_path / "state"), "desk-2", "h").metadata() == ()  # another id's file is ignored
