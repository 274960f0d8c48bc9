"""The Windows ACLs of the agent's data folder and of the secrets in it (for configure and enrollment).
Import-safe everywhere: pywin32 is imported on use, and off Windows every call is a no-op.
Design notes: docs/agent-internals.md, "agent/acl_windows.py".
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

from .config import ENROLL_FILE, ConfigError

log = logging.getLogger("cxpulse.agent.service")


# --- Windows ACLs of the data folder (ProgramData\cxpulse) -----------------------------------------
#
# The folder is SYSTEM's and the Administrators' (full), readable by Users, inheritance from
# ProgramData removed; what the agent creates inside inherits that. The files holding secrets (the
# enrollment token, the agent's credential, the collector-pushed config with the reflector key) carry
# their own protected ACL: SYSTEM and Administrators only. Nothing is ever reset recursively: a reset
# of the tree gives every secret the folder's Users:read (what the icacls `/T /reset` of the first
# installers did on every upgrade). Done with the Win32 security API through pywin32 (no fork per
# file, the exact protected/unprotected semantics); a single file falls back to icacls without it.

# Well-known SIDs: LocalSystem (the service account), Administrators, Users.
SYSTEM_SID, ADMINS_SID, USERS_SID = "S-1-5-18", "S-1-5-32-544", "S-1-5-32-545"
SECRET_FILES = frozenset({ENROLL_FILE, "credential.json", "central-config.pb"})  # anywhere in the data folder
# Documented Win32 values (winnt.h, accctrl.h): the ACE inheritance flags, the access masks, the
# SECURITY_INFORMATION bits and the SE_DACL_PROTECTED control bit.
OBJECT_INHERIT_ACE, CONTAINER_INHERIT_ACE, INHERITED_ACE = 0x1, 0x2, 0x10
FILE_ALL_ACCESS, FILE_GENERIC_READ_EXECUTE = 0x1F01FF, 0x1200A9
OWNER_SECURITY_INFORMATION, DACL_SECURITY_INFORMATION = 0x1, 0x4
PROTECTED_DACL_SECURITY_INFORMATION, UNPROTECTED_DACL_SECURITY_INFORMATION = 0x80000000, 0x20000000
SE_DACL_PROTECTED = 0x1000
SE_FILE_OBJECT = 1
ACL_REVISION = 2
ACCESS_ALLOWED_ACE_TYPE = 0
_MAX_WALK = 200_000  # entries looked at in the data folder (a full spool is a few tens of thousands)

STRICT_ACES = ((SYSTEM_SID, FILE_ALL_ACCESS, 0), (ADMINS_SID, FILE_ALL_ACCESS, 0))
FOLDER_ACES = (
    (SYSTEM_SID, FILE_ALL_ACCESS, OBJECT_INHERIT_ACE | CONTAINER_INHERIT_ACE),
    (ADMINS_SID, FILE_ALL_ACCESS, OBJECT_INHERIT_ACE | CONTAINER_INHERIT_ACE),
    (USERS_SID, FILE_GENERIC_READ_EXECUTE, OBJECT_INHERIT_ACE | CONTAINER_INHERIT_ACE),
)


class WindowsAcl:
    """The few Win32 security calls the installer needs, over pywin32's ``win32security``.

    ``sec`` is the module (a fake one in tests). ``read`` gives (owner SID, DACL protected?, own
    ACEs as (SID, mask, flags)): the ACEs set on the object itself, inherited ones left out.
    Errors come out as OSError (pywintypes.error is not one), so `agent configure` reports them.
    """

    def __init__(self, sec):
        self.sec = sec

    def read(self, path: Path) -> tuple[str, bool, list[tuple[str, int, int]]]:
        s = self.sec
        sd = self._call(
            s.GetNamedSecurityInfo, str(path), SE_FILE_OBJECT, OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION
        )
        owner = s.ConvertSidToStringSid(sd.GetSecurityDescriptorOwner())
        protected = bool(sd.GetSecurityDescriptorControl()[0] & SE_DACL_PROTECTED)
        dacl = sd.GetSecurityDescriptorDacl()
        own = []
        for i in range(dacl.GetAceCount() if dacl is not None else 0):
            (_type, flags), mask, sid = dacl.GetAce(i)[:3]
            if not flags & INHERITED_ACE:
                own.append((s.ConvertSidToStringSid(sid), mask, flags))
        return owner, protected, own

    def set_dacl(self, path: Path, aces, *, protected: bool) -> None:
        """Replace the object's own ACEs; ``protected`` cuts inheritance, otherwise the parent's
        inheritable ACEs apply (with no own ACEs: the object inherits exactly its folder's)."""
        s = self.sec
        acl = s.ACL(256)  # bytes; three ACEs take ~80 (an empty ACL, never a NULL DACL: that would allow everyone)
        for sid, mask, flags in aces:
            acl.AddAccessAllowedAceEx(ACL_REVISION, flags, mask, s.ConvertStringSidToSid(sid))
        info = DACL_SECURITY_INFORMATION | (
            PROTECTED_DACL_SECURITY_INFORMATION if protected else UNPROTECTED_DACL_SECURITY_INFORMATION
        )
        self._call(s.SetNamedSecurityInfo, str(path), SE_FILE_OBJECT, info, None, None, acl, None)

    def set_owner(self, path: Path, sid: str = ADMINS_SID) -> None:
        s = self.sec
        self._call(
            s.SetNamedSecurityInfo,
            str(path),
            SE_FILE_OBJECT,
            OWNER_SECURITY_INFORMATION,
            s.ConvertStringSidToSid(sid),
            None,
            None,
            None,
        )

    @staticmethod
    def _call(fn, *args):
        try:
            return fn(*args)
        except OSError:
            raise
        except Exception as exc:  # pywintypes.error(winerror, funcname, message)
            code = getattr(exc, "winerror", None)
            raise OSError(
                code, f"{getattr(exc, 'funcname', fn.__name__)} on {args[0]}: {getattr(exc, 'strerror', exc)}"
            ) from None


def _windows_acl() -> WindowsAcl | None:
    """The Win32 API on Windows when pywin32 is there (the frozen build always has it), else None."""
    if os.name != "nt":
        return None
    try:
        import win32security
    except ImportError:
        return None
    return WindowsAcl(win32security)


def _data_folder() -> Path:
    return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData"), "cxpulse")


def _is_strict(owner_protected_aces: tuple[str, bool, list]) -> bool:
    """A protected ACL granting SYSTEM and Administrators only: a secret's, kept as it is."""
    _, protected, aces = owner_protected_aces
    return protected and bool(aces) and {sid for sid, _, _ in aces} <= {SYSTEM_SID, ADMINS_SID}


def _is_secret(name: str) -> bool:
    """A secret file, or the temporary file one is written to (left over by a crash, it holds the same):
    ``<name>.<pid>.tmp`` (cxpulse.atomicfile) or an older version's ``<name>.<x>.new``."""
    return name in SECRET_FILES or any(
        name.startswith(f + ".") and name.endswith((".tmp", ".new")) for f in SECRET_FILES
    )


def _walk(folder: Path):
    """Every entry below ``folder`` (bounded), not into links or junctions: what they point to is not ours."""
    seen = 0
    stack = [folder]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                seen += 1
                if seen > _MAX_WALK:
                    return
                if entry.is_symlink() or _is_reparse_point(entry):
                    log.warning("%s is a link or junction: its ACL is left alone", entry.path)
                    continue
                yield Path(entry.path)
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))


