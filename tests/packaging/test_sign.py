"""packaging/sign.sh: Authenticode signatures on the executables and the MSI, with a throwaway test key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import PACKAGING, require_tool

pytestmark = pytest.mark.packaging

SIGN = PACKAGING / "sign.sh"


@pytest.fixture(scope="module")
def test_key(tmp_path_factory) -> tuple[Path, Path, str]:
    """A self-signed code-signing certificate as PKCS#12: (pfx, certificate, password)."""
    openssl = require_tool("openssl")
    d = tmp_path_factory.mktemp("key")
    password = "test-only-password"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(d / "key.pem"),
            "-out",
            str(d / "cert.pem"),
            "-days",
            "2",
            "-subj",
            "/CN=cxpulse test signing",
            "-addext",
            "extendedKeyUsage=codeSigning",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            openssl,
            "pkcs12",
            "-export",
            "-inkey",
            str(d / "key.pem"),
            "-in",
            str(d / "cert.pem"),
            "-out",
            str(d / "sign.pfx"),
            "-passout",
            f"pass:{password}",
        ],
        check=True,
        capture_output=True,
    )
    return d / "sign.pfx", d / "cert.pem", password


def stage(tmp_path: Path) -> Path:
    sys.path.insert(0, str(PACKAGING / "windows"))
    try:
        import placeholder_pe
    finally:
        sys.path.remove(str(PACKAGING / "windows"))
    return placeholder_pe.stage(tmp_path / "app")


def verify(path: Path, cert: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["osslsigncode", "verify", "-CAfile", str(cert), "-in", str(path)], capture_output=True, text=True
    )


def test_without_keys_files_stay_unsigned_and_it_says_so(tmp_path):
    exe = stage(tmp_path) / "cxpulse.exe"
    before = exe.read_bytes()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXPULSE_SIGN")}
    r = subprocess.run([str(SIGN), str(exe)], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "unsigned" in r.stderr
    assert exe.read_bytes() == before


def test_signs_executables_and_msi(tmp_path, test_key):
    require_tool("osslsigncode")
    require_tool("wixl")
    require_tool("msiinfo", "msitools")
    pfx, cert, password = test_key
    env = {**os.environ, "CXPULSE_SIGN_PFX": str(pfx), "CXPULSE_SIGN_PASS": password}
    exe = stage(tmp_path) / "cxpulse.exe"
    r = subprocess.run([str(SIGN), str(exe)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    v = verify(exe, cert)
    assert v.returncode == 0 and "Signature verification: ok" in v.stdout, v.stdout + v.stderr
    # build-msi.sh signs the executables it packs and the MSI itself.
    r = subprocess.run(
        [str(PACKAGING / "windows" / "build-msi.sh"), "--placeholders", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("sign: signed") == 3, r.stderr
    msi = Path(r.stdout.strip().splitlines()[-1])
    v = verify(msi, cert)
    assert v.returncode == 0 and "Signature verification: ok" in v.stdout, v.stdout + v.stderr
    # A wrong password fails the build instead of shipping unsigned.
    bad = {**env, "CXPULSE_SIGN_PASS": "wrong"}
    assert subprocess.run([str(SIGN), str(exe)], capture_output=True, env=bad).returncode != 0
