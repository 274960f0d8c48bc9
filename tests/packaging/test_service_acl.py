"""agent/acl_windows.py, through `agent configure`: the ACL of the Windows data folder (ProgramData\\cxpulse)

No Windows here: a fake ``win32security`` (the pywin32 functions the code calls, same names and
argument order) keeps a security descriptor per file of a real temporary tree and emulates what
Windows does with it: a DACL set on a folder reaches every child whose DACL is not protected
(SetNamedSecurityInfo propagates inheritable ACEs), a protected DACL stops that, an owner stays
with its object, a rename keeps the object's descriptor. Every call is recorded; after each one the
test checks that no secret file is readable by anyone but SYSTEM and Administrators.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cxpulse.agent import acl_windows, central, enrollment, service
from cxpulse.agent.acl_windows import (
    ADMINS_SID,
    CONTAINER_INHERIT_ACE,
    DACL_SECURITY_INFORMATION,
    FILE_ALL_ACCESS,
    INHERITED_ACE,
    OBJECT_INHERIT_ACE,
    OWNER_SECURITY_INFORMATION,
    PROTECTED_DACL_SECURITY_INFORMATION,
    SE_DACL_PROTECTED,
    STRICT_ACES,
    SYSTEM_SID,
    UNPROTECTED_DACL_SECURITY_INFORMATION,
    USERS_SID,
    WindowsAcl,
)

DESK_USER = "S-1-5-21-1004336348-1177238915-682003330-1001"  # a local user's SID, as whoami /user prints it
OI_CI = OBJECT_INHERIT_ACE | CONTAINER_INHERIT_ACE
# ProgramData's own ACL on a Windows 10/11 install (icacls C:\ProgramData): SYSTEM and Administrators
# full, Users read and execute, and Users "write data / add subdirectory" on subfolders (CI only):
# why a desk user can create files in a new subfolder before the installer runs.
PROGRAMDATA_ACES = [
    (SYSTEM_SID, FILE_ALL_ACCESS, OI_CI),
    (ADMINS_SID, FILE_ALL_ACCESS, OI_CI),
    (USERS_SID, 0x1200A9, OI_CI),
    (USERS_SID, 0x116, CONTAINER_INHERIT_ACE),
]


class FakeError(Exception):
    """pywintypes.error: (winerror, funcname, strerror)."""

    def __init__(self, winerror: int, funcname: str, strerror: str):
        super().__init__(winerror, funcname, strerror)
        self.winerror, self.funcname, self.strerror = winerror, funcname, strerror


class Sid:
    def __init__(self, text: str):
        self.text = text


class Acl:
    def __init__(self):
        self.aces: list = []

    def AddAccessAllowedAceEx(self, revision: int, flags: int, mask: int, sid: Sid) -> None:
        assert revision == 2 and isinstance(sid, Sid)
        self.aces.append(((0, flags), mask, sid))

    def GetAceCount(self) -> int:
        return len(self.aces)

    def GetAce(self, i: int):
        return self.aces[i]


class Descriptor:
    def __init__(self, owner: str, protected: bool, aces: list):
        self.owner, self.protected = owner, protected
        self.dacl = Acl()
        for sid, mask, flags in aces:
            self.dacl.AddAccessAllowedAceEx(2, flags, mask, Sid(sid))

    def GetSecurityDescriptorOwner(self) -> Sid:
        return Sid(self.owner)

    def GetSecurityDescriptorControl(self) -> tuple[int, int]:
        return (SE_DACL_PROTECTED if self.protected else 0, 1)

    def GetSecurityDescriptorDacl(self) -> Acl:
        return self.dacl


class FakeWin32Security:
    """The objects below ``programdata``; an object never given a descriptor is one the service
    created: owned by SYSTEM, nothing of its own, inheriting."""

    def __init__(self, programdata: Path, watch=None):
        self.programdata = programdata
        self.own: dict[int, dict] = {}  # inode -> {"owner", "protected", "aces"}
        self.calls: list[tuple] = []
        self.watch = watch  # called after every change
        self.fail_on: str | None = None

    # -- what Windows keeps --
    def _key(self, path: str) -> int:
        try:
            return os.stat(path, follow_symlinks=False).st_ino
        except FileNotFoundError:
            raise FakeError(2, "GetNamedSecurityInfo", "The system cannot find the file specified.") from None

    def state(self, path) -> dict:
        return self.own.setdefault(self._key(str(path)), {"owner": SYSTEM_SID, "protected": False, "aces": []})

    def plant(self, path: Path, owner: str, aces: list, protected: bool = False) -> None:
        self.own[self._key(str(path))] = {"owner": owner, "protected": protected, "aces": list(aces)}

    def inherited(self, path: Path) -> list[tuple[str, int, int]]:
        parent = path.parent
        if parent == self.programdata:
            parent_aces = PROGRAMDATA_ACES
        elif self.programdata in parent.parents:
            parent_aces = self.effective(parent)
        else:
            return []
        want = CONTAINER_INHERIT_ACE if path.is_dir() else OBJECT_INHERIT_ACE
        out = []
        for sid, mask, flags in parent_aces:
            if flags & want:
                out.append((sid, mask, (flags & OI_CI if path.is_dir() else 0) | INHERITED_ACE))
        return out

    def effective(self, path: Path) -> list[tuple[str, int, int]]:
        st = self.state(path)
        return list(st["aces"]) + ([] if st["protected"] else self.inherited(path))

    def readers(self, path: Path) -> set[str]:
        return {sid for sid, _, _ in self.effective(path)}

    # -- the pywin32 functions --
    def ConvertStringSidToSid(self, text: str) -> Sid:
        assert text.startswith("S-1-"), text
        return Sid(text)

    def ConvertSidToStringSid(self, sid: Sid) -> str:
        return sid.text

    def ACL(self, size: int = 64) -> Acl:
        assert size >= 8 + 3 * 24, "too small for the folder's three ACEs"
        return Acl()

    def GetNamedSecurityInfo(self, path: str, objtype: int, info: int) -> Descriptor:
        assert objtype == 1 and info == OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION
        self.calls.append(("get", path))
        p = Path(path)
        st = self.state(p)
        return Descriptor(st["owner"], st["protected"], self.effective(p))

    def SetNamedSecurityInfo(self, path: str, objtype: int, info: int, owner, group, dacl, sacl) -> None:
        assert objtype == 1 and group is None and sacl is None
        if self.fail_on and Path(path).name == self.fail_on:
            raise FakeError(5, "SetNamedSecurityInfo", "Access is denied.")
        st = self.state(path)
        if info & OWNER_SECURITY_INFORMATION:
            st["owner"] = owner.text
        if info & DACL_SECURITY_INFORMATION:
            assert bool(info & PROTECTED_DACL_SECURITY_INFORMATION) != bool(
                info & UNPROTECTED_DACL_SECURITY_INFORMATION
            )
            st["protected"] = bool(info & PROTECTED_DACL_SECURITY_INFORMATION)
            st["aces"] = [(sid.text, mask, flags) for (_, flags), mask, sid in dacl.aces if not flags & INHERITED_ACE]
        self.calls.append(("set", path, info, [a[0] for a in st["aces"]], st["protected"]))
        if self.watch:
            self.watch(self)


STRICT = {SYSTEM_SID, ADMINS_SID}


@pytest.fixture
def desk(tmp_path, monkeypatch):
    """A fake ProgramData with the service's folder; `agent configure` sees the fake API as Windows'."""
    programdata = tmp_path / "ProgramData"
    folder = programdata / "cxpulse"
    folder.mkdir(parents=True)
    secrets: list[Path] = []

    locked: set[int] = set()

    def no_secret_readable(fake: FakeWin32Security) -> None:
        """Once a secret is SYSTEM's and the Administrators' only, no later call may open it again."""
        for p in secrets:
            if p.exists():
                key = os.stat(p).st_ino
                if fake.readers(p) <= STRICT:
                    locked.add(key)
                else:
                    assert key not in locked, (p.name, fake.readers(p), fake.calls[-1])

    fake = FakeWin32Security(programdata, watch=no_secret_readable)
    monkeypatch.setattr(acl_windows, "_windows_acl", lambda: WindowsAcl(fake))
    monkeypatch.setattr(acl_windows, "_data_folder", lambda: folder)
    return fake, folder, secrets


def store_credential_as_the_service(state: Path) -> Path:
    """What the running agent does on enrollment (enrollment.store_credential restricts the
    temporary file through acl_windows.restrict_secret_file on Windows)."""
    state.mkdir(parents=True, exist_ok=True)
    path = state / enrollment.CREDENTIAL_FILE
    tmp = state / (enrollment.CREDENTIAL_FILE + ".x1.new")
    tmp.write_text("")
    acl_windows.restrict_secret_file(tmp)
    tmp.write_text('{"agent_id": "a", "credential": "c"}')
    os.replace(tmp, path)
    return path


def test_secret_names_are_the_files_the_agent_writes():
    assert {service.ENROLL_FILE, enrollment.CREDENTIAL_FILE, central.FILE_NAME} == set(acl_windows.SECRET_FILES)
    assert acl_windows._is_secret("credential.json.k2j4.new") and not acl_windows._is_secret("agent.toml.k2j4.new")
    assert acl_windows._is_secret("credential.json.4242.tmp") and not acl_windows._is_secret("agent.toml.4242.tmp")


def test_install_then_upgrade_keeps_every_secret_to_system_and_administrators(desk):
    fake, folder, secrets = desk
    # Before the first install a desk user planted a config of their own and a subfolder.
    planted = folder / "agent.toml"
    planted.write_text('collector = "evil.example.test:1"\n')
    fake.plant(planted, DESK_USER, [(DESK_USER, FILE_ALL_ACCESS, 0)], protected=True)
    (folder / "agent").mkdir()
    fake.plant(folder / "agent", DESK_USER, [(DESK_USER, FILE_ALL_ACCESS, OI_CI)])
    secrets += [
        folder / service.ENROLL_FILE,
        folder / "agent" / enrollment.CREDENTIAL_FILE,
        folder / "agent" / central.FILE_NAME,
    ]

    service.write_bootstrap(folder / "agent.toml", collector="c.example.test:50051", enroll_token="tok-1")
    assert fake.readers(folder) == {SYSTEM_SID, ADMINS_SID, USERS_SID} and fake.state(folder)["protected"]
    for p in (folder / "agent.toml", folder / "agent"):  # the planted ACEs are gone, the owner too
        assert fake.readers(p) == {SYSTEM_SID, ADMINS_SID, USERS_SID} and fake.state(p)["owner"] != DESK_USER, p
    assert fake.readers(folder / service.ENROLL_FILE) == STRICT

    # The service runs: enrolls, keeps the collector's config (a reflector key), spools batches.
    cred = store_credential_as_the_service(folder / "agent")
    (folder / "agent" / central.FILE_NAME).write_bytes(b"\x0a\x03key")
    (folder / "agent" / "spool").mkdir()
    (folder / "agent" / "spool" / "00000000000000000001-10.mpk").write_bytes(b"CXSP")
    fake.state(folder / "agent" / central.FILE_NAME)  # written by the service: inherits (Users read)
    assert fake.readers(cred) == STRICT

    # The upgrade: the MSI runs `agent configure` again with the same properties.
    fake.calls.clear()
    service.write_bootstrap(folder / "agent.toml", collector="c.example.test:50051", enroll_token="tok-1")
    for p in secrets:
        assert fake.readers(p) == STRICT and fake.state(p)["protected"], p
    # (a) nothing was reset as a tree: each "inherit only" went to one entry that had ACEs of its
    # own, none to a secret, none to the folder; the spool file was only read.
    resets = [c for c in fake.calls if c[0] == "set" and c[2] & UNPROTECTED_DACL_SECURITY_INFORMATION]
    assert [Path(c[1]).name for c in resets] == []
    strict_sets = {Path(c[1]).name for c in fake.calls if c[0] == "set" and c[4] and c[3] == [SYSTEM_SID, ADMINS_SID]}
    assert {service.ENROLL_FILE, enrollment.CREDENTIAL_FILE, central.FILE_NAME} <= strict_sets
    assert fake.readers(folder / "agent" / "spool" / "00000000000000000001-10.mpk") == {
        SYSTEM_SID,
        ADMINS_SID,
        USERS_SID,
    }


def test_an_upgrade_over_the_old_installers_reset_locks_the_credential_again(desk):
    """The first installers' `icacls folder\\* /reset /T` left credential.json inheriting Users:read."""
    fake, folder, _secrets = desk
    service.write_bootstrap(folder / "agent.toml", collector="c.example.test:50051")
    cred = folder / "agent" / enrollment.CREDENTIAL_FILE
    cred.parent.mkdir()
    cred.write_text('{"agent_id": "a", "credential": "c"}')
    assert USERS_SID in fake.readers(cred)  # what the old reset left
    fake.calls.clear()
    service.write_bootstrap(folder / "agent.toml", site="upgraded")
    assert fake.readers(cred) == STRICT
    # ... and the first call that touched it was the strict one, before the folder's ACL changed.
    first = next(c for c in fake.calls if c[0] == "set" and c[1] in (str(cred), str(folder)))
    assert first[1] == str(cred) and first[4] is True


