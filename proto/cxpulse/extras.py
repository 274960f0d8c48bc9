"""The optional parts of cxpulse (pip extras), and one line instead of a traceback when one is missing.
``require`` imports such a module or raises ``MissingExtra``, printed as one line naming the extra (exit 2).
Which extras exist and why: README, "Running it for real".
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

__all__ = ["EXIT_MISSING_EXTRA", "EXTRAS", "MissingExtra", "report", "require"]

EXIT_MISSING_EXTRA = 2  # a usage problem, as for bad arguments

# Top-level module -> (what needs it, in words; the extra that installs it).
EXTRAS: dict[str, tuple[str, str]] = {
    "psycopg": ("PostgreSQL", "postgres"),
    "scapy": ("Linux path tracing", "trace"),
    "PyInstaller": ("the installer build", "packaging"),
}


class MissingExtra(ImportError, ValueError):
    """An optional module is not installed; ``str()`` is the one line to show, naming the extra.

    Also a ValueError: ``open_store`` raised one for a PostgreSQL URL without psycopg before, and
    its callers that report a bad ``--db`` that way keep doing so.
    """

    def __init__(self, module: str):
        what, extra = EXTRAS[module.split(".")[0]]
        self.extra = extra
        super().__init__(f"{what} needs the '{extra}' extra: pip install 'cxpulse[{extra}]'", name=module)


def require(module: str) -> ModuleType:
    """Import ``module`` (one of EXTRAS' packages, or a module inside one), or raise MissingExtra.

    Only the package itself missing counts: an ImportError from inside an installed package (a
    broken dependency of it) propagates as it is, since installing the extra would not fix it.
    """
    top = module.split(".")[0]
    if top not in EXTRAS:
        raise KeyError(f"{top!r} is not an optional dependency of cxpulse")
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] != top:
            raise
        raise MissingExtra(module) from None


def report(exc: MissingExtra, prog: str = "cxpulse") -> int:
    """Print the one line on stderr; return the exit code."""
    print(f"{prog}: {exc}", file=sys.stderr)
    return EXIT_MISSING_EXTRA
