"""Whole-or-nothing file writes, the same way on every OS: the one helper agent and collector use.
Binary mode, tmp file, write, fsync, rename (or link), fsync the directory: never half a file.
Design notes: docs/platforms.md, "Whole-or-nothing files".
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["fsync_dir", "write_atomic"]


def write_atomic(
    path: str | os.PathLike[str],
    data: bytes,
    *,
    mode: int = 0o600,
    restrict: Callable[[str], object] | None = None,
    check: Callable[[str], object] | None = None,
    exclusive: bool = False,
) -> None:
    """Replace ``path`` by ``data`` durably; text callers encode first.

    ``mode``: the file's exact POSIX mode (never wider while written). ``restrict(tmp)`` runs on
    the still empty temporary file (a secret's Windows ACL); ``check(tmp)`` on the whole candidate
    before it replaces anything (its exception is raised, the old file kept). ``exclusive``: create
    only, FileExistsError if ``path`` exists (two processes racing to create it: one wins).
    Raises OSError; the temporary file never survives a failure.
    """
    path = os.fspath(path)
    tmp = f"{path}.{os.getpid()}.tmp"  # ends in .tmp: what the spool deletes at start
    fd = _create(tmp, mode)
    try:
        try:
            if hasattr(os, "fchmod"):  # not on Windows before 3.13, where the mode is no ACL anyway
                os.fchmod(fd, mode)  # exactly ``mode``, whatever the umask
            if restrict is not None:
                restrict(tmp)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if check is not None:
            check(tmp)
        if exclusive:
            os.link(tmp, path)
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(os.path.dirname(path) or ".")


def _create(tmp: str, mode: int) -> int:
    """A new file, binary on Windows (``O_BINARY`` looked up at the call: the C-runtime test sets it).

    ``O_EXCL``: never a file someone else made (or linked) there; a crashed writer's leftover goes.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        return os.open(tmp, flags, mode)
    except FileExistsError:
        os.unlink(tmp)
        return os.open(tmp, flags, mode)


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
