"""The Windows MSI, built here with wixl from stand-in files and read back table by table (msiinfo).

What Windows itself would do with these tables (service start, recovery, the configure action)
is checked by the CI workflow's Windows job (packaging/ci/installers.yml), not here.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .conftest import PACKAGING, require_tool

pytestmark = pytest.mark.packaging

UPGRADE_CODE = "{6B3E2F0A-8C1D-4E57-9A0B-3C5D7E9F1A24}"  # never changes: a test, so nobody "fixes" it
SERVICE_OWN_PROCESS, AUTO_START, ERROR_NORMAL = 16, 2, 1
# msidbServiceControlEvent: start on install, stop on install and uninstall, delete on uninstall.
CONTROL_EVENTS = 0x1 | 0x2 | 0x20 | 0x80
HIDE_TARGET, DEFERRED, NO_IMPERSONATE = 8192, 1024, 2048


def table(msi: Path, name: str) -> list[dict[str, str]]:
    """Rows of one MSI table as dicts (msiinfo export: header, types, key line, then rows)."""
    out = subprocess.run(["msiinfo", "export", str(msi), name], capture_output=True, text=True, check=True).stdout
    lines = out.split("\r\n") if "\r\n" in out else out.split("\n")
    columns = lines[0].split("\t")
    return [dict(zip(columns, line.split("\t"))) for line in lines[3:] if line]


@pytest.fixture(scope="module")
def msi(tmp_path_factory) -> Path:
    require_tool("wixl")
    require_tool("msiinfo", "msitools")
    out = tmp_path_factory.mktemp("msi")
    r = subprocess.run(
        [str(PACKAGING / "windows" / "build-msi.sh"), "--placeholders", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    path = Path(r.stdout.strip().splitlines()[-1])
    print(f"\nmsi (stand-in files): {path.name} {path.stat().st_size} bytes")
    return path


def test_every_staged_file_is_installed_to_program_files(msi, tmp_path):
    import sys

    sys.path.insert(0, str(PACKAGING / "windows"))
    try:
        import placeholder_pe
    finally:
        sys.path.remove(str(PACKAGING / "windows"))
    staged = placeholder_pe.stage(tmp_path / "app")
    expected = sorted(p.name for p in staged.rglob("*") if p.is_file())
    assert sorted(r["FileName"] for r in table(msi, "File")) == expected
    dirs = {r["Directory"]: r for r in table(msi, "Directory")}
    assert dirs["INSTALLDIR"]["DefaultDir"] == "Agent" and dirs["INSTALLDIR"]["Directory_Parent"] == "CXPULSEDIR"
    assert dirs["CXPULSEDIR"]["Directory_Parent"] == "ProgramFiles64Folder"
    assert dirs["CXPULSEDATA"]["Directory_Parent"] == "CommonAppDataFolder"
    components = table(msi, "Component")
    assert len(components) == len(expected)  # one file per component, the file as key path
    # 64-bit components (msidbComponentAttributes64bit), nothing owned in ProgramData.
    assert all(int(c["Attributes"]) & 256 and c["Directory_"] != "CXPULSEDATA" for c in components)
    [svc] = [c for c in components if c["Component"] == "AgentService"]
    assert svc["KeyPath"] == "cxpulse.exe"


def test_service_is_installed_automatic_and_controlled(msi):
    [svc] = table(msi, "ServiceInstall")
    assert svc["Name"] == "cxpulse-agent" and svc["Component_"] == "AgentService"
    assert int(svc["ServiceType"]) == SERVICE_OWN_PROCESS and int(svc["StartType"]) == AUTO_START
    assert int(svc["ErrorControl"]) == ERROR_NORMAL and svc["StartName"] == "LocalSystem"
    assert svc["Arguments"] == 'agent service --config "[CXPULSEDATA]agent.toml"'
    [ctl] = table(msi, "ServiceControl")
    assert ctl["Name"] == "cxpulse-agent" and int(ctl["Event"]) == CONTROL_EVENTS and ctl["Wait"] == "1"


def test_public_properties_reach_the_bootstrap_file(msi):
    actions = {r["Action"]: r for r in table(msi, "CustomAction")}
    cfg = actions["CA_WriteConfig"]
    assert cfg["Source"] == "cxpulse.exe"  # the agent's own `agent configure`
    for prop, flag in (
        ("COLLECTOR", "--collector"),
        ("ENROLL_TOKEN", "--enroll-token"),
        ("CA_CERT", "--ca-cert"),
        ("SITE", "--site"),
    ):
        assert f'{flag} "[{prop}]"' in cfg["Target"]
    assert '--config "[CXPULSEDATA]agent.toml"' in cfg["Target"]
    kind = int(cfg["Type"])
    assert kind & 0x3F == 18 and kind & DEFERRED and kind & NO_IMPERSONATE and kind & HIDE_TARGET
    props = {r["Property"]: r["Value"] for r in table(msi, "Property")}
    assert set(props["SecureCustomProperties"].split(";")) >= {
        "COLLECTOR",
        "ENROLL_TOKEN",
        "CA_CERT",
        "SITE",
        "KEEP_DATA",
    }
    assert props["MsiHiddenProperties"] == "ENROLL_TOKEN"
    assert props["ALLUSERS"] == "1"  # per-machine


def test_service_restarts_on_failure(msi):
    actions = {r["Action"]: r for r in table(msi, "CustomAction")}
    assert actions["CA_SetScPath"]["Target"] == "[SystemFolder]sc.exe"
    assert actions["CA_ServiceRecovery"]["Source"] == "CxpulseScExe"
    assert actions["CA_ServiceRecovery"]["Target"].startswith("failure cxpulse-agent reset= 86400 actions= restart/")
    assert actions["CA_ServiceRecoveryFlag"]["Target"] == "failureflag cxpulse-agent 1"


def test_upgrade_replaces_and_uninstall_purges_only_for_real(msi):
    upgrade = table(msi, "Upgrade")
    assert {r["UpgradeCode"] for r in upgrade} == {UPGRADE_CODE}
    assert {r["ActionProperty"] for r in upgrade} == {"WIX_UPGRADE_DETECTED", "WIX_DOWNGRADE_DETECTED"}
    props = {r["Property"]: r["Value"] for r in table(msi, "Property")}
    assert props["UpgradeCode"] == UPGRADE_CODE
    seq = {r["Action"]: r for r in table(msi, "InstallExecuteSequence")}
    n = {a: int(r["Sequence"]) for a, r in seq.items()}
    # The old version goes first (with its service), then the new one installs.
    assert n["InstallValidate"] < n["RemoveExistingProducts"] < n["InstallInitialize"]
    # Configuration is written after files and service, before the service starts.
    assert n["InstallServices"] < n["CA_WriteConfig"] < n["CA_ServiceRecovery"] < n["StartServices"]
    assert seq["CA_WriteConfig"]["Condition"] == 'NOT REMOVE~="ALL"'
    # Data goes on a real uninstall only: after the service is deleted, never during an upgrade.
    assert n["DeleteServices"] < n["CA_PurgeData"] < n["RemoveFiles"]
    assert (
        "NOT UPGRADINGPRODUCTCODE" in seq["CA_PurgeData"]["Condition"]
        and "KEEP_DATA" in seq["CA_PurgeData"]["Condition"]
    )
    assert n["CA_SetScPath"] < n["InstallInitialize"] and n["CA_SetCmdPath"] < n["InstallInitialize"]
    assert all(v < n["InstallFinalize"] for v in n.values() if v != n["InstallFinalize"] and v > n["InstallInitialize"])


def test_harvest_is_stable_and_valid(tmp_path):
    import sys

    sys.path.insert(0, str(PACKAGING / "windows"))
    try:
        import harvest
        import placeholder_pe
    finally:
        sys.path.remove(str(PACKAGING / "windows"))
    app = placeholder_pe.stage(tmp_path / "app")
    first = harvest.fragment(app, {"cxpulse.exe"})
    assert first == harvest.fragment(app, {"cxpulse.exe"})  # same IDs every build
    assert 'cxpulse.exe"' not in first.replace("cxpulse-trace.exe", "")
    import xml.etree.ElementTree as ET

    ET.fromstring(first)
