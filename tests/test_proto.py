"""The committed generated code matches the IDL, and the IDL passes buf lint (STANDARD)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.requirements import require

PROTO = Path(__file__).resolve().parent.parent / "proto"
GENERATED = ["telemetry_pb2.py", "telemetry_pb2.pyi", "telemetry_pb2_grpc.py"]


def test_generated_python_matches_the_idl(tmp_path):
    try:
        import grpc_tools  # noqa: F401
    except ImportError:
        require(False, "grpcio-tools is not installed (pip install -e '.[dev]')")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            str(PROTO),
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            str(PROTO / "cxpulse/v1/telemetry.proto"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    for name in GENERATED:
        fresh = (tmp_path / "cxpulse/v1" / name).read_text()
        committed = (PROTO / "cxpulse/v1" / name).read_text()
        assert fresh == committed, f"proto/cxpulse/v1/{name} is stale: run proto/generate.sh and commit"


def _buf() -> str | None:
    if os.environ.get("CXPULSE_BUF"):
        return os.environ["CXPULSE_BUF"]
    local = PROTO.parent / ".tools/node_modules/.bin/buf"
    return str(local) if local.exists() else shutil.which("buf")


def test_buf_lint_standard_passes():
    buf = _buf()
    require(buf is not None, "buf is not installed (.ci/run installs @bufbuild/buf from npm into .tools/)")
    r = subprocess.run([buf, "lint"], cwd=PROTO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    cfg = (PROTO / "buf.yaml").read_text()
    assert "STANDARD" in cfg
