"""A bounded atheris (coverage-guided) run over the payload decoder and validator: no crash."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from tests.requirements import require

REPO = Path(__file__).resolve().parents[2]


def test_atheris_payload_decoder_bounded_run(tmp_path):
    require(
        importlib.util.find_spec("atheris") is not None,
        "atheris is not installed (it has wheels for Linux x86-64 CPython <= 3.12 only)",
    )
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fuzz.atheris_payload",
            "-runs=50000",
            "-max_total_time=25",
            "-rss_limit_mb=1024",
            "-max_len=4096",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert "Done" in out or "max_total_time" in out, out[-2000:]
    assert not list(tmp_path.glob("crash-*")), out[-4000:]
