"""The Windows console-user reader, driven through fake kernel32/wtsapi32/netapi32/secur32/advapi32.

The fakes behave as the Microsoft documentation says: WTSQuerySessionInformationW hands out a
buffer to free with WTSFreeMemory, TranslateNameW fails with ERROR_INSUFFICIENT_BUFFER and the
needed size when the buffer is short, LookupAccountNameW is called once for the sizes, and so on.
"""

from __future__ import annotations

import ctypes

import pytest

from cxpulse.agent import desk_user_windows as w

ERROR_ACCESS_DENIED = 5
ERROR_NO_SUCH_DOMAIN = 1355
NERR_USER_NOT_FOUND = 2221


def _out(ref):
    """The object a ctypes.byref() points at (what the real DLL writes through)."""
    return ref._obj


class FakeWindows:
    """One desk: a console session, its user, and the directory answers, with a call log."""

    def __init__(self, session=1, user="msilva", domain="CORP", computer="DESK-12"):
        self.session, self.user, self.domain, self.computer = session, user, domain, computer
        self.display = {"CORP\\msilva": "Maria Silva"}  # what the domain's directory says
        self.local = {}  # local accounts: name -> full name
        self.sids = {}  # LookupAccountNameW: login -> SID string
        self.registry_values = {}  # (subkey, value) -> str
        self.wts_error = 0  # non-zero: WTSQuerySessionInformationW fails with it
        self.translate_error = 0
        self.error = 0
        self.calls: list[str] = []
        self.live: dict[int, object] = {}  # buffers handed out and not yet freed
        self.kernel32, self.wtsapi32, self.netapi32 = self, self, self
        self.secur32, self.advapi32 = self, self

    def reader(self) -> w.ConsoleUsers:
        return w.ConsoleUsers(
            self.kernel32,
            self.wtsapi32,
            self.netapi32,
            self.secur32,
            self.advapi32,
            lambda: self.error,
            lambda key, value: self.registry_values.get((key, value)),
        )

    def _hand_out(self, obj) -> int:
        addr = ctypes.addressof(obj)
        self.live[addr] = obj
        return addr

    # kernel32
    def WTSGetActiveConsoleSessionId(self):
        self.calls.append("WTSGetActiveConsoleSessionId")
        return self.session

    def GetComputerNameW(self, buf, size):
        self.calls.append("GetComputerNameW")
        n = _out(size)
        if n.value < len(self.computer) + 1:
            n.value = len(self.computer) + 1
            self.error = 111  # ERROR_BUFFER_OVERFLOW
            return 0
        buf.value = self.computer
        n.value = len(self.computer)
        return 1

    def LocalFree(self, p):
        self.calls.append("LocalFree")
        assert self.live.pop(p.value) is not None
        return None

    # wtsapi32
    def WTSQuerySessionInformationW(self, server, session, info_class, buf, size):
        assert server is None  # WTS_CURRENT_SERVER_HANDLE
        assert session == self.session
        self.calls.append(f"WTSQuerySessionInformationW({info_class})")
        if self.wts_error:
            self.error = self.wts_error
            return 0
        text = {w.WTS_USER_NAME: self.user, w.WTS_DOMAIN_NAME: self.domain}[info_class]
        s = ctypes.create_unicode_buffer(text)
        _out(buf).value = self._hand_out(s)
        _out(size).value = ctypes.sizeof(s)
        return 1

    def WTSFreeMemory(self, p):
        self.calls.append("WTSFreeMemory")
        assert self.live.pop(p.value) is not None

    # secur32
    def TranslateNameW(self, name, fmt_in, fmt_out, buf, size):
        assert (fmt_in, fmt_out) == (w.NAME_SAM_COMPATIBLE, w.NAME_DISPLAY)
        self.calls.append(f"TranslateNameW({name})")
        if self.translate_error:
            self.error = self.translate_error
            return 0
        if name not in self.display:
            self.error = 1317  # ERROR_NO_SUCH_USER
            return 0
        value = self.display[name]
        n = _out(size)
        if len(buf) < len(value) + 1 or n.value < len(value) + 1:
            n.value = len(value) + 1
            self.error = w.ERROR_INSUFFICIENT_BUFFER
            return 0
        buf.value = value
        n.value = len(value) + 1
        return 1

    # netapi32
    def NetUserGetInfo(self, server, user, level, buf):
        assert server is None and level == 10
        self.calls.append(f"NetUserGetInfo({user})")
        if user not in self.local:
            return NERR_USER_NOT_FOUND
        strings = [ctypes.create_unicode_buffer(s) for s in (user, "", "", self.local[user])]
        info = w.USER_INFO_10(*[ctypes.cast(s, ctypes.c_wchar_p) for s in strings])
        info._keep = strings
        _out(buf).value = self._hand_out(info)
        return 0

    def NetApiBufferFree(self, p):
        self.calls.append("NetApiBufferFree")
        assert self.live.pop(p.value) is not None
        return 0

    # advapi32
    def LookupAccountNameW(self, system, login, sid, sid_size, dom, dom_size, use):
        self.calls.append(f"LookupAccountNameW({login}, {'sized' if sid is not None else 'sizes'})")
        if login not in self.sids:
            self.error = 1332  # ERROR_NONE_MAPPED
            return 0
        if sid is None or _out(sid_size).value < 28:
            _out(sid_size).value, _out(dom_size).value = 28, len("AzureAD") + 1
            self.error = w.ERROR_INSUFFICIENT_BUFFER
            return 0
        dom.value = "AzureAD"
        return 1

    def ConvertSidToStringSidW(self, sid, out):
        self.calls.append("ConvertSidToStringSidW")
        login = next(k for k in self.sids)
        s = ctypes.create_unicode_buffer(self.sids[login])
        _out(out).value = self._hand_out(s)
        return 1


