"""A small CoreFoundation / SystemConfiguration bridge over ctypes, for the macOS readers.
Every CF reference released once under the Create/Copy rule; frameworks loaded on first use, never at import.
Design notes: docs/agent-internals.md, "agent/corefoundation_macos.py".
"""

from __future__ import annotations

import ctypes
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["CF", "MAX_DEPTH", "MAX_ITEMS", "load"]

_CF_PATH = "/System/Library/Frameworks/CoreFoundation.framework/CoreFoundation"
_SC_PATH = "/System/Library/Frameworks/SystemConfiguration.framework/SystemConfiguration"

# CFStringBuiltInEncodings (CFString.h) and CFNumberType (CFNumber.h).
kCFStringEncodingUTF8 = 0x08000100
kCFNumberSInt64Type = 4
kCFNumberFloat64Type = 6

# Conversions are bounded: configd's answers are small, and a corrupted or hostile value must not
# make the agent walk a huge tree. Past a bound the rest of a container is left out.
MAX_DEPTH = 8
MAX_ITEMS = 512
MAX_STRING_BYTES = 64 * 1024

_ref = ctypes.c_void_p
_CFIndex = ctypes.c_long  # signed long: 64-bit on both x86_64 and arm64 macOS
_Boolean = ctypes.c_ubyte  # CoreFoundation's Boolean is an unsigned char
_CFTypeID = ctypes.c_ulong

# name -> (restype, argtypes). Everything that is or takes a CF object is c_void_p.
_CF_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "CFRelease": (None, [_ref]),
    "CFGetTypeID": (_CFTypeID, [_ref]),
    "CFStringGetTypeID": (_CFTypeID, []),
    "CFNumberGetTypeID": (_CFTypeID, []),
    "CFBooleanGetTypeID": (_CFTypeID, []),
    "CFArrayGetTypeID": (_CFTypeID, []),
    "CFDictionaryGetTypeID": (_CFTypeID, []),
    "CFStringCreateWithCString": (_ref, [_ref, ctypes.c_char_p, ctypes.c_uint32]),
    "CFStringGetLength": (_CFIndex, [_ref]),
    "CFStringGetMaximumSizeForEncoding": (_CFIndex, [_CFIndex, ctypes.c_uint32]),
    "CFStringGetCString": (_Boolean, [_ref, ctypes.c_char_p, _CFIndex, ctypes.c_uint32]),
    "CFNumberIsFloatType": (_Boolean, [_ref]),
    "CFNumberGetValue": (_Boolean, [_ref, _CFIndex, ctypes.c_void_p]),
    "CFBooleanGetValue": (_Boolean, [_ref]),
    "CFArrayGetCount": (_CFIndex, [_ref]),
    "CFArrayGetValueAtIndex": (_ref, [_ref, _CFIndex]),
    "CFDictionaryGetCount": (_CFIndex, [_ref]),
    "CFDictionaryGetKeysAndValues": (None, [_ref, ctypes.POINTER(_ref), ctypes.POINTER(_ref)]),
}
_SC_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "SCDynamicStoreCreate": (_ref, [_ref, _ref, ctypes.c_void_p, ctypes.c_void_p]),
    "SCDynamicStoreCopyValue": (_ref, [_ref, _ref]),
    "SCDynamicStoreCopyKeyList": (_ref, [_ref, _ref]),
    "SCDynamicStoreCopyProxies": (_ref, [_ref]),
    "SCDynamicStoreCopyConsoleUser": (_ref, [_ref, ctypes.POINTER(ctypes.c_uint32), ctypes.POINTER(ctypes.c_uint32)]),
    "SCNetworkInterfaceCopyAll": (_ref, []),
    "SCNetworkInterfaceGetBSDName": (_ref, [_ref]),
    "SCNetworkInterfaceGetInterfaceType": (_ref, [_ref]),
}


