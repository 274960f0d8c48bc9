"""The macOS pkg's parts, checked without a Mac: plists parse with the right keys, the scripts pass
shellcheck, and the install scripts run under bash against a fake root.

In the fake root, ``defaults`` and ``launchctl`` are stand-ins (CXPULSE_DEFAULTS, CXPULSE_LAUNCHCTL):
the ``defaults`` one answers ``defaults read DOMAIN KEY`` from a recorded preference set, the way
the real one answers from the configuration profile's managed preferences; ``launchctl`` records
its calls. The agent in the fake root is the source tree's ``cxpulse.agent.service`` entry point.
"""

from __future__ import annotations

import base64
import os
import plistlib
import stat
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

from .conftest import PACKAGING, REPO, require_tool

MAC = PACKAGING / "macos"
SUPPORT = "Library/Application Support/cxpulse"
LABEL = "com.cxpulse.agent"
SCRIPTS = [MAC / "scripts" / "preinstall", MAC / "scripts" / "postinstall", MAC / "uninstall.sh", MAC / "build.sh"]
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBcxpulseTestOnly\n-----END CERTIFICATE-----\n"


def test_launch_daemon_plist():
    with open(MAC / f"{LABEL}.plist", "rb") as f:
        d = plistlib.load(f)
    assert d["Label"] == LABEL and d["RunAtLoad"] is True
    assert d["ProgramArguments"] == [f"/{SUPPORT}/bin/cxpulse", "agent", "run", "--config", f"/{SUPPORT}/agent.toml"]
    assert d["KeepAlive"] == {"SuccessfulExit": False}  # restart after a crash, not after a stop
    assert d["ProcessType"] != "Background" and d["ExitTimeOut"] >= 10
    assert d["StandardErrorPath"] == "/Library/Logs/cxpulse/agent.log"
    assert "/Library/Logs/cxpulse/agent.log" in (MAC / "newsyslog.conf").read_text()  # and it is rotated


def test_mobileconfig_carries_what_postinstall_reads():
    with open(MAC / f"{LABEL}.mobileconfig", "rb") as f:
        profile = plistlib.load(f)
    assert profile["PayloadType"] == "Configuration" and profile["PayloadScope"] == "System"
    payloads = {p["PayloadType"]: p for p in profile["PayloadContent"]}
    settings = payloads[LABEL]  # managed preferences for the agent's domain
    postinstall = (MAC / "scripts" / "postinstall").read_text()
    for key in ("Collector", "EnrollToken", "CACert", "Site"):
        assert key in settings and f"pref {key}" in postinstall, key
    rules = payloads["com.apple.servicemanagement"]["Rules"]
    assert {"RuleType": "Label", "RuleValue": LABEL}.items() <= rules[0].items()
    uuids = [profile["PayloadUUID"]] + [p["PayloadUUID"] for p in profile["PayloadContent"]]
    assert len(set(uuids)) == len(uuids)


def test_distribution_and_entitlements_parse():
    root = ET.parse(MAC / "distribution.xml").getroot()
    assert root.tag == "installer-gui-script"
    assert root.find("domains").get("enable_localSystem") == "true"
    assert root.find("pkg-ref[@id='com.cxpulse.agent']") is not None
    with open(MAC / "entitlements.plist", "rb") as f:
        assert isinstance(plistlib.load(f), dict)


