"""Whole-or-nothing binary file writes, the same way on every OS the agent runs on.

One helper for everything the agent keeps on disk as bytes (spooled batches, their state, the
collector's last good config), because the details are easy to get wrong one copy at a time:

- ``O_BINARY``: Windows' C runtime opens a descriptor in TEXT mode unless told otherwise, and
  then ``os.write`` turns every LF byte into CR LF (and a read stops at the first Ctrl-Z byte).
  A msgpack or protobuf payload holds such bytes in most batches, so without the flag nearly
  every spooled batch fails its checksum on read. POSIX has no such flag (every descriptor is
  binary): ``getattr(os, "O_BINARY", 0)``, looked up at the call so that the test emulating
  Windows' C runtime (tests/agent/test_windows_crt.py) sees the flag really passed.
- tmp file, write, fsync, rename, fsync the directory: a crash leaves either the old file or the
  new one (plus at worst a ``.tmp`` the spool deletes at start), never half a file.
- a write that fails leaves nothing behind.
"""

from __future__ import annotations

import os

__all__ = ["write_atomic", "fsync_dir"]


def write_atomic(path: str, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` by ``data`` durably: tmp, write, fsync, rename, fsync the directory.

    ``mode`` applies on POSIX to a newly created file (the default keeps it to the service
    account). Raises OSError; ``path + ".tmp"`` never survives a failure.
    """
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(os.path.dirname(path) or ".")


def fsync_dir(d: str) -> None:
    """Make a rename in ``d`` durable. Not on Windows: NTFS journals the rename, and a directory
    cannot be opened with ``os.open`` there."""
    if os.name == "nt":
        return
    fd = os.open(d, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
