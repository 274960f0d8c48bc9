"""Stage a stand-in for the Windows agent folder, so the MSI can be built and checked on Linux.
Minimal valid PE32+ images under the real file names: enough for the MSI and Authenticode, not the agent.
Design notes: docs/installers.md, "packaging/windows/placeholder_pe.py".
"""

from __future__ import annotations

import struct
import sys
import zipfile
from pathlib import Path

__all__ = ["minimal_pe", "stage"]

_FILE_ALIGN, _SECTION_ALIGN = 0x200, 0x1000
_IMAGE_FILE_EXECUTABLE_IMAGE, _IMAGE_FILE_LARGE_ADDRESS_AWARE, _IMAGE_FILE_DLL = 0x0002, 0x0020, 0x2000
# HIGH_ENTROPY_VA | DYNAMIC_BASE | NX_COMPAT | TERMINAL_SERVER_AWARE, as a modern linker sets them.
_DLL_CHARACTERISTICS = 0x0020 | 0x0040 | 0x0100 | 0x8000


def minimal_pe(*, dll: bool = False, console: bool = True) -> bytes:
    """A 1 KiB x64 PE image whose entry point returns 0 (layout: PE/COFF specification)."""
    code = b"\x31\xc0\xc3"  # xor eax, eax ; ret
    dos = bytearray(0x40)
    dos[0:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, 0x40)  # e_lfanew: the PE header follows at once
    characteristics = _IMAGE_FILE_EXECUTABLE_IMAGE | _IMAGE_FILE_LARGE_ADDRESS_AWARE | (_IMAGE_FILE_DLL if dll else 0)
    coff = struct.pack("<HHIIIHH", 0x8664, 1, 0, 0, 0, 240, characteristics)
    optional = struct.pack(
        "<HBBIIIII"  # magic (PE32+), linker version, code/data sizes, entry point, base of code
        "QIIHHHHHHIIIIHH"  # image base .. dll characteristics
        "QQQQII",  # stack/heap reserve and commit, loader flags, number of data directories
        0x20B,
        14,
        0,
        _FILE_ALIGN,
        0,
        0,
        _SECTION_ALIGN,
        _SECTION_ALIGN,
        0x180000000 if dll else 0x140000000,
        _SECTION_ALIGN,
        _FILE_ALIGN,
        6,
        0,
        0,
        0,
        6,
        0,
        0,
        2 * _SECTION_ALIGN,
        _FILE_ALIGN,
        0,
        3 if console else 2,
        _DLL_CHARACTERISTICS,
        0x100000,
        0x1000,
        0x100000,
        0x1000,
        0,
        16,
    ) + bytes(16 * 8)  # data directories: no imports, no resources, no certificate yet
    section = struct.pack(
        "<8sIIIIIIHHI", b".text", len(code), _SECTION_ALIGN, _FILE_ALIGN, _FILE_ALIGN, 0, 0, 0, 0, 0x60000020
    )  # code, execute, read
    headers = bytes(dos) + b"PE\0\0" + coff + optional + section
    assert len(optional) == 240 and len(headers) <= _FILE_ALIGN
    return headers.ljust(_FILE_ALIGN, b"\0") + code.ljust(_FILE_ALIGN, b"\0")


# What a Windows one-folder build looks like, trimmed to one file of each kind.
_LAYOUT = {
    "cxpulse.exe": "exe",
    "cxpulse-trace.exe": "exe",
    "_internal/python311.dll": "dll",
    "_internal/VCRUNTIME140.dll": "dll",
    "_internal/_socket.pyd": "dll",
    "_internal/grpc/_cython/cygrpc.cp311-win_amd64.pyd": "dll",
    "_internal/psutil/_psutil_windows.pyd": "dll",
    "_internal/win32/servicemanager.pyd": "dll",
    "_internal/base_library.zip": "zip",
    "_internal/certifi/cacert.pem": "text",
}


def stage(dest: Path) -> Path:
    for rel, kind in _LAYOUT.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind in ("exe", "dll"):
            path.write_bytes(minimal_pe(dll=kind == "dll"))
        elif kind == "zip":
            with zipfile.ZipFile(path, "w") as z:
                z.writestr("placeholder.txt", "stand-in for the Windows build\n")
        else:
            path.write_text("# stand-in for the Windows build\n")
    return dest


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} DIR")
    print(stage(Path(sys.argv[1])))
