"""Per-target figures over a window: loss, RTT median/p95/max, RFC 3550 jitter, mean |dRTT|, loss runs.

Each figure is defined in docs/metrics.md (the table the lookup's readers see): keep both in step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from ..score.timeline import hist_percentile
from ..store import RttRow

if TYPE_CHECKING:
    from ..store.rollup import Rollup


@dataclass
class TargetStats:
    target: str
    hop: int | None
    addresses: list[str]
    methods: list[str]
    samples: int
    lost: int
    loss_pct: float
    rtt_median_ms: float | None
    rtt_p95_ms: float | None
    rtt_max_ms: float | None
    jitter_ms: float | None
    jitter_mean_abs_ms: float | None
    loss_seconds: int
    max_loss_run: int
    first_us: int
    last_us: int

    def as_dict(self) -> dict:
        return asdict(self)


def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def rfc3550_jitter(rtts_us: Iterable[int]) -> tuple[float | None, float | None]:
    """Returns (final RFC 3550 estimate, mean |D|) in microseconds, None with fewer than two RTTs."""
    j = 0.0
    total = 0
    n = 0
    prev = None
    for r in rtts_us:
        if prev is not None:
            d = abs(r - prev)
            j += (d - j) / 16.0
            total += d
            n += 1
        prev = r
    if n == 0:
        return None, None
    return j, total / n


def _longest_run(flags: Iterable[bool]) -> int:
    best = run = 0
    for f in flags:
        run = run + 1 if f else 0
        best = max(best, run)
    return best


def _ms(us: float | None) -> float | None:
    return None if us is None else round(us / 1000.0, 3)


def summarize(rows: Iterable[RttRow]) -> list[TargetStats]:
    """Rows must be ordered by target, then time (as the store returns them)."""
    by_target: dict[str, list[RttRow]] = {}
    for r in rows:
        by_target.setdefault(r.target, []).append(r)
    out = []
    for target, rs in by_target.items():
        rs.sort(key=lambda r: r.ts_us)
        answered = [r.rtt_us for r in rs if r.rtt_us is not None]
        lost = len(rs) - len(answered)
        ordered = sorted(answered)
        jitter, mean_abs = rfc3550_jitter(answered)
        out.append(
            TargetStats(
                target=target,
                hop=next((r.hop for r in rs if r.hop), None),
                addresses=sorted({r.address for r in rs}),
                methods=sorted({r.method for r in rs}),
                samples=len(rs),
                lost=lost,
                loss_pct=round(100.0 * lost / len(rs), 2),
                rtt_median_ms=_ms(percentile(ordered, 50)) if ordered else None,
                rtt_p95_ms=_ms(percentile(ordered, 95)) if ordered else None,
                rtt_max_ms=_ms(ordered[-1]) if ordered else None,
                jitter_ms=_ms(jitter),
                jitter_mean_abs_ms=_ms(mean_abs),
                loss_seconds=len({r.ts_us // 1_000_000 for r in rs if r.rtt_us is None}),
                max_loss_run=_longest_run(r.rtt_us is None for r in rs),
                first_us=rs[0].ts_us,
                last_us=rs[-1].ts_us,
            )
        )
    # The path order a network engineer reads: gateway, then hops by distance, then named targets.
    out.sort(key=lambda t: (t.target != "gateway", t.hop is None, t.hop or 0, t.target))
    return out


def _median(values: list) -> int | None:
    v = sorted(x for x in values if x is not None)
    return percentile(v, 50) if v else None


def app_stats(rows: list) -> list[dict]:
    """Per app: availability, phase medians (ms), last status/version, certificate days, failures by class."""
    by_app: dict[str, list] = {}
    for r in rows:
        by_app.setdefault(r.target, []).append(r)
    out = []
    for app, rs in sorted(by_app.items()):
        rs.sort(key=lambda r: r.ts_us)
        failed = [r for r in rs if r.values["err"]]
        errors: dict[str, int] = {}
        for r in failed:
            errors[r.values["err"]] = errors.get(r.values["err"], 0) + 1
        last = rs[-1].values
        certs = [r.values["cert"] for r in rs if r.values["cert"] is not None]
        out.append(
            {
                "app": app,
                "addresses": sorted({r.address for r in rs}),
                "checks": len(rs),
                "failed": len(failed),
                "availability_pct": round(100.0 * (len(rs) - len(failed)) / len(rs), 2),
                **{
                    f"{phase}_median_ms": _ms(_median([r.values[phase] for r in rs if not r.values["err"]]))
                    for phase in ("dns", "tcp", "tls", "ttfb", "total")
                },
                "total_p95_ms": _ms(percentile(sorted(t), 95))
                if (t := [r.values["total"] for r in rs if r.values["total"] is not None])
                else None,
                "last_status": last["status"],
                "http_version": last["ver"],
                "cert_days_left": min(certs) if certs else None,
                "errors": errors,
                "last_error": next((r.values["err"] for r in reversed(rs) if r.values["err"]), None),
            }
        )
    return out


def voice_stats(rows: list) -> dict | None:
    """Voice-cadence runs: the figures the Teams network requirements use."""
    if not rows:
        return None
    ok = [r.values for r in rows if r.values["sent"]]
    sent = sum(v["sent"] or 0 for v in ok)
    recv = sum(v["recv"] or 0 for v in ok)
    return {
        "runs": len(rows),
        "failed_runs": sum(1 for r in rows if r.values["err"]),
        "packets_sent": sent,
        "loss_pct": round(100.0 * (sent - recv) / sent, 2) if sent else None,
        "rtt_median_ms": _ms(_median([v["rtt"] for v in ok])),
        "jitter_median_ms": _ms(_median([v["jit"] for v in ok])),
        "jitter_max_ms": _ms(max((v["jit"] for v in ok if v["jit"] is not None), default=None)),
        "burst_loss_max_pct": max((v["burst"] / 10.0 for v in ok if v["burst"] is not None), default=None),
        "reordered": sum(v["reord"] or 0 for v in ok),
    }


def device_stats(rows: list) -> dict | None:
    if not rows:
        return None
    rows = sorted(rows, key=lambda r: r.ts_us)
    last = rows[-1].values
    cpu = [r.values["cpu"] for r in rows if r.values["cpu"] is not None]
    mem = [r.values["mem"] for r in rows if r.values["mem"] is not None]
    return {
        "readings": len(rows),
        "cpu_pct_now": None if last["cpu"] is None else last["cpu"] / 10,
        "cpu_pct_max": max(cpu) / 10 if cpu else None,
        "mem_pct_now": None if last["mem"] is None else last["mem"] / 10,
        "mem_pct_max": max(mem) / 10 if mem else None,
        "nic_errors": sum(r.values["nicerr"] or 0 for r in rows),
        "interface": last["if"],
        "interface_kind": last["ifk"],
        "vpn": last["vpn"],
        "proxy": last["proxy"],
        "busiest": next((r.values["top"] for r in reversed(rows) if r.values["top"]), None),
        **_own_traffic(
            last, [r.values for r in rows if r.values.get("up") is not None or r.values.get("dn") is not None]
        ),
    }


def _own_traffic(last: dict, rated: list[dict], sums: dict | None = None) -> dict:
    """The desk's own traffic (issue 17), kbit/s: now, the window's mean, the best its link carried
    lately, and the link speed in Mbit/s; from the rows, or a rollup's sums (``sums``)."""
    if sums is not None:
        n = sums.get("tr_n") or 0
        up_sum, dn_sum = sums.get("up_sum", 0), sums.get("dn_sum", 0)
        up_best, dn_best, spd = sums.get("up_best"), sums.get("dn_best"), sums.get("spd")
    else:
        n = len(rated)
        up_sum, dn_sum = sum(v.get("up") or 0 for v in rated), sum(v.get("dn") or 0 for v in rated)
        up_best = max((v["upb"] for v in rated if v.get("upb") is not None), default=None)
        dn_best = max((v["dnb"] for v in rated if v.get("dnb") is not None), default=None)
        spd = max((v["spd"] for v in rated if v.get("spd")), default=None)
    return {
        "upload_kbps_now": last.get("up"),
        "download_kbps_now": last.get("dn"),
        "upload_kbps_mean": round(up_sum / n, 1) if n else None,
        "download_kbps_mean": round(dn_sum / n, 1) if n else None,
        "upload_best_kbps": up_best,
        "download_best_kbps": dn_best,
        "link_mbps": spd,
    }


