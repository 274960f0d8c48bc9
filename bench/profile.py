"""Where the time goes: py-spy on the agent at its default configuration and on the collector under load.

Optimizing from a guess wastes the effort on code that is not hot. This attaches py-spy (sampling,
``--nonblocking``: the target is never paused, so its timing is not disturbed) to the process a
benchmark measures, for exactly the measured window, and reduces the collapsed stacks to the top
functions by own time ("self") and by time including callees ("total"). Idle samples (threads
blocked in epoll or a lock) are left out, so percentages are of the time the process was busy.

    .venv/bin/python -m bench.profile agent  --seconds 300 --out prof/          # footprint run
    .venv/bin/python -m bench.profile ingest --store sqlite --agents 100 --seconds 20 --out prof/

Needs ``pip install py-spy`` in the venv (a developer tool, not a dependency) and root (ptrace).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def pyspy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def start(pid: int, seconds: float, out: Path, rate: int = 250, gil: bool = False) -> subprocess.Popen:
    """py-spy record on ``pid`` for ``seconds``, raw collapsed stacks to ``out``."""
    exe = pyspy()
    if exe is None:
        raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
    argv = [
        exe,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, int(seconds))),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--output",
        str(out),
        "--nonblocking",
    ]
    if gil:
        argv.append("--gil")
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _short(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    parts = path.split("/")
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    elif len(parts) > 3:
        parts = parts[-3:]
    return f"{m.group('func')} ({'/'.join(parts)})"


# Source folders of this project as py-spy names them (editable install: the repo's own paths).
_OWN = ("agent/", "collector/", "cxpulse/")


_ENTRY = ("cxpulse/__main__", "cxpulse/cli.py", "agent/cli.py", "collector/cli.py", "collector/server.py")


def _own(frame: str) -> bool:
    """A frame of this project's code, not one of the entry points every sample passes through."""
    return any(f"({p}" in frame for p in _OWN) and not any(e in frame for e in _ENTRY)


def summarize(raw: Path, top: int = 5) -> dict[str, Any]:
    """Top functions from py-spy's raw (collapsed) output, three ways.

    ``self``: the leaf frame (where the CPU was, library code included). ``project``: the innermost
    frame of our own code on the stack, so time spent in a library is charged to the line of ours
    that called it: the list to optimize from. ``total``: inclusive time of our own functions,
    leaving out the entry points every sample passes through.
    """
    own: Counter[str] = Counter()
    project: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_short(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        ours = [f for f in frames if _own(f)]
        project[ours[-1] if ours else "(no project frame: event loop, grpc, threads)"] += n
        for f in set(ours):
            incl[f] += n
    pct = (lambda c: round(100 * c / total, 1)) if total else (lambda c: 0.0)

    def rows(c: Counter[str], keep=lambda f, n: True) -> list[dict]:
        return [{"function": f, "pct": pct(n), "samples": n} for f, n in c.most_common() if keep(f, n)][:top]

    return {
        "samples": total,
        "self": rows(own),
        "project": rows(project),
        "total": rows(incl, lambda f, n: n < 0.9 * total),
    }


def render(name: str, summary: dict[str, Any]) -> str:
    lines = [f"{name}: {summary['samples']} busy samples"]
    for kind in ("self", "project", "total"):
        lines.append(f"  top by {kind}:")
        lines += [f"    {h['pct']:5.1f}%  {h['function']}" for h in summary[kind]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["agent", "ingest"])
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--store", default="sqlite", choices=["sqlite", "postgres"])
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--gil", action="store_true", help="only samples holding the GIL (what limits one process)")
    ap.add_argument("--out", type=Path, default=Path("bench-profile"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    raw = args.out / f"{args.what}{'-gil' if args.gil else ''}.txt"
    attach = lambda pid, seconds: start(pid, seconds, raw, args.rate, args.gil)  # noqa: E731
    if args.what == "agent":
        from . import footprint

        plan = footprint.FootprintPlan(warmup_s=30, window_s=args.seconds, peers=False)
        footprint.run(plan, on_window=attach)
    else:
        from . import ingest

        plan = ingest.IngestPlan((args.agents,), (args.store,), 2, args.seconds, 10_000)
        ingest.run(plan, on_window=attach)
    summary = summarize(raw)
    raw.with_suffix(".summary.json").write_text(json.dumps(summary, indent=2))
    print(render(args.what, summary))


if __name__ == "__main__":
    main()
