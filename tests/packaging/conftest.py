"""Builds shared by the packaging tests: the frozen agent (once per session) and the .deb made from it.

The PyInstaller build takes about 40 s, so every test that needs it shares one; the outputs live in
a session temporary directory. Tools this machine may lack skip (or fail under
CXPULSE_REQUIRE_ALL=1) with the install line in the reason.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.requirements import require

REPO = Path(__file__).resolve().parents[2]
PACKAGING = REPO / "packaging"
APT_HINT = "apt-get install wixl msitools lintian shellcheck patchelf osslsigncode"


def require_tool(name: str, package: str | None = None) -> str:
    path = shutil.which(name)
    require(path is not None, f"needs {name} (apt-get install {package or name})")
    return path


def require_pyinstaller() -> None:
    require(importlib.util.find_spec("PyInstaller") is not None, "needs PyInstaller (pip install -e '.[packaging]')")


def du_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.fixture(scope="session")
def frozen_agent(tmp_path_factory) -> Path:
    """The PyInstaller folder (cxpulse, cxpulse-trace, _internal/), built once per session."""
    require_pyinstaller()
    if sys.platform.startswith("linux"):
        require_tool("patchelf")  # without it the bundle keeps the build machine's RUNPATHs
    sys.path.insert(0, str(PACKAGING))
    try:
        import freeze
    finally:
        sys.path.remove(str(PACKAGING))
    dist = tmp_path_factory.mktemp("frozen")
    started = time.monotonic()
    out = freeze.freeze(dist, work=dist / "work")
    print(f"\nfrozen agent: {du_bytes(out) / 1e6:.1f} MB in {out} (built in {time.monotonic() - started:.0f} s)")
    return out


@pytest.fixture(scope="session")
def deb(frozen_agent, tmp_path_factory) -> Path:
    require_tool("dpkg-deb", "dpkg")
    out = tmp_path_factory.mktemp("deb")
    r = subprocess.run(
        [str(PACKAGING / "linux" / "build-deb.sh"), "--app", str(frozen_agent), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    path = Path(r.stdout.strip().splitlines()[-1])
    print(f"\ndeb: {path.name} {path.stat().st_size / 1e6:.1f} MB")
    return path