def wifi_stats(rows: list, events: list) -> dict | None:
    """The Wi-Fi link over the window: signal bands, what it was connected to, and its disruptions."""
    if not rows:
        return None
    rows = sorted(rows, key=lambda r: r.ts_us)
    connected = [r.values for r in rows if r.values["conn"]]
    rssi = sorted(v["rssi"] for v in connected if v["rssi"] is not None)
    snr = sorted(v["snr"] for v in connected if v["snr"] is not None)
    last = rows[-1].values
    kinds = [e.kind for e in events]
    return {
        "readings": len(rows),
        "connected_pct": round(100.0 * len(connected) / len(rows), 1),
        "ssid": last["ssid"],
        "bssid": last["bssid"],
        "band": last["band"],
        "channel": last["ch"],
        "phy": last["phy"],
        "rssi_median_dbm": percentile(rssi, 50) if rssi else None,
        "rssi_min_dbm": rssi[0] if rssi else None,
        "snr_median_db": percentile(snr, 50) if snr else None,
        "tx_rate_median_mbps": (lambda t: percentile(t, 50) / 1000 if t else None)(
            sorted(v["tx"] for v in connected if v["tx"] is not None)
        ),
        "bssids": len({v["bssid"] for v in connected if v["bssid"]}),
        "roams": kinds.count("wifi_roam"),
        "disconnects": kinds.count("wifi_disconnect"),
        "weak_signal_events": kinds.count("wifi_weak_signal"),
        "rate_drops": kinds.count("wifi_rate_drop"),
    }


