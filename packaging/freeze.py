"""Build the self-contained agent folder with PyInstaller: ``python packaging/freeze.py [--dist DIR]``.
Only the agent's sources are staged, so the collector is not there to be found; runs on the OS it builds for.
Design notes: docs/installers.md, "packaging/freeze.py".
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "packaging" / "pyinstaller" / "cxpulse-agent.spec"
# Top-level modules of proto/cxpulse that belong to the full CLI (they import the collector).
CLI_ONLY = {"cli.py", "__main__.py"}


def stage(dest: Path) -> Path:
    """A source tree with the single package ``cxpulse`` = proto/cxpulse (no CLI) + agent/ as cxpulse.agent."""
    pkg = dest / "cxpulse"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "proto" / "cxpulse", pkg, ignore=ignore)
    for name in CLI_ONLY:
        (pkg / name).unlink(missing_ok=True)
    shutil.copytree(REPO / "agent", pkg / "agent", ignore=ignore)
    return dest


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def freeze(dist: Path, work: Path | None = None, quiet: bool = True) -> Path:
    dist.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cxpulse-freeze-") as tmp:
        staged = stage(Path(tmp) / "src")
        env = dict(os.environ, CXPULSE_STAGED_SRC=str(staged))
        # The staged copy must be what PyInstaller finds: pathex puts it ahead of the editable
        # install (checked: a change made only in the staged copy ends up in the build), and a
        # PYTHONPATH pointing at the real tree must not get in between.
        env.pop("PYTHONPATH", None)
        # No --clean: the work directory is fresh anyway, and the binary cache (stripped libraries)
        # may be reused from an earlier build.
        cmd = [
            sys.executable,
            "-m",
            "PyInstaller",
            "--noconfirm",
            "--distpath",
            str(dist),
            "--workpath",
            str(work or Path(tmp) / "work"),
            str(SPEC),
        ]
        if quiet:
            cmd[4:4] = ["--log-level", "WARN"]
        subprocess.run(cmd, check=True, env=env, cwd=tmp)
    out = dist / "cxpulse-agent"
    if not (out / ("cxpulse.exe" if os.name == "nt" else "cxpulse")).exists():
        raise SystemExit(f"freeze: PyInstaller produced no agent executable in {out}")
    if sys.platform.startswith("linux"):
        drop_build_rpaths(out / "_internal")
    return out


def drop_build_rpaths(folder: Path) -> None:
    """Remove library search paths that point into the build machine (e.g. ~/.pyenv/.../lib).

    They do nothing useful on a desk (the bundle's own libraries are found through the loader),
    and a path that some user could create there would be a way to inject a library into the agent.
    ``$ORIGIN``-relative entries, which wheels use to find their own libraries, are kept.
    """
    patchelf = shutil.which("patchelf")
    if patchelf is None:
        print(
            "freeze: patchelf not found; RUNPATHs of the build machine stay in the bundle (apt-get install patchelf)",
            file=sys.stderr,
        )
        return
    for path in sorted(folder.rglob("*.so*")):
        if path.is_symlink() or not path.is_file() or path.read_bytes()[:4] != b"\x7fELF":
            continue
        rpath = subprocess.run([patchelf, "--print-rpath", str(path)], capture_output=True, text=True).stdout.strip()
        if not rpath:
            continue
        keep = [e for e in rpath.split(":") if e.startswith("$ORIGIN")]
        if keep != rpath.split(":"):
            args = ["--set-rpath", ":".join(keep)] if keep else ["--remove-rpath"]
            subprocess.run([patchelf, *args, str(path)], check=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dist", default=str(REPO / "build" / "packaging" / "dist"), help="output directory")
    ap.add_argument("--verbose", action="store_true", help="show PyInstaller's log")
    args = ap.parse_args()
    from cxpulse.extras import MissingExtra, report, require

    try:
        require("PyInstaller")
    except MissingExtra as exc:
        return report(exc, "freeze")
    out = freeze(Path(args.dist), quiet=not args.verbose)
    print(f"{out}: {du(out) / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