def test_scripts_parse_and_pass_shellcheck():
    for script in SCRIPTS:
        r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert r.returncode == 0, (script.name, r.stderr)
        assert os.access(script, os.X_OK), f"{script.name} must be executable (pkgbuild runs it as is)"
    shellcheck = require_tool("shellcheck")
    r = subprocess.run([shellcheck, "-x", *map(str, SCRIPTS)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


# --- the install scripts against a fake root -----------------------------------------------------


def _fake_root(tmp_path: Path, prefs: dict[str, str] | None, where: str = "Managed Preferences") -> tuple[Path, dict]:
    root = tmp_path / "root"
    bin_dir = root / SUPPORT / "bin"
    bin_dir.mkdir(parents=True)
    (root / "Library/LaunchDaemons").mkdir(parents=True)
    (root / "Library/LaunchDaemons" / f"{LABEL}.plist").write_bytes((MAC / f"{LABEL}.plist").read_bytes())
    agent = bin_dir / "cxpulse"
    agent.write_text(
        f"#!/bin/sh\nexec {sys.executable} -c 'import sys; from cxpulse.agent.service import main; "
        f'sys.exit(main(sys.argv[1:]))\' "$@"\n'
    )
    agent.chmod(0o755)
    tools = tmp_path / "tools"
    tools.mkdir()
    recorded = tmp_path / "prefs.tsv"
    if prefs is not None:
        domain = root / "Library" / where / LABEL
        domain.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{domain}.plist", "wb") as f:
            plistlib.dump(prefs, f)
        recorded.write_text("".join(f"{domain}\t{k}\t{v}\n" for k, v in prefs.items()))
    else:
        recorded.write_text("")
    # `defaults read DOMAIN KEY` prints the raw value, or fails for a missing key; here from a record.
    (tools / "defaults").write_text(
        '#!/bin/bash\n[ "$1" = read ] || exit 1\n'
        f'awk -F\'\\t\' -v d="$2" -v k="$3" '
        f"'$1 == d && $2 == k {{ print $3; found=1 }} END {{ exit !found }}' {recorded}\n"
    )
    (tools / "launchctl").write_text(f'#!/bin/sh\necho "$*" >> {tmp_path / "launchctl.log"}\n')
    for t in ("defaults", "launchctl"):
        (tools / t).chmod(0o755)
    env = {
        **os.environ,
        "CXPULSE_ROOT": str(root),
        "CXPULSE_DEFAULTS": str(tools / "defaults"),
        "CXPULSE_LAUNCHCTL": str(tools / "launchctl"),
        "CXPULSE_PKGUTIL": "true",
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
    }
    return root, env


def _run(script: str, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(MAC / script), *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=60
    )


def test_postinstall_writes_config_from_managed_preferences_and_loads_the_daemon(tmp_path):
    ca_b64 = base64.b64encode(CA_PEM.encode()).decode()
    root, env = _fake_root(
        tmp_path,
        {"Collector": "collector.example.test:50051", "EnrollToken": "tok-mdm", "CACert": ca_b64, "Site": "Branch 12"},
    )
    r = _run("scripts/postinstall", env, "/tmp/x.pkg", "/", "/")
    assert r.returncode == 0, r.stderr
    support = root / SUPPORT
    cfg = tomllib.loads((support / "agent.toml").read_text())
    assert cfg == {"collector": "collector.example.test:50051", "site": "Branch 12"}
    enroll = tomllib.loads((support / "enroll.toml").read_text())
    assert enroll == {"enroll_token": "tok-mdm", "ca_file": f"/{SUPPORT}/ca.pem"}  # as the agent will see it
    assert stat.S_IMODE((support / "enroll.toml").stat().st_mode) == 0o600
    assert (support / "ca.pem").read_text() == CA_PEM
    assert (root / "Library/Logs/cxpulse").is_dir()
    calls = (tmp_path / "launchctl.log").read_text().splitlines()
    assert calls == [f"enable system/{LABEL}", f"bootstrap system {root}/Library/LaunchDaemons/{LABEL}.plist"]


def test_postinstall_upgrade_without_preferences_keeps_the_file(tmp_path):
    root, env = _fake_root(tmp_path, None)
    support = root / SUPPORT
    support.joinpath("agent.toml").write_text('# tuned by hand\ncollector = "kept.example.test:1"\n')
    r = _run("scripts/postinstall", env, "/tmp/x.pkg", "/", "/")
    assert r.returncode == 0, r.stderr
    assert support.joinpath("agent.toml").read_text() == '# tuned by hand\ncollector = "kept.example.test:1"\n'
    assert not support.joinpath("enroll.toml").exists()


def test_postinstall_without_anything_writes_a_default_file(tmp_path):
    root, env = _fake_root(tmp_path, None)
    r = _run("scripts/postinstall", env, "/tmp/x.pkg", "/", "/")
    assert r.returncode == 0, r.stderr
    assert tomllib.loads((root / SUPPORT / "agent.toml").read_text()) == {}  # the agent's defaults apply


def test_postinstall_reads_plain_preferences_for_manual_installs(tmp_path):
    root, env = _fake_root(tmp_path, {"Collector": "manual.example.test:50051"}, where="Preferences")
    r = _run("scripts/postinstall", env, "/tmp/x.pkg", "/", "/")
    assert r.returncode == 0, r.stderr
    assert tomllib.loads((root / SUPPORT / "agent.toml").read_text())["collector"] == "manual.example.test:50051"


def test_postinstall_fails_on_a_bad_collector(tmp_path):
    root, env = _fake_root(tmp_path, {"Collector": "no-port-here"})
    r = _run("scripts/postinstall", env, "/tmp/x.pkg", "/", "/")
    assert r.returncode != 0 and "collector" in r.stderr
    assert not (root / SUPPORT / "agent.toml").exists()
    assert not (tmp_path / "launchctl.log").exists()  # nothing loaded with a broken configuration


def test_preinstall_stops_the_old_agent_and_clears_its_program(tmp_path):
    root, env = _fake_root(tmp_path, None)
    (root / SUPPORT / "agent.toml").write_text('collector = "kept.example.test:1"\n')
    r = _run("scripts/preinstall", env, "/tmp/x.pkg", "/", "/")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "launchctl.log").read_text().splitlines() == [f"bootout system/{LABEL}"]
    assert not (root / SUPPORT / "bin").exists() and (root / SUPPORT / "agent.toml").exists()


def test_uninstall_leaves_nothing_or_keeps_data_when_asked(tmp_path):
    root, env = _fake_root(tmp_path, None)
    (root / SUPPORT / "agent").mkdir()
    (root / SUPPORT / "agent.toml").write_text("")
    (root / "Library/Logs/cxpulse").mkdir(parents=True)
    r = _run("uninstall.sh", env, "--keep-data")
    assert r.returncode == 0, r.stderr
    assert (root / SUPPORT / "agent.toml").exists() and not (root / SUPPORT / "bin").exists()
    assert not (root / "Library/LaunchDaemons" / f"{LABEL}.plist").exists()
    r = _run("uninstall.sh", env)
    assert r.returncode == 0, r.stderr
    assert not (root / SUPPORT).exists() and not (root / "Library/Logs/cxpulse").exists()