def timeline_cells(minutes: list[dict], max_cells: int = 60) -> list[str]:
    """Per-minute scores as short cells ("14:02 52v": score and the limiting component's initial).

    A window longer than ``max_cells`` minutes is shown in equal buckets, each cell the bucket's
    worst minute, so a bad minute is never averaged away in the text either.
    """
    import datetime as _dt

    scored = [m for m in minutes if m["score"] is not None]
    if not scored:
        return []
    size = max(1, math.ceil(len(scored) / max_cells))
    cells = []
    for i in range(0, len(scored), size):
        worst = min(scored[i : i + size], key=lambda m: m["score"])
        t = _dt.datetime.fromtimestamp(scored[i]["minute_us"] / 1e6, tz=_dt.UTC).strftime("%H:%M")
        mark = "" if worst["score"] >= 70 else (worst["limiting"] or "?")[0]
        cells.append(f"{t} {worst['score']:.0f}{mark}")
    return cells


# --- long windows: the same figures from the per-minute rollups ---------------------------------
#
# A day at 1 Hz is 86,400 samples per hop; turning them into Python objects alone takes longer
# than the page may. Over long windows the figures come from the rollups (exact counts, sums,
# minima and maxima; percentiles within the sketch's 1% relative error), and raw rows are read
# only where a figure needs the order of single samples:
# - the last minutes (``tail``): the RFC 3550 jitter at the window's end (the estimator forgets
#   its start within a few hundred samples: (15/16)^300 < 1e-8), the last status, interface,
#   SSID, busiest process; a certificate's days left only shrink, so its minimum is the latest;
# - the minutes that lost samples (``lossy``): loss seconds and the longest loss run, exact as
#   long as there are at most ``LOSSY_MINUTES_MAX`` such minutes (else estimated, and said so).

LOSSY_MINUTES_MAX = 240


def _q_ms(s, q: float) -> float | None:
    return None if s is None or not s.count else _ms(s.quantile(q))


def _by_target(rows: Iterable) -> dict[str, list]:
    out: dict[str, list] = {}
    for r in rows:
        out.setdefault(r.target, []).append(r)
    for rs in out.values():
        rs.sort(key=lambda r: r.ts_us)
    return out