def _is_reparse_point(entry: os.DirEntry) -> bool:
    attrs = getattr(entry.stat(follow_symlinks=False), "st_file_attributes", 0)
    return bool(attrs & 0x400)  # FILE_ATTRIBUTE_REPARSE_POINT (junctions, mount points)


def secure_data_folder(folder: Path, acl: WindowsAcl) -> list[Path]:
    """Give ``folder`` its ACL and keep every secret in it strict; return the secrets found.

    ProgramData lets every user create files in a new subfolder, so a user may have planted files
    (an agent.toml naming a collector of their choosing) before the first install: every entry is
    made the Administrators' and loses the ACEs of its own, one by one, unless it already carries a
    strict ACL. Secrets are made strict before the folder changes and again after, so that no step
    leaves one readable by Users, also after an earlier installer's reset.
    """
    entries = list(_walk(folder))
    secrets = [p for p in entries if _is_secret(p.name) and p.is_file()]
    for p in secrets:
        acl.set_dacl(p, STRICT_ACES, protected=True)
    acl.set_owner(folder)
    acl.set_dacl(folder, FOLDER_ACES, protected=True)  # the system propagates it to inheriting children
    for p in entries:
        state = acl.read(p)
        if state[0] not in (SYSTEM_SID, ADMINS_SID):
            acl.set_owner(p)  # an owner may always rewrite the ACL: a desk user must not be one
        if p not in secrets and (state[1] or state[2]) and not _is_strict(state):
            acl.set_dacl(p, (), protected=False)  # this entry alone: inherit the folder's, nothing of its own
    for p in secrets:
        acl.set_dacl(p, STRICT_ACES, protected=True)
    return secrets


def restrict_data_folder(folder: Path) -> None:
    """The data folder's ACL at install and upgrade (``secure_data_folder``); needs pywin32 there."""
    acl = _windows_acl()
    if acl is None:
        if os.name == "nt":
            raise ConfigError(
                "securing the data folder needs pywin32 (pip install 'cxpulse[packaging]'); "
                "the installer's build has it"
            )
        return
    if folder.resolve() != _data_folder().resolve():  # a configuration kept elsewhere by hand: not ours
        return
    secure_data_folder(folder, acl)


def restrict_secret_file(path: Path) -> None:
    """ProgramData is readable by every user: leave a secret to SYSTEM and Administrators.

    POSIX gets the same through the file mode (0600; postinst adds the service's group).
    """
    acl = _windows_acl()
    if acl is not None:
        acl.set_dacl(path, STRICT_ACES, protected=True)
        return
    if os.name != "nt":
        return
    # From a source install without pywin32: the same ACL from icacls, on this one file only.
    subprocess.run(
        ["icacls", str(path), "/inheritance:r", "/grant:r", f"*{SYSTEM_SID}:F", f"*{ADMINS_SID}:F"],
        check=True,
        capture_output=True,
    )