class CF:
    """The two frameworks with their C functions declared, plus CF <-> Python conversions.

    ``cf`` and ``sc`` are the loaded libraries (or, in tests, objects with the same function names).
    Methods never raise for a NULL reference: NULL reads as None.
    """

    def __init__(self, cf: Any, sc: Any) -> None:
        self.cf = cf
        self.sc = sc
        self._type_ids: dict[int, str] | None = None

    # -- ownership -------------------------------------------------------------------------
    def release(self, ref: int | None) -> None:
        """CFRelease for a reference we own; CFRelease(NULL) crashes, so NULL is skipped."""
        if ref:
            self.cf.CFRelease(ref)

    @contextmanager
    def owned(self, ref: int | None) -> Iterator[int | None]:
        """``with cf.owned(SomethingCopy(...)) as ref:``: released on the way out, whatever happens."""
        try:
            yield ref
        finally:
            self.release(ref)

    # -- Python -> CF ----------------------------------------------------------------------
    def string(self, text: str) -> int | None:
        """A new CFString (the caller owns it: use with ``owned``), or None if it cannot be made."""
        return self.cf.CFStringCreateWithCString(None, text.encode("utf-8"), kCFStringEncodingUTF8) or None

    # -- CF -> Python ----------------------------------------------------------------------
    def to_python(self, ref: int | None, depth: int = 0) -> Any:
        """str / int / float / bool / list / dict for the property-list types, None for the rest.

        Bounded by MAX_DEPTH, MAX_ITEMS per container and MAX_STRING_BYTES per string. Does not
        release ``ref``: the caller owns it (or does not), as the function that returned it says.
        """
        if not ref or depth > MAX_DEPTH:
            return None
        kind = self._kinds().get(self.cf.CFGetTypeID(ref))
        if kind == "string":
            return self.read_string(ref)
        if kind == "boolean":
            return bool(self.cf.CFBooleanGetValue(ref))
        if kind == "number":
            return self._number(ref)
        if kind == "array":
            count = min(max(int(self.cf.CFArrayGetCount(ref)), 0), MAX_ITEMS)
            return [self.to_python(self.cf.CFArrayGetValueAtIndex(ref, i), depth + 1) for i in range(count)]
        if kind == "dictionary":
            return self._dictionary(ref, depth)
        return None  # CFData, CFDate, ...: nothing the readers use

    def read_string(self, ref: int | None) -> str | None:
        """The text of a CFString, as UTF-8 through a buffer sized by the documented maximum."""
        if not ref:
            return None
        length = int(self.cf.CFStringGetLength(ref))
        size = int(self.cf.CFStringGetMaximumSizeForEncoding(length, kCFStringEncodingUTF8)) + 1
        if length < 0 or size <= 0 or size > MAX_STRING_BYTES:
            return None
        buf = ctypes.create_string_buffer(size)
        if not self.cf.CFStringGetCString(ref, buf, size, kCFStringEncodingUTF8):
            return None
        return buf.value.decode("utf-8", errors="replace")

    def _number(self, ref: int) -> int | float | None:
        if self.cf.CFNumberIsFloatType(ref):
            d = ctypes.c_double()
            ok = self.cf.CFNumberGetValue(ref, kCFNumberFloat64Type, ctypes.pointer(d))
            return d.value if ok else None
        v = ctypes.c_int64()
        ok = self.cf.CFNumberGetValue(ref, kCFNumberSInt64Type, ctypes.pointer(v))
        return v.value if ok else None

    def _dictionary(self, ref: int, depth: int) -> dict[Any, Any]:
        count = int(self.cf.CFDictionaryGetCount(ref))
        if count <= 0:
            return {}
        # GetKeysAndValues writes all `count` entries: the arrays must hold them all, bound or not.
        if count > 16 * MAX_ITEMS:
            return {}
        keys = (_ref * count)()
        values = (_ref * count)()
        self.cf.CFDictionaryGetKeysAndValues(ref, keys, values)
        out: dict[Any, Any] = {}
        for i in range(min(count, MAX_ITEMS)):
            key = self.to_python(keys[i], depth + 1)
            if isinstance(key, (str, int, float, bool)):
                out[key] = self.to_python(values[i], depth + 1)
        return out

    def _kinds(self) -> dict[int, str]:
        if self._type_ids is None:
            cf = self.cf
            self._type_ids = {
                cf.CFStringGetTypeID(): "string",
                cf.CFNumberGetTypeID(): "number",
                cf.CFBooleanGetTypeID(): "boolean",
                cf.CFArrayGetTypeID(): "array",
                cf.CFDictionaryGetTypeID(): "dictionary",
            }
        return self._type_ids

    # -- SystemConfiguration helpers -------------------------------------------------------
    def copy_store_value(self, store: int | None, key: str) -> Any:
        """SCDynamicStoreCopyValue for one key, as Python (None when absent)."""
        with self.owned(self.string(key)) as cf_key:
            if not cf_key:
                return None
            with self.owned(self.sc.SCDynamicStoreCopyValue(store, cf_key)) as value:
                return self.to_python(value)

    def copy_store_keys(self, store: int | None, pattern: str) -> list[str]:
        """SCDynamicStoreCopyKeyList for a regex pattern, as a bounded list of key strings."""
        with self.owned(self.string(pattern)) as cf_pattern:
            if not cf_pattern:
                return []
            with self.owned(self.sc.SCDynamicStoreCopyKeyList(store, cf_pattern)) as keys:
                found = self.to_python(keys)
        return [k for k in found if isinstance(k, str)] if isinstance(found, list) else []

    @contextmanager
    def store(self, name: str = "cxpulse-agent") -> Iterator[int | None]:
        """A short-lived SCDynamicStore session (no callback, no run loop), released on exit."""
        with self.owned(self.string(name)) as cf_name:
            with self.owned(self.sc.SCDynamicStoreCreate(None, cf_name, None, None) if cf_name else None) as s:
                yield s


def declare(cf_lib: Any, sc_lib: Any) -> None:
    """Set restype/argtypes on every function used, from the tables above."""
    for lib, table in ((cf_lib, _CF_SIGNATURES), (sc_lib, _SC_SIGNATURES)):
        for name, (restype, argtypes) in table.items():
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes


_lock = threading.Lock()
_loaded: CF | None = None
_failed = False


def load() -> CF | None:
    """The frameworks, loaded once per process; None off macOS or when loading fails (then never retried)."""
    global _loaded, _failed
    if _loaded is not None or _failed:
        return _loaded
    with _lock:
        if _loaded is None and not _failed:
            if sys.platform != "darwin":
                _failed = True
                return None
            try:
                cf_lib = ctypes.cdll.LoadLibrary(_CF_PATH)
                sc_lib = ctypes.cdll.LoadLibrary(_SC_PATH)
                declare(cf_lib, sc_lib)
                _loaded = CF(cf_lib, sc_lib)
            except (OSError, AttributeError):
                _failed = True
    return _loaded
