"""Honest ingest under a flood from one enrolled desk: the rate with and without it, and their ratio.

Issue 18's "Done when": a flood of bad streams and enrolls from one credential for 60 s leaves
the ingest of honest desks within 20 % of its rate without the flood. Both runs are the ingest
benchmark's (``bench.ingest.one_run``: the real ``cxpulse collector serve`` on loopback, a fresh
SQLite database, simulated agents in their own processes); in the second, a flood process starts
with the measured window and runs through it, as one desk with a valid credential would:

- silent streams: opened as fast as they are answered, never a Hello (cut by the Hello deadline,
  refused beyond the per-credential allowance);
- bad batches: a Hello, then a seq of 2^63 and undecodable payloads, reconnecting whenever cut
  (rejected with a reason, strikes, a penalty during which its streams are refused);
- enrolls with a forged token, several at once (throttled per address and in total).

The flood runs on the same 2 cores as the collector and the honest generators, so its own CPU
is part of what the honest desks lose here; the report gives it beside the ratio. On the real
network the attacker's CPU is the attacker's.

    .venv/bin/python -m bench.flood            # 60 s windows: baseline, flood, baseline again
    .venv/bin/python -m bench.flood --quick    # 10 s windows, one baseline (well under a minute)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc

from . import ingest
from .report import Figure, load_now

REPO = Path(__file__).resolve().parent.parent
AGENTS = 20
GOAL = 0.8  # flooded rate / rate without the flood
FLOOD_AGENT = "flood-desk"
SILENT_AT_ONCE = 64
ENROLLS_AT_ONCE = 32
PLANS = {
    "full": ingest.IngestPlan((AGENTS,), ("sqlite",), 3, 60, 0),
    "quick": ingest.IngestPlan((AGENTS,), ("sqlite",), 2, 10, 0),
    "smoke": ingest.IngestPlan((AGENTS,), ("sqlite",), 1, 3, 0),
}


# --- the flood (a process of its own) -------------------------------------------------------------


async def _flood(target: str, credential: str, duration_s: float) -> dict[str, Any]:
    from cxpulse.v1 import telemetry_pb2 as pb
    from cxpulse.v1 import telemetry_pb2_grpc as pb_grpc

    md = (("authorization", f"Bearer {credential}"),)
    end = time.monotonic() + duration_s
    counts: dict[str, Counter] = {"silent": Counter(), "bad_batch": Counter(), "enroll": Counter()}
    ch = grpc.aio.insecure_channel(target)
    stub = pb_grpc.TelemetryServiceStub(ch)

    def left() -> float:
        return end - time.monotonic()

    async def silent() -> None:
        while left() > 0:
            call = stub.Stream(metadata=md, timeout=max(0.5, min(30.0, left())))
            try:
                await call.read()  # never a Hello: the collector ends it (or our timeout does)
                counts["silent"]["answered"] += 1
            except grpc.aio.AioRpcError as exc:
                counts["silent"][exc.code().name] += 1
            finally:
                call.cancel()

    async def bad_batches() -> None:
        while left() > 0:
            call = stub.Stream(metadata=md, timeout=max(0.5, min(30.0, left())))
            try:
                await call.write(pb.StreamRequest(hello=pb.Hello(agent_id=FLOOD_AGENT, host="flood", seq_epoch=7)))
                await call.read()
                for seq in range(1, 1_000):
                    if left() <= 0:
                        break
                    bad = (
                        pb.Batch(seq=1 << 63, payload=b"\x80", sample_count=1)
                        if seq % 2
                        else pb.Batch(seq=seq, payload=b"\xc1garbage", sample_count=1)
                    )
                    await call.write(pb.StreamRequest(batch=bad))
                    r = await call.read()
                    if r is grpc.aio.EOF:
                        break
                    counts["bad_batch"]["rejected" if r.ack.status == pb.ACK_STATUS_REJECTED else "other"] += 1
            except grpc.aio.AioRpcError as exc:
                counts["bad_batch"][exc.code().name] += 1
            finally:
                call.cancel()

    async def enroll() -> None:
        while left() > 0:
            try:
                await stub.Enroll(
                    pb.EnrollRequest(token="cxp_enr_forged_secret", agent_id="flood-x", host="flood"), timeout=5
                )
                counts["enroll"]["OK"] += 1
            except grpc.aio.AioRpcError as exc:
                counts["enroll"][exc.code().name] += 1

    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    tasks = (
        [asyncio.ensure_future(silent()) for _ in range(SILENT_AT_ONCE)]
        + [asyncio.ensure_future(bad_batches()) for _ in range(2)]
        + [asyncio.ensure_future(enroll()) for _ in range(ENROLLS_AT_ONCE)]
    )
    await asyncio.wait(tasks, timeout=duration_s + 35)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await ch.close()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
    return {
        "counts": {k: dict(v) for k, v in counts.items()},
        "cpu_s": round(cpu_s, 2),
        "cpu_pct_of_core": round(100 * cpu_s / duration_s, 1),
    }


def _start_flood(tmp: Path, duration_s: float):
    """``on_window`` hook of ``ingest.one_run``: provision the flood's credential, start the flood."""
    from cxpulse.collector.security.registry import Registry

    def hook(_pid: int, _window_s: float) -> subprocess.Popen:
        name = ingest._run_name("sqlite", AGENTS, desk=False)
        port = int((tmp / f"collector-{name}.ready").read_text())
        reg = Registry.open(str(tmp / f"ingest-{name}.sqlite"))
        try:
            cred = reg.provision_agents([FLOOD_AGENT])[FLOOD_AGENT]
        finally:
            reg.close()
        cred_file = tmp / "flood.cred"
        fd = os.open(cred_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(cred)
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.flood",
                "--worker",
                f"127.0.0.1:{port}",
                "--credential-file",
                str(cred_file),
                "--seconds",
                str(duration_s),
                "--out",
                str(tmp / "flood.json"),
            ],
            cwd=REPO,
        )

    return hook


