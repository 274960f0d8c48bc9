"""The lookup a helpdesk analyst reads: who, which window, and per target what the desk measured."""

from __future__ import annotations

import datetime as dt
import json
import time

from ..store import AgentRecord, Store
from .stats import TargetStats, summarize


class NoMatch(LookupError):
    """Nothing matched the query; the message says what was searched."""


def _fmt_time(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def build(store: Store, query: str, window_s: int = 3600, now_us: int | None = None) -> dict:
    """The lookup as a dict (the --json output); raises NoMatch when nothing or too much matches."""
    agents = store.find_agents(query)
    if not agents:
        raise NoMatch(f"no agent matches {query!r} (searched user, host, agent id and site)")
    exact = [a for a in agents if query.lower() in (a.info.os_user.lower(), a.info.host.lower(), a.info.agent_id.lower())]
    chosen = exact if exact else agents
    now_us = now_us if now_us is not None else time.time_ns() // 1000
    since = now_us - window_s * 1_000_000
    return {
        "query": query,
        "window": {"since_us": since, "until_us": now_us, "seconds": window_s},
        "agents": [_agent_view(store, a, since, now_us) for a in chosen],
    }


def _agent_view(store: Store, a: AgentRecord, since: int, until: int) -> dict:
    targets = summarize(store.rtt_rows(a.key, since, until))
    return {
        "agent_id": a.info.agent_id,
        "user": a.info.os_user,
        "host": a.info.host,
        "os": a.info.os,
        "agent_version": a.info.agent_version,
        "site": a.info.site,
        "last_seen_us": a.last_seen_us,
        "targets": [t.as_dict() for t in targets],
    }


def render_json(view: dict) -> str:
    return json.dumps(view, indent=2)


def _num(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    return f"{v:.2f}{unit}" if v < 10 else f"{v:.1f}{unit}"


def render_text(view: dict) -> str:
    lines = []
    w = view["window"]
    for a in view["agents"]:
        lines.append(f"{a['user'] or '?'} on {a['host'] or '?'}  (agent {a['agent_id']}, {a['os']}, v{a['agent_version']}"
                     + (f", site {a['site']}" if a["site"] else "") + ")")
        lines.append(f"window: {_fmt_time(w['since_us'])} .. {_fmt_time(w['until_us'])}; last seen {_fmt_time(a['last_seen_us'])}")
        if not a["targets"]:
            lines.append("  no samples in this window")
            lines.append("")
            continue
        header = f"  {'target':<16} {'address':<22} {'method':<12} {'samples':>7} {'loss%':>6} {'median':>8} {'p95':>8} {'max':>8} {'jitter':>7} {'|dRTT|':>7} {'loss s':>6}"
        lines.append(header)
        for t in a["targets"]:
            ts = TargetStats(**t)
            lines.append(
                f"  {ts.target:<16.16} {','.join(ts.addresses):<22.22} {','.join(ts.methods):<12.12} {ts.samples:>7} "
                f"{ts.loss_pct:>6.1f} {_num(ts.rtt_median_ms):>8} {_num(ts.rtt_p95_ms):>8} {_num(ts.rtt_max_ms):>8} "
                f"{_num(ts.jitter_ms):>7} {_num(ts.jitter_mean_abs_ms):>7} {ts.loss_seconds:>6}"
            )
        lines.append("  (RTT and jitter in ms; jitter = RFC 3550 estimate at window end, |dRTT| = mean change between consecutive RTTs)")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
