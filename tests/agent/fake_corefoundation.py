"""A fake CoreFoundation + SystemConfiguration that plays the C calls the macOS readers make.

Objects are integer handles above 2**32 (a reference truncated to 32 bits, the classic ctypes
crash on macOS, finds nothing and is recorded as an error). Every result of a ``*Create*``/``*Copy*``
call is owned by the caller and must be CFRelease'd exactly once; ``leaks()`` lists those that were
not, ``errors`` records over-releases, releases of borrowed (``*Get*``) references and use after
release. Out-parameters are written through the ctypes pointers the code passes, as the C library
would.
"""

from __future__ import annotations

import ctypes
import re
from typing import Any

UTF8 = 0x08000100
STRING, NUMBER, BOOLEAN, ARRAY, DICT, STORE, IFACE = 7, 22, 21, 19, 18, 301, 302


class FakeFrameworks:
    def __init__(
        self,
        store: dict[str, Any] | None = None,
        proxies: dict[str, Any] | None = None,
        interfaces: list[tuple[str | None, str]] | None = None,
        console: str | None = None,
        console_uid: int = 501,
    ) -> None:
        self.store_values = store or {}
        self.proxies = proxies
        self.interfaces = interfaces or []
        self.console = console
        self.console_uid = console_uid
        self.objects: dict[int, tuple[int, Any]] = {}
        self.refcount: dict[int, int] = {}  # owned handles only
        self.dead: set[int] = set()
        self.errors: list[str] = []
        self.calls: list[str] = []
        self._next = 0x7F00_0000_1000

    # -- bookkeeping --------------------------------------------------------------------------
    def _new(self, type_id: int, value: Any, owned: bool) -> int:
        self._next += 0x10
        handle = self._next
        self.objects[handle] = (type_id, value)
        if owned:
            self.refcount[handle] = 1
        return handle

    def make(self, value: Any, owned: bool = True) -> int:
        """A CF object for a Python value (children are borrowed from their container)."""
        if isinstance(value, bool):
            return self._new(BOOLEAN, value, owned)
        if isinstance(value, (int, float)):
            return self._new(NUMBER, value, owned)
        if isinstance(value, str):
            return self._new(STRING, value, owned)
        if isinstance(value, list):
            return self._new(ARRAY, [self.make(v, False) for v in value], owned)
        if isinstance(value, dict):
            return self._new(DICT, [(self.make(k, False), self.make(v, False)) for k, v in value.items()], owned)
        raise TypeError(value)

    def _get(self, handle: Any, *types: int) -> Any:
        if handle in self.dead:
            self.errors.append(f"use after release: {handle:#x}")
        if handle not in self.objects:
            self.errors.append(f"unknown reference {handle!r} (truncated pointer?)")
            raise OSError("bad reference")
        type_id, value = self.objects[handle]
        if types and type_id not in types:
            self.errors.append(f"{handle:#x} has type {type_id}, wanted {types}")
        return value

    def leaks(self) -> list[int]:
        return [h for h, n in self.refcount.items() if n > 0]

    # -- CoreFoundation ----------------------------------------------------------------------
    def CFRelease(self, handle: int) -> None:
        self.calls.append("CFRelease")
        if handle not in self.refcount:
            self.errors.append(f"release of a borrowed reference {handle:#x}")
        elif self.refcount[handle] <= 0:
            self.errors.append(f"over-release {handle:#x}")
        else:
            self.refcount[handle] -= 1
            if self.refcount[handle] == 0:
                self.dead.add(handle)

    def CFGetTypeID(self, handle: int) -> int:
        self._get(handle)
        return self.objects[handle][0]

    def CFStringGetTypeID(self) -> int:
        return STRING

    def CFNumberGetTypeID(self) -> int:
        return NUMBER

    def CFBooleanGetTypeID(self) -> int:
        return BOOLEAN

    def CFArrayGetTypeID(self) -> int:
        return ARRAY

    def CFDictionaryGetTypeID(self) -> int:
        return DICT

    def CFStringCreateWithCString(self, alloc: Any, data: bytes, encoding: int) -> int:
        self.calls.append("CFStringCreateWithCString")
        assert alloc is None and encoding == UTF8
        return self._new(STRING, data.decode("utf-8"), True)

    def CFStringGetLength(self, handle: int) -> int:
        return len(self._get(handle, STRING).encode("utf-16-le")) // 2

    def CFStringGetMaximumSizeForEncoding(self, length: int, encoding: int) -> int:
        assert encoding == UTF8
        return length * 3  # what CoreFoundation answers for UTF-8: 3 bytes per UTF-16 unit

    def CFStringGetCString(self, handle: int, buf: Any, size: int, encoding: int) -> int:
        data = self._get(handle, STRING).encode("utf-8") + b"\0"
        if encoding != UTF8 or len(data) > size or ctypes.sizeof(buf) < size:
            return 0
        ctypes.memmove(buf, data, len(data))
        return 1

    def CFNumberIsFloatType(self, handle: int) -> int:
        return int(isinstance(self._get(handle, NUMBER), float))

    def CFNumberGetValue(self, handle: int, number_type: int, out: Any) -> int:
        value = self._get(handle, NUMBER)
        if number_type == 4:  # kCFNumberSInt64Type
            assert isinstance(out.contents, ctypes.c_int64)
            out.contents.value = int(value)
        elif number_type == 6:  # kCFNumberFloat64Type
            assert isinstance(out.contents, ctypes.c_double)
            out.contents.value = float(value)
        else:
            return 0
        return 1

    def CFBooleanGetValue(self, handle: int) -> int:
        return int(self._get(handle, BOOLEAN))

    def CFArrayGetCount(self, handle: int) -> int:
        return len(self._get(handle, ARRAY))

    def CFArrayGetValueAtIndex(self, handle: int, index: int) -> int:
        return self._get(handle, ARRAY)[index]

    def CFDictionaryGetCount(self, handle: int) -> int:
        return len(self._get(handle, DICT))

    def CFDictionaryGetKeysAndValues(self, handle: int, keys: Any, values: Any) -> None:
        for i, (k, v) in enumerate(self._get(handle, DICT)):
            keys[i], values[i] = k, v

    # -- SystemConfiguration -----------------------------------------------------------------
    def _text(self, handle: int) -> str:
        return self._get(handle, STRING)

    def SCDynamicStoreCreate(self, alloc: Any, name: int, callout: Any, context: Any) -> int:
        self.calls.append("SCDynamicStoreCreate")
        assert alloc is None and callout is None and context is None and self._text(name)
        return self._new(STORE, None, True)

    def SCDynamicStoreCopyValue(self, store: int, key: int) -> int | None:
        self.calls.append(f"SCDynamicStoreCopyValue {self._text(key)}")
        self._get(store, STORE)
        value = self.store_values.get(self._text(key))
        return None if value is None else self.make(value)

    def SCDynamicStoreCopyKeyList(self, store: int, pattern: int) -> int:
        self.calls.append("SCDynamicStoreCopyKeyList")
        self._get(store, STORE)
        regex = re.compile(self._text(pattern))
        return self.make([k for k in self.store_values if regex.fullmatch(k)])

    def SCDynamicStoreCopyProxies(self, store: Any) -> int | None:
        self.calls.append("SCDynamicStoreCopyProxies")
        assert store is None
        return None if self.proxies is None else self.make(self.proxies)

    def SCDynamicStoreCopyConsoleUser(self, store: Any, uid: Any, gid: Any) -> int | None:
        self.calls.append("SCDynamicStoreCopyConsoleUser")
        assert store is None
        if self.console is None:
            return None
        uid.contents.value, gid.contents.value = self.console_uid, 20
        return self._new(STRING, self.console, True)

    def SCNetworkInterfaceCopyAll(self) -> int:
        self.calls.append("SCNetworkInterfaceCopyAll")
        items = [self._new(IFACE, (bsd, sc_type), False) for bsd, sc_type in self.interfaces]
        return self._new(ARRAY, items, True)

    def SCNetworkInterfaceGetBSDName(self, iface: int) -> int | None:
        bsd, _ = self._get(iface, IFACE)
        return None if bsd is None else self._new(STRING, bsd, False)

    def SCNetworkInterfaceGetInterfaceType(self, iface: int) -> int:
        _, sc_type = self._get(iface, IFACE)
        return self._new(STRING, sc_type, False)
