"""Triage against known truth: every scenario through a real store, then the confusion matrix.

Each scenario of ``cxpulse.collector.score.scenarios`` is committed batch by batch into a fresh
store (SQLite, or PostgreSQL with --postgres), with incident detection running once a minute
while the data arrives, as the collector runs it. Then every agent's degraded windows are
triaged and compared with the injected fault.

    .venv/bin/python -m tests.bench.triage_confusion                  # all scenarios, seed 1
    .venv/bin/python -m tests.bench.triage_confusion --seeds 3        # seeds 1..3
    CXPULSE_TEST_POSTGRES=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python -m tests.bench.triage_confusion --postgres

Rows are the truth ("none": a window no fault explains, e.g. a single failed check on a clean
desk), columns the verdict; "missed" counts injected faults that never made a degraded window.
Accuracy is over windows with a fault. Incidents: each expected one, whether it was found, and
how long after the fault began it was opened.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import quote

from cxpulse.collector.score import scenarios as scn
from cxpulse.collector.score.incidents import IncidentConfig, detect_incidents
from cxpulse.collector.score.timeline import agent_timeline
from cxpulse.collector.score.triage import DOMAINS, triage_timeline
from cxpulse.collector.store import IncidentRecord

S = 1_000_000
DETECT_PHASE_S = 37  # the incident loop's phase within the minute (any phase must do)


@dataclass
class Window:
    scenario: str
    agent: str
    start_us: int
    end_us: int
    truth: str
    domain: str
    confidence: float
    evidence: str
    incident: dict | None


@dataclass
class Found:
    expected: scn.ExpectedIncident
    incident: IncidentRecord | None

    @property
    def latency_s(self) -> float | None:
        if self.incident is None:
            return None
        return (self.incident.detected_us - self.expected.start_us) / S


@dataclass
class Result:
    scenario: str
    windows: list[Window] = field(default_factory=list)
    missed: list[tuple[str, str]] = field(default_factory=list)  # (agent, fault domain) never degraded
    incidents: list[IncidentRecord] = field(default_factory=list)
    found: list[Found] = field(default_factory=list)
    seconds: float = 0.0


def evaluate(store, sc: scn.Scenario, cfg: IncidentConfig | None = None, ticks: list | None = None) -> Result:
    """Load the scenario into ``store`` (detecting incidents every minute), then triage every agent.

    ``ticks``: ``sc.ticks()`` made earlier, to run one scenario on two stores without generating it twice."""
    t = time.monotonic()
    cfg = cfg or IncidentConfig()
    next_run = [sc.t0_us + DETECT_PHASE_S * S]

    def tick(now_us: int) -> None:
        while now_us >= next_run[0]:
            detect_incidents(store, next_run[0], cfg)
            next_run[0] += 60 * S

    keys = scn.load(store, sc, tick, ticks)
    for k in range(cfg.lookback_minutes + 2):  # the data stops; the loop goes on and closes what ended
        detect_incidents(store, sc.end_us + (DETECT_PHASE_S + 60 * k) * S, cfg)
    out = Result(sc.name)
    for agent_id, key in keys.items():
        tl = agent_timeline(store, key, sc.t0_us, sc.end_us)
        verdicts = triage_timeline(tl, store.incidents(sc.t0_us, sc.end_us, key))
        for v in verdicts:
            out.windows.append(
                Window(
                    sc.name,
                    agent_id,
                    v.start_us,
                    v.end_us,
                    sc.truth(agent_id, v.start_us, v.end_us),
                    v.domain,
                    v.confidence,
                    v.evidence,
                    v.incident,
                )
            )
        for f in sc.faults:
            if agent_id in f.agents and not any(w.agent == agent_id and w.truth == f.domain for w in out.windows):
                out.missed.append((agent_id, f.domain))
    out.incidents = store.incidents(sc.t0_us, sc.end_us + 3600 * S)
    for e in sc.expected_incidents():
        match = next(
            (
                i
                for i in out.incidents
                if i.kind == e.kind
                and i.scope == e.scope
                and i.start_us < e.end_us
                and (i.end_us or i.last_us) > e.start_us
            ),
            None,
        )
        out.found.append(Found(e, match))
    out.seconds = time.monotonic() - t
    return out


def open_fresh(postgres: bool):
    """A fresh store and its cleanup: a temporary SQLite file, or a PostgreSQL schema dropped after."""
    from cxpulse.collector.store import open_store

    if not postgres:
        d = tempfile.TemporaryDirectory()
        st = open_store(os.path.join(d.name, "c.sqlite"))
        return st, lambda: (st.close(), d.cleanup())
    import psycopg

    url = os.environ["CXPULSE_TEST_POSTGRES"]
    schema = f"cxpulse_bench_{uuid.uuid4().hex[:10]}"
    st = open_store(f"{url}{'&' if '?' in url else '?'}options={quote(f'-csearch_path={schema}')}")

    def drop() -> None:
        st.close()
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    return st, drop


def confusion(windows: list[Window], missed: list[tuple[str, str]]) -> str:
    cols = list(DOMAINS) + ["missed"]
    rows = [d for d in DOMAINS if d != "unknown"] + ["none"]
    cnt = Counter((w.truth, w.domain) for w in windows)
    for _, d in missed:
        cnt[(d, "missed")] += 1
    width = max(len(c) for c in cols) + 1
    lines = ["truth \\ verdict".ljust(16) + "".join(c.rjust(width) for c in cols) + "total".rjust(width)]
    for r in rows:
        total = sum(cnt[(r, c)] for c in cols)
        if total:
            lines.append(
                r.ljust(16) + "".join(str(cnt[(r, c)] or ".").rjust(width) for c in cols) + str(total).rjust(width)
            )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=1, help="run seeds 1..N (default 1)")
    ap.add_argument("--postgres", action="store_true", help="use CXPULSE_TEST_POSTGRES instead of SQLite")
    ap.add_argument("--scenario", action="append", help="only these scenarios (repeatable)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every window's verdict and evidence")
    args = ap.parse_args()
    names = args.scenario or list(scn.SCENARIOS)
    windows: list[Window] = []
    missed: list[tuple[str, str]] = []
    found: list[tuple[str, int, Found]] = []
    clean_incidents = 0
    for seed in range(1, args.seeds + 1):
        for name in names:
            sc = scn.build(name, seed)
            st, done = open_fresh(args.postgres)
            try:
                r = evaluate(st, sc)
            finally:
                done()
            windows += r.windows
            missed += r.missed
            found += [(name, seed, f) for f in r.found]
            unexpected = [
                i for i in r.incidents if not any(f.incident is not None and f.incident.id == i.id for f in r.found)
            ]
            if name == "clean_day":
                clean_incidents += len(r.incidents)
            faulty = [w for w in r.windows if w.truth != "none"]
            right = sum(1 for w in faulty if w.truth == w.domain)
            print(
                f"{name:<18} seed {seed}: {right}/{len(faulty)} fault windows right, {len(r.windows) - len(faulty)} "
                f"windows without a fault, {len(r.missed)} faults missed, incidents {len(r.incidents)} "
                f"({len(unexpected)} unexpected), {r.seconds:.1f} s"
            )
            if args.verbose:
                for w in r.windows:
                    mark = "ok " if w.truth == w.domain else "!! "
                    print(f"   {mark}{w.agent:<6} truth {w.truth:<8} -> {w.domain:<8} {w.confidence:.2f}  {w.evidence}")
    faulty = [w for w in windows if w.truth != "none"]
    right = sum(1 for w in faulty if w.truth == w.domain)
    print()
    print(confusion(windows, missed))
    print()
    print(
        f"fault windows: {len(faulty)}, right domain: {right} ({100.0 * right / max(1, len(faulty)):.1f}%); "
        f"faults that never degraded the score: {len(missed)}; windows no fault explains: {len(windows) - len(faulty)}"
    )
    for name, seed, f in found:
        e = f.expected
        what = (
            "NOT FOUND"
            if f.incident is None
            else f"incident {f.incident.id}, opened {f.latency_s:.0f} s after the fault began, "
            f"{len(f.incident.agents)} of {len(e.agents)} agents"
        )
        print(f"incident {e.kind} {e.scope} ({name}, seed {seed}): {what}")
    print(f"incidents on the clean day: {clean_incidents}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