def test_a_planted_file_with_its_own_strict_acl_is_kept_and_others_lose_their_aces(desk):
    fake, folder, _ = desk
    kept = folder / "admin-notes.txt"  # an administrator locked it down: stricter than the folder
    kept.write_text("x")
    fake.plant(kept, ADMINS_SID, [(SYSTEM_SID, FILE_ALL_ACCESS, 0), (ADMINS_SID, FILE_ALL_ACCESS, 0)], protected=True)
    loose = folder / "logs"
    loose.mkdir()
    fake.plant(loose, DESK_USER, [(DESK_USER, FILE_ALL_ACCESS, OI_CI)])
    (loose / "agent.log").write_text("")
    service.write_bootstrap(folder / "agent.toml", collector="c.example.test:50051")
    assert fake.readers(kept) == STRICT and fake.state(kept)["protected"]
    assert fake.readers(loose / "agent.log") == {SYSTEM_SID, ADMINS_SID, USERS_SID}
    resets = [Path(c[1]).name for c in fake.calls if c[0] == "set" and c[2] & UNPROTECTED_DACL_SECURITY_INFORMATION]
    assert resets == ["logs"]  # one entry, by name: no tree reset, the log below inherits by itself


def test_a_folder_elsewhere_is_not_repermissioned(desk, tmp_path):
    fake, _, _ = desk
    service.write_bootstrap(tmp_path / "elsewhere" / "agent.toml", collector="c.example.test:1")
    assert [c for c in fake.calls if c[0] == "set" and "elsewhere" in c[1] and not c[1].endswith(".new")] == []


