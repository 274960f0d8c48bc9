"""cxpulse.atomicfile: whole or nothing, the exact mode, a failed check or write keeps the old file."""

from __future__ import annotations

import os
import stat

import pytest

from cxpulse.atomicfile import write_atomic


def leftovers(d):
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".tmp"))


def test_replaces_whole_with_the_exact_mode_whatever_the_umask(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"old")
    old_umask = os.umask(0o077)
    try:
        write_atomic(path, b"\n\x1a" * 1000, mode=0o644)
    finally:
        os.umask(old_umask)
    assert path.read_bytes() == b"\n\x1a" * 1000 and leftovers(tmp_path) == []
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        write_atomic(str(path), b"secret")  # the default: this account only
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_failed_check_keeps_the_old_file_and_leaves_nothing(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_bytes(b"good = 1\n")
    seen = []

    def check(tmp: str) -> None:
        seen.append(open(tmp, "rb").read())
        raise ValueError("would not load")

    with pytest.raises(ValueError, match="would not load"):
        write_atomic(path, b"bad", check=check)
    assert seen == [b"bad"] and path.read_bytes() == b"good = 1\n" and leftovers(tmp_path) == []


def test_restrict_sees_the_empty_temporary_file_first(tmp_path):
    sizes = []
    write_atomic(tmp_path / "credential.json", b"{}", restrict=lambda tmp: sizes.append(os.path.getsize(tmp)))
    assert sizes == [0]


def test_exclusive_creates_once(tmp_path):
    path = tmp_path / "pseudonym.key"
    write_atomic(path, b"first", exclusive=True)
    with pytest.raises(FileExistsError):
        write_atomic(path, b"second", exclusive=True)
    assert path.read_bytes() == b"first" and leftovers(tmp_path) == []


def test_a_leftover_or_planted_temporary_file_is_not_written_through(tmp_path):
    path = tmp_path / "f"
    planted = tmp_path / f"f.{os.getpid()}.tmp"
    other = tmp_path / "elsewhere"
    other.write_bytes(b"theirs")
    if hasattr(os, "symlink"):
        os.symlink(other, planted)
    else:
        planted.write_bytes(b"x")
    write_atomic(path, b"mine")
    assert path.read_bytes() == b"mine" and other.read_bytes() == b"theirs" and leftovers(tmp_path) == []