def test_user_info_10_layout_x64():
    # lmaccess.h USER_INFO_10: four LPWSTR; 8 bytes each on x64 -> 32 bytes, full name at offset 24.
    if ctypes.sizeof(ctypes.c_void_p) != 8:
        pytest.skip("x64 layout")
    assert ctypes.sizeof(w.USER_INFO_10) == 32
    assert w.USER_INFO_10.usri10_full_name.offset == 24


def test_documented_constants():
    # WtsApi32.h WTS_INFO_CLASS: WTSUserName = 5, WTSDomainName = 7; secext.h EXTENDED_NAME_FORMAT:
    # NameSamCompatible = 2, NameDisplay = 3; WTSGetActiveConsoleSessionId: 0xFFFFFFFF = no session.
    assert (w.WTS_USER_NAME, w.WTS_DOMAIN_NAME) == (5, 7)
    assert (w.NAME_SAM_COMPATIBLE, w.NAME_DISPLAY) == (2, 3)
    assert w.NO_CONSOLE_SESSION == 0xFFFFFFFF


def test_domain_user_gets_the_directory_display_name():
    win = FakeWindows()
    read = win.reader()
    assert read() == ("CORP\\msilva", "Maria Silva")
    assert win.calls == [
        "WTSGetActiveConsoleSessionId",
        "WTSQuerySessionInformationW(5)",
        "WTSFreeMemory",
        "WTSQuerySessionInformationW(7)",
        "WTSFreeMemory",
        "GetComputerNameW",
        "TranslateNameW(CORP\\msilva)",
    ]
    assert not win.live  # every WTS buffer freed
    win.calls.clear()
    assert read() == ("CORP\\msilva", "Maria Silva")
    assert not any(c.startswith("TranslateNameW") for c in win.calls)  # the name is kept per login


def test_no_console_session_is_nobody():
    win = FakeWindows(session=0xFFFFFFFF)
    assert win.reader()() is None
    assert win.calls == ["WTSGetActiveConsoleSessionId"]


def test_logon_screen_is_nobody():
    win = FakeWindows(user="", domain="")
    assert win.reader()() is None
    assert not win.live


def test_wts_access_denied_is_nobody_not_the_service_account():
    win = FakeWindows()
    win.wts_error = ERROR_ACCESS_DENIED
    read = win.reader()
    assert read() is None
    assert read.error == ERROR_ACCESS_DENIED


def test_non_ascii_display_name():
    win = FakeWindows(user="jconceicao")
    win.display["CORP\\jconceicao"] = "João Conceição"
    assert win.reader()() == ("CORP\\jconceicao", "João Conceição")


def test_long_display_name_takes_a_second_call_with_the_size_asked():
    name = "Maria " + "da Silva " * 20 + "Conceição"  # longer than the first 128-character buffer
    win = FakeWindows()
    win.display["CORP\\msilva"] = name
    read = win.reader()
    assert read() == ("CORP\\msilva", name)
    assert [c for c in win.calls if c.startswith("TranslateNameW")] == ["TranslateNameW(CORP\\msilva)"] * 2


def test_domain_controller_out_of_reach_falls_back_to_the_login_and_asks_again():
    win = FakeWindows()
    win.translate_error = ERROR_NO_SUCH_DOMAIN
    read = win.reader()
    assert read() == ("CORP\\msilva", "CORP\\msilva")
    assert read.error == ERROR_NO_SUCH_DOMAIN
    win.translate_error = 0  # back on the VPN
    assert read() == ("CORP\\msilva", "Maria Silva")


def test_local_account_full_name_from_netusergetinfo():
    win = FakeWindows(user="maria", domain="DESK-12")
    win.local["maria"] = "Maria Silva"
    assert win.reader()() == ("DESK-12\\maria", "Maria Silva")
    assert "NetUserGetInfo(maria)" in win.calls and "NetApiBufferFree" in win.calls
    assert not any(c.startswith("TranslateNameW") for c in win.calls)
    assert not win.live


def test_local_account_without_full_name_is_its_login():
    win = FakeWindows(user="kiosk", domain="desk-12")  # the domain's case differs from the computer name's
    assert win.reader()() == ("desk-12\\kiosk", "desk-12\\kiosk")
    assert "NetUserGetInfo(kiosk)" in win.calls


def test_entra_account_display_name_from_the_identity_cache():
    win = FakeWindows(user="MariaSilva", domain="AzureAD")
    sid = "S-1-12-1-1111111111-2222222222-3333333333-4444444444"
    win.sids["AzureAD\\MariaSilva"] = sid
    win.registry_values[(rf"SOFTWARE\Microsoft\IdentityStore\Cache\{sid}\IdentityCache\{sid}", "DisplayName")] = (
        "Maria Silva"
    )
    assert win.reader()() == ("AzureAD\\MariaSilva", "Maria Silva")
    assert [c for c in win.calls if c.startswith("Lookup")] == [
        "LookupAccountNameW(AzureAD\\MariaSilva, sizes)",
        "LookupAccountNameW(AzureAD\\MariaSilva, sized)",
    ]
    assert "LocalFree" in win.calls and not win.live


def test_entra_account_not_in_the_cache_is_its_login():
    win = FakeWindows(user="MariaSilva", domain="AzureAD")
    assert win.reader()() == ("AzureAD\\MariaSilva", "AzureAD\\MariaSilva")


def test_importing_loads_no_dll():
    # The module imports on Linux for these tests: DLLs are loaded on the first console_user() only.
    assert w._reader is None