# --- the driver -------------------------------------------------------------------------------------


def run(plan: ingest.IngestPlan, log: Any = print, where: str | None = None) -> dict[str, Any]:
    """Baseline, flood (and in the full plan a second baseline); the figures and the ratio."""
    out: dict[str, Any] = {"agents": AGENTS, "window_s": plan.duration_s, "runs": []}
    kinds = ["baseline", "flood"] + (["baseline"] if plan.duration_s >= 30 else [])
    with tempfile.TemporaryDirectory(prefix="cxpulse-bench-flood-", dir=where) as tmp_s:
        for k, kind in enumerate(kinds):
            tmp = Path(tmp_s) / f"run{k}"
            tmp.mkdir()
            log(f"  flood: {kind}, {AGENTS} honest agents, {plan.duration_s:.0f} s")
            hook = _start_flood(tmp, plan.duration_s) if kind == "flood" else None
            r = ingest.one_run("sqlite", AGENTS, plan, tmp, hook)
            entry = {
                "kind": kind,
                "samples_per_s": r["samples_per_s"],
                "rejected": r["rejected"],
                "errors": r["errors"],
                "collector_cpu_pct_of_core": r["collector_cpu_pct_of_core"],
            }
            if kind == "flood":
                f = tmp / "flood.json"
                entry["flood"] = json.loads(f.read_text()) if f.exists() else {"fatal": "no flood output"}
            out["runs"].append(entry)
    base = [r["samples_per_s"] for r in out["runs"] if r["kind"] == "baseline"]
    flooded = next(r["samples_per_s"] for r in out["runs"] if r["kind"] == "flood")
    out["baseline_samples_per_s"] = round(sum(base) / len(base))
    out["flood_samples_per_s"] = flooded
    out["ratio"] = round(flooded / out["baseline_samples_per_s"], 3) if out["baseline_samples_per_s"] else None
    out["goal"] = GOAL
    return out


def figures(plan: ingest.IngestPlan, log: Any = print, where: str | None = None) -> tuple[list[Figure], dict]:
    """For ``bench.run``: the ratio against its goal, and both rates."""
    r = run(plan, log, where)
    load = load_now()
    flood = next(x for x in r["runs"] if x["kind"] == "flood").get("flood", {})
    note = (
        f"{AGENTS} honest agents, {r['window_s']:.0f} s windows; the flood process used "
        f"{flood.get('cpu_pct_of_core')}% of a core on the same machine"
    )
    out = [
        Figure(
            "flood",
            "honest ingest with / without a flood from one credential",
            "ratio",
            r["ratio"],
            GOAL,
            ">=",
            load=load,
            note=note,
        ),
        Figure("flood", "honest ingest without the flood", "samples/s", r["baseline_samples_per_s"], load=load),
        Figure(
            "flood",
            "honest ingest during the flood",
            "samples/s",
            r["flood_samples_per_s"],
            load=load,
            note=json.dumps(flood.get("counts", flood)),
        ),
    ]
    return out, r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.flood", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10 s windows, one baseline")
    ap.add_argument("--json", metavar="PATH", help="write the figures as JSON here")
    ap.add_argument("--dir", help="where the SQLite files go (default: the temporary directory)")
    ap.add_argument("--worker", metavar="TARGET", help=argparse.SUPPRESS)
    ap.add_argument("--credential-file", help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=10.0, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        cred = Path(args.credential_file).read_text().strip()
        try:
            result = asyncio.run(_flood(args.worker, cred, min(args.seconds, 600.0)))
        except Exception as exc:  # reported through the output file
            result = {"fatal": f"{type(exc).__name__}: {exc}"}
        Path(args.out).write_text(json.dumps(result))
        return 0
    started = time.monotonic()
    r = run(PLANS["quick" if args.quick else "full"], where=args.dir)
    for run_ in r["runs"]:
        print(
            f"  {run_['kind']:8}: {run_['samples_per_s']:>9,} samples/s acked, collector "
            f"{run_['collector_cpu_pct_of_core']}% of a core, rejected {run_['rejected']}"
        )
        if "flood" in run_:
            fl = run_["flood"]
            print(
                f"            flood: {json.dumps(fl.get('counts', fl))}, flood process "
                f"{fl.get('cpu_pct_of_core')}% of a core"
            )
    print(
        f"honest ingest without the flood: {r['baseline_samples_per_s']:,} samples/s; with it: "
        f"{r['flood_samples_per_s']:,} samples/s; ratio {r['ratio']} (goal >= {GOAL}); "
        f"{AGENTS} honest agents, {r['window_s']:.0f} s windows, total {time.monotonic() - started:.0f} s"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
