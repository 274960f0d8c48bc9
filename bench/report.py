"""Figures, the printed table and the JSON document: one shape for every benchmark.

A figure is only useful next to its budget and to what a peer tool does, and only honest next to
how busy the machine was while it was taken (this 2-core machine is shared with test suites), so
every figure carries the load average read when it was taken.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import socket
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

SCHEMA = "cxpulse-bench/1"


@dataclass
class Figure:
    """One measured figure. ``budget_op`` is "<=" (a ceiling) or ">=" (a floor); no budget: None.

    ``ratio`` is value / peer_value (for ingest: ingest rate / bare-executemany ceiling).
    ``passed`` is None when the figure has no budget.
    """

    group: str
    name: str
    unit: str
    value: float | None
    budget: float | None = None
    budget_op: str = "<="
    peer: str = ""
    peer_value: float | None = None
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)
    note: str = ""
    ratio: float | None = None
    passed: bool | None = None

    def __post_init__(self) -> None:
        if self.ratio is None and self.value is not None and self.peer_value:
            self.ratio = self.value / self.peer_value
        if self.passed is None and self.budget is not None and self.value is not None:
            self.passed = self.value <= self.budget if self.budget_op == "<=" else self.value >= self.budget


def load_now() -> tuple[float, float, float]:
    """1, 5 and 15 minute load averages, rounded: the context a figure was taken in."""
    return tuple(round(x, 2) for x in os.getloadavg())  # type: ignore[return-value]


def machine() -> dict[str, Any]:
    """What a reader needs to compare a figure with one taken elsewhere."""
    cpu_model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "host": socket.gethostname(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_at_start": load_now(),
        "code": code_version(),
    }


def code_version() -> dict[str, Any]:
    """The commit measured, and which files differed from it: others edit the tree while we run."""
    import subprocess

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [
        line[3:]
        for line in git("status", "--porcelain").splitlines()
        if line[:2].strip() and not line[3:].startswith(("bench/", "tests/test_bench_smoke.py", "docs/benchmarks.md"))
    ]
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "changed_files": changed}


@dataclass
class Report:
    mode: str
    started: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    finished: str = ""
    machine: dict[str, Any] = field(default_factory=machine)
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, figures: list[Figure], group: str, details: dict[str, Any]) -> None:
        self.figures.extend(figures)
        self.details[group] = details

    def finish(self) -> None:
        self.finished = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        self.machine["load_at_end"] = load_now()

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "mode": self.mode,
            "started": self.started,
            "finished": self.finished,
            "machine": self.machine,
            "figures": [asdict(f) for f in self.figures],
            "details": self.details,
            "errors": self.errors,
        }

    def write_json(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(self.to_json(), f, indent=2, default=str)
            f.write("\n")


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    if v == 0:
        return "0"
    if abs(v) >= 10_000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def table(figures: list[Figure]) -> str:
    """The table CI prints: figure, value, budget, peer, ratio, pass, load."""
    head = ("figure", "value", "unit", "budget", "peer", "peer value", "ratio", "pass", "load1")
    rows = [head]
    for f in figures:
        budget = f"{f.budget_op} {_num(f.budget)}" if f.budget is not None else "-"
        verdict = {True: "PASS", False: "FAIL", None: "-"}[f.passed]
        rows.append(
            (
                f"{f.group}: {f.name}",
                _num(f.value),
                f.unit,
                budget,
                f.peer or "-",
                _num(f.peer_value),
                _num(f.ratio),
                verdict,
                f"{f.load[0]:.2f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = []
    for n, r in enumerate(rows):
        left = (0, 2, 4)  # figure, unit and peer names read better left-aligned; numbers right-aligned
        lines.append("  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(doc: dict[str, Any]) -> str:
    """A written report's table from a JSON report: how docs/benchmarks.md is kept up to date."""
    m = doc["machine"]
    code = m.get("code", {})
    out = [
        f"Run `{doc['mode']}` from {doc['started']} to {doc['finished']} on `{m['host']}`: {m['cpus']} x "
        f"{m['cpu_model']}, {m['memory_gb']} GB, Linux {m['kernel']}, Python {m['python']}; load "
        f"{m['load_at_start'][0]} at start, {m['load_at_end'][0]} at end; commit {code.get('commit', '?')}"
        + (f" with uncommitted changes in {', '.join(code['changed_files'])}" if code.get("changed_files") else ""),
        "",
        "| figure | value | unit | budget | peer | peer value | ratio | pass | load1 |",
        "|---|---:|---|---:|---|---:|---:|---|---:|",
    ]
    for f in doc["figures"]:
        budget = f"{f['budget_op']} {_num(f['budget'])}" if f["budget"] is not None else ""
        verdict = {True: "PASS", False: "**FAIL**", None: ""}[f["passed"]]
        name = f"{f['group']}: {f['name']}".replace("|", "\\|")
        out.append(
            f"| {name} | {_num(f['value'])} | {f['unit']} | {budget} | {f['peer']} | "
            f"{_num(f['peer_value']) if f['peer_value'] is not None else ''} | "
            f"{_num(f['ratio']) if f['ratio'] is not None else ''} | {verdict} | {f['load'][0]:.2f} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    import sys

    print(markdown(json.load(open(sys.argv[1]))))
