"""Windows: the user logged on at the physical console, and the name the helpdesk knows them by.
From WTS and the account kind (domain, local, Entra ID) through ctypes; DLLs loaded on first use.
Design notes: docs/agent-internals.md, "agent/desk_user_windows.py".
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable
from ctypes import wintypes

__all__ = ["ConsoleUsers", "console_user"]

NO_CONSOLE_SESSION = 0xFFFFFFFF  # WTSGetActiveConsoleSessionId: no session attached to the console
WTS_CURRENT_SERVER_HANDLE = None  # NULL: this machine
WTS_USER_NAME = 5  # WTS_INFO_CLASS.WTSUserName
WTS_DOMAIN_NAME = 7  # WTS_INFO_CLASS.WTSDomainName
NAME_SAM_COMPATIBLE = 2  # EXTENDED_NAME_FORMAT.NameSamCompatible
NAME_DISPLAY = 3  # EXTENDED_NAME_FORMAT.NameDisplay
NERR_SUCCESS = 0
ERROR_INSUFFICIENT_BUFFER = 122
ERROR_MORE_DATA = 234
MAX_COMPUTERNAME_LENGTH = 15
ENTRA_DOMAIN = "AZUREAD"  # WTSDomainName of an Entra ID (Azure AD) joined account
IDENTITY_CACHE = r"SOFTWARE\Microsoft\IdentityStore\Cache\{sid}\IdentityCache\{sid}"
NAME_CACHE_MAX = 64  # logins whose display name is remembered (hot desks see a few a day)


class USER_INFO_10(ctypes.Structure):
    """lmaccess.h: what NetUserGetInfo returns at level 10 (four LPWSTR, 32 bytes on x64)."""

    _fields_ = [
        ("usri10_name", wintypes.LPWSTR),
        ("usri10_comment", wintypes.LPWSTR),
        ("usri10_usr_comment", wintypes.LPWSTR),
        ("usri10_full_name", wintypes.LPWSTR),
    ]


def _declare(kernel32, wtsapi32, netapi32, secur32, advapi32) -> None:
    """Prototypes for the real DLLs (a fake one takes plain Python calls)."""
    kernel32.WTSGetActiveConsoleSessionId.argtypes = []
    kernel32.WTSGetActiveConsoleSessionId.restype = wintypes.DWORD
    kernel32.GetComputerNameW.argtypes = [wintypes.LPWSTR, ctypes.POINTER(wintypes.DWORD)]
    kernel32.GetComputerNameW.restype = wintypes.BOOL
    kernel32.LocalFree.argtypes = [ctypes.c_void_p]
    kernel32.LocalFree.restype = ctypes.c_void_p
    wtsapi32.WTSQuerySessionInformationW.argtypes = [
        wintypes.HANDLE,
        wintypes.DWORD,
        ctypes.c_int,
        ctypes.POINTER(ctypes.c_void_p),
        ctypes.POINTER(wintypes.DWORD),
    ]
    wtsapi32.WTSQuerySessionInformationW.restype = wintypes.BOOL
    wtsapi32.WTSFreeMemory.argtypes = [ctypes.c_void_p]
    wtsapi32.WTSFreeMemory.restype = None
    netapi32.NetUserGetInfo.argtypes = [
        wintypes.LPCWSTR,
        wintypes.LPCWSTR,
        wintypes.DWORD,
        ctypes.POINTER(ctypes.c_void_p),
    ]
    netapi32.NetUserGetInfo.restype = wintypes.DWORD
    netapi32.NetApiBufferFree.argtypes = [ctypes.c_void_p]
    netapi32.NetApiBufferFree.restype = wintypes.DWORD
    secur32.TranslateNameW.argtypes = [
        wintypes.LPCWSTR,
        ctypes.c_int,
        ctypes.c_int,
        wintypes.LPWSTR,
        ctypes.POINTER(wintypes.ULONG),
    ]
    secur32.TranslateNameW.restype = wintypes.BOOLEAN
    advapi32.LookupAccountNameW.argtypes = [
        wintypes.LPCWSTR,
        wintypes.LPCWSTR,
        ctypes.c_void_p,
        ctypes.POINTER(wintypes.DWORD),
        wintypes.LPWSTR,
        ctypes.POINTER(wintypes.DWORD),
        ctypes.POINTER(ctypes.c_int),
    ]
    advapi32.LookupAccountNameW.restype = wintypes.BOOL
    advapi32.ConvertSidToStringSidW.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
    advapi32.ConvertSidToStringSidW.restype = wintypes.BOOL


def _registry_value(subkey: str, name: str) -> str | None:
    """A REG_SZ under HKLM, or None (absent, other type, no access)."""
    if sys.platform != "win32":  # winreg exists on Windows only (and so do its stubs)
        return None
    import winreg

    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, subkey, 0, winreg.KEY_READ) as key:
            value, kind = winreg.QueryValueEx(key, name)
    except OSError:
        return None
    return value if kind == winreg.REG_SZ and isinstance(value, str) else None


class ConsoleUsers:
    """The console user through the given DLL objects (real WinDLLs, or fakes in the tests).

    ``last_error`` is ``ctypes.get_last_error`` for the real DLLs (loaded with use_last_error);
    ``registry(subkey, value)`` reads HKLM. Keeps the display names it found, per login.
    """

    def __init__(
        self,
        kernel32,
        wtsapi32,
        netapi32,
        secur32,
        advapi32,
        last_error: Callable[[], int],
        registry: Callable[[str, str], str | None],
    ):
        self.kernel32, self.wtsapi32, self.netapi32 = kernel32, wtsapi32, netapi32
        self.secur32, self.advapi32 = secur32, advapi32
        self.last_error = last_error
        self.registry = registry
        self.error = 0  # the last Win32 error met, for the log
        self._names: dict[str, str] = {}
        self._computer: str | None = None

    def __call__(self) -> tuple[str, str] | None:
        session = self.kernel32.WTSGetActiveConsoleSessionId()
        if session == NO_CONSOLE_SESSION:
            return None  # the console is between sessions (switching user, at boot)
        user = self._session_string(session, WTS_USER_NAME)
        if not user:
            return None  # a failed query, or the logon screen: nobody at the desk
        domain = self._session_string(session, WTS_DOMAIN_NAME) or ""
        login = f"{domain}\\{user}" if domain else user
        name = self._names.get(login)
        if name is None:
            name = self._display_name(domain, user, login)
            if name:  # a failure is asked again next time; a success is kept
                if len(self._names) >= NAME_CACHE_MAX:
                    self._names.pop(next(iter(self._names)))
                self._names[login] = name
        return login, name or login

    def _session_string(self, session: int, info_class: int) -> str | None:
        buf = ctypes.c_void_p()
        size = wintypes.DWORD()
        if not self.wtsapi32.WTSQuerySessionInformationW(
            WTS_CURRENT_SERVER_HANDLE, session, info_class, ctypes.byref(buf), ctypes.byref(size)
        ):
            self.error = self.last_error()
            return None
        try:
            return ctypes.wstring_at(buf.value) if buf.value else ""
        finally:
            if buf.value:
                self.wtsapi32.WTSFreeMemory(buf)

    def _display_name(self, domain: str, user: str, login: str) -> str:
        kind = domain.upper()
        if kind == ENTRA_DOMAIN:
            return self._entra_name(login)
        if not domain or kind == self._computer_name():
            return self._local_name(user)
        return self._translated_name(login)

    def _computer_name(self) -> str:
        if self._computer is None:
            size = wintypes.DWORD(MAX_COMPUTERNAME_LENGTH + 1)
            buf = ctypes.create_unicode_buffer(size.value)
            ok = self.kernel32.GetComputerNameW(buf, ctypes.byref(size))
            self._computer = buf.value.upper() if ok else ""
        return self._computer

    def _local_name(self, user: str) -> str:
        buf = ctypes.c_void_p()
        status = self.netapi32.NetUserGetInfo(None, user, 10, ctypes.byref(buf))
        if status != NERR_SUCCESS:
            self.error = status  # NET_API_STATUS is the error itself, not GetLastError
            return ""
        try:
            if not buf.value:
                return ""
            info = USER_INFO_10.from_address(buf.value)
            return (info.usri10_full_name or "").strip()
        finally:
            if buf.value:
                self.netapi32.NetApiBufferFree(buf)

    def _translated_name(self, login: str) -> str:
        size = wintypes.ULONG(128)
        for _ in range(2):  # the second time with the size the first one asked for
            buf = ctypes.create_unicode_buffer(size.value)
            if self.secur32.TranslateNameW(login, NAME_SAM_COMPATIBLE, NAME_DISPLAY, buf, ctypes.byref(size)):
                return buf.value.strip()
            self.error = self.last_error()
            if self.error not in (ERROR_INSUFFICIENT_BUFFER, ERROR_MORE_DATA) or size.value > 4096:
                return ""  # no DC in reach (off the VPN), or no such name: the login will do
        return ""

    def _entra_name(self, login: str) -> str:
        sid = self._sid_string(login)
        if not sid:
            return ""
        return (self.registry(IDENTITY_CACHE.format(sid=sid), "DisplayName") or "").strip()

    def _sid_string(self, login: str) -> str:
        sid_size, dom_size, use = wintypes.DWORD(0), wintypes.DWORD(0), ctypes.c_int()
        # First call with no buffers: fails with ERROR_INSUFFICIENT_BUFFER and gives the sizes.
        self.advapi32.LookupAccountNameW(
            None, login, None, ctypes.byref(sid_size), None, ctypes.byref(dom_size), ctypes.byref(use)
        )
        if not sid_size.value or sid_size.value > 256 or dom_size.value > 1024:
            self.error = self.last_error()
            return ""
        sid = ctypes.create_string_buffer(sid_size.value)
        dom = ctypes.create_unicode_buffer(dom_size.value)
        if not self.advapi32.LookupAccountNameW(
            None, login, sid, ctypes.byref(sid_size), dom, ctypes.byref(dom_size), ctypes.byref(use)
        ):
            self.error = self.last_error()
            return ""
        text = ctypes.c_void_p()
        if not self.advapi32.ConvertSidToStringSidW(sid, ctypes.byref(text)):
            self.error = self.last_error()
            return ""
        try:
            return ctypes.wstring_at(text.value) if text.value else ""
        finally:
            if text.value:
                self.kernel32.LocalFree(text)


_reader: ConsoleUsers | None = None


def _load() -> ConsoleUsers:
    if sys.platform != "win32":
        raise OSError("the WTS, NetAPI and LSA DLLs exist on Windows only")
    dll = {
        n: ctypes.WinDLL(n, use_last_error=True) for n in ("kernel32", "wtsapi32", "netapi32", "secur32", "advapi32")
    }
    _declare(dll["kernel32"], dll["wtsapi32"], dll["netapi32"], dll["secur32"], dll["advapi32"])
    return ConsoleUsers(
        dll["kernel32"],
        dll["wtsapi32"],
        dll["netapi32"],
        dll["secur32"],
        dll["advapi32"],
        ctypes.get_last_error,
        _registry_value,
    )


def console_user() -> tuple[str, str] | None:
    """(login ``DOMAIN\\user``, display name) of the console session's user; None at the logon screen."""
    global _reader
    if _reader is None:
        _reader = _load()
    return _reader()