def test_access_denied_fails_the_configure_with_a_message(desk, capsys):
    fake, folder, _ = desk
    fake.fail_on = "cxpulse"
    code = service.main(
        ["agent", "configure", "--config", str(folder / "agent.toml"), "--collector", "c.example.test:1"]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "SetNamedSecurityInfo" in err and "Access is denied" in err and not (folder / "agent.toml").exists()


def test_without_pywin32_a_single_file_uses_icacls_and_never_resets(monkeypatch, tmp_path):
    """A source install on Windows without pywin32: the same ACL from icacls, on that one file."""
    ran = []
    monkeypatch.setattr(acl_windows, "_windows_acl", lambda: None)
    monkeypatch.setattr(acl_windows.os, "name", "nt")
    monkeypatch.setattr(
        acl_windows.subprocess, "run", lambda argv, **kw: ran.append(argv) or subprocess.CompletedProcess(argv, 0)
    )
    acl_windows.restrict_secret_file(tmp_path / "credential.json")
    monkeypatch.undo()
    assert ran == [
        ["icacls", str(tmp_path / "credential.json"), "/inheritance:r", "/grant:r", "*S-1-5-18:F", "*S-1-5-32-544:F"]
    ]
    assert not any("/reset" in a or "/T" in a for a in ran[0])


NATIVE_WINDOWS = os.environ.get("CXPULSE_NATIVE_OS") == "1" and sys.platform == "win32"


@pytest.mark.skipif(
    not NATIVE_WINDOWS,
    reason="native Windows check: runs in the installers workflow's "
    "agent-tests job (CXPULSE_NATIVE_OS=1 on windows-latest)",
)
def test_native_win32_security_keeps_a_secret_strict_over_two_configures(tmp_path):
    """The same sequence through the real pywin32 on a Windows runner (an elevated administrator)."""
    import win32security

    acl = WindowsAcl(win32security)
    folder = tmp_path / "cxpulse"
    (folder / "agent").mkdir(parents=True)
    cred = folder / "agent" / enrollment.CREDENTIAL_FILE
    cred.write_text("{}")
    acl.set_dacl(cred, STRICT_ACES, protected=True)  # what store_credential does
    other = folder / "agent.toml"
    other.write_text("")
    for _ in range(2):  # install, then upgrade
        acl_windows.secure_data_folder(folder, acl)
        _owner, protected, aces = acl.read(cred)
        assert protected and {a[0] for a in aces} == STRICT, aces
        _, folder_protected, folder_aces = acl.read(folder)
        assert folder_protected and {a[0] for a in folder_aces} == STRICT | {USERS_SID}
        assert acl.read(other)[1:] == (False, [])  # inherits the folder's, nothing of its own