def targets_from_rollups(
    rtt: Mapping[str, Rollup], tail: list[RttRow], lossy: list[RttRow] | None, methods: dict[str, set[str]]
) -> list[TargetStats]:
    """``summarize`` over merged rtt rollups (target -> Rollup), the tail rows and the lossy minutes' rows.

    ``lossy`` None: too many lossy minutes to read, loss seconds and longest run are estimated
    from the rollups (lost samples; the mean run length of the worst minute).
    """
    from ..store import rollup as ru  # the lookup reads the store's rollups

    tail_by, lossy_by = _by_target(tail), _by_target(lossy or ())
    out = []
    for target, r in rtt.items():
        d = r.data
        n, lost = d["n"], d["lost"]
        if not n:
            continue
        sk = d["rtt"]
        jit_sum, pairs = ru.rtt_jitter(d)
        t_rows = tail_by.get(target, [])
        jitter, _ = rfc3550_jitter(x.rtt_us for x in t_rows if x.rtt_us is not None)
        if lossy is not None:
            lr = lossy_by.get(target, [])
            loss_seconds = len({x.ts_us // 1_000_000 for x in lr if x.rtt_us is None})
            max_run = _longest_run(x.rtt_us is None for x in lr)
        else:
            loss_seconds = lost
            max_run = max(
                (math.ceil(m_lost / m_runs) for m_lost, m_runs in d.get("_minute_loss", ()) if m_runs), default=0
            )
        frags = d.get("frags") or []
        out.append(
            TargetStats(
                target=target,
                hop=r.hop or None,
                addresses=sorted(set(d["addr"])),
                methods=sorted(methods.get(target, ())),
                samples=n,
                lost=lost,
                loss_pct=round(100.0 * lost / n, 2),
                rtt_median_ms=_q_ms(sk, 0.5),
                rtt_p95_ms=_q_ms(sk, 0.95),
                rtt_max_ms=None if sk is None or not sk.count else _ms(sk.max),
                jitter_ms=_ms(jitter) if jitter is not None else (_ms(jit_sum / pairs) if pairs else None),
                jitter_mean_abs_ms=_ms(jit_sum / pairs) if pairs else None,
                loss_seconds=loss_seconds,
                max_loss_run=max_run,
                first_us=min((f[0] for f in frags), default=t_rows[0].ts_us if t_rows else 0),
                last_us=max((f[1] for f in frags), default=t_rows[-1].ts_us if t_rows else 0),
            )
        )
    out.sort(key=lambda t: (t.target != "gateway", t.hop is None, t.hop or 0, t.target))
    return out


def apps_from_rollups(http: Mapping[str, Rollup], tail: list, last_failed: dict[str, str]) -> list[dict]:
    """``app_stats`` from merged http rollups (app -> Rollup); ``last_failed``: app -> its latest error class."""
    tail_by = _by_target(tail)
    out = []
    for app in sorted(http):
        d = http[app].data
        n, failed = d["n"], d["failed"]
        if not n:
            continue
        rs = tail_by.get(app, [])
        last = rs[-1].values if rs else {}
        certs = [x.values["cert"] for x in rs if x.values.get("cert") is not None]
        out.append(
            {
                "app": app,
                "addresses": sorted(set(d["addr"])),
                "checks": n,
                "failed": failed,
                "availability_pct": round(100.0 * (n - failed) / n, 2),
                **{f"{phase}_median_ms": _q_ms(d[phase], 0.5) for phase in ("dns", "tcp", "tls", "ttfb", "total")},
                "total_p95_ms": _q_ms(d["total"], 0.95),
                "last_status": last.get("status"),
                "http_version": last.get("ver"),
                "cert_days_left": min(certs) if certs else None,
                "errors": {k: v for k, v in sorted(d["errs"].items()) if v},
                "last_error": last_failed.get(app),
            }
        )
    return out


def voice_from_rollup(r) -> dict | None:
    if r is None:
        return None
    d = r.data
    sent, recv = d["sent"], d["recv"]
    jit = d["jit"]
    return {
        "runs": d["runs"],
        "failed_runs": d["failed"],
        "packets_sent": sent,
        "loss_pct": round(100.0 * (sent - recv) / sent, 2) if sent else None,
        "rtt_median_ms": _q_ms(d["rtt"], 0.5),
        "jitter_median_ms": _q_ms(jit, 0.5),
        "jitter_max_ms": None if jit is None or not jit.count else _ms(jit.max),
        "burst_loss_max_pct": None if d["burst_max"] is None else d["burst_max"] / 10.0,
        "reordered": d["reord"],
    }


def device_from_rollup(r, tail: list) -> dict | None:
    if r is None or not r.data["n"]:
        return None
    d = r.data
    rows = sorted(tail, key=lambda x: x.ts_us)
    last = rows[-1].values if rows else {}
    return {
        "readings": d["n"],
        "cpu_pct_now": None if last.get("cpu") is None else last["cpu"] / 10,
        "cpu_pct_max": None if d["cpu_max"] is None else d["cpu_max"] / 10,
        "mem_pct_now": None if last.get("mem") is None else last["mem"] / 10,
        "mem_pct_max": None if d["mem_max"] is None else d["mem_max"] / 10,
        "nic_errors": d["nicerr"],
        "interface": last.get("if"),
        "interface_kind": last.get("ifk"),
        "vpn": last.get("vpn"),
        "proxy": last.get("proxy"),
        "busiest": next(
            (x.values["top"] for x in reversed(rows) if x.values.get("top")), d["top"][1] if d["top"] else None
        ),
        **_own_traffic(last, [], d),
    }


def _int(v: float | None) -> int | None:
    return None if v is None else int(v)


def wifi_from_rollup(r, tail: list, events: list) -> dict | None:
    if r is None or not r.data["n"]:
        return None
    d = r.data
    rows = sorted(tail, key=lambda x: x.ts_us)
    last = rows[-1].values if rows else {}
    kinds = [e.kind for e in events]
    tx = d["tx"]
    return {
        "readings": d["n"],
        "connected_pct": round(100.0 * d["conn"] / d["n"], 1),
        "ssid": last.get("ssid"),
        "bssid": last.get("bssid"),
        "band": last.get("band"),
        "channel": last.get("ch"),
        "phy": last.get("phy"),
        "rssi_median_dbm": _int(hist_percentile(d["rssi"], 50)),
        "rssi_min_dbm": min((int(k) for k, v in d["rssi"].items() if v), default=None),
        "snr_median_db": _int(hist_percentile(d["snr"], 50)),
        "tx_rate_median_mbps": None if tx is None or not tx.count else round(tx.quantile(0.5) / 1000, 1),
        "bssids": len(d["bssid"]),
        "roams": kinds.count("wifi_roam"),
        "disconnects": kinds.count("wifi_disconnect"),
        "weak_signal_events": kinds.count("wifi_weak_signal"),
        "rate_drops": kinds.count("wifi_rate_drop"),
    }
