"""The lookup view over every kind of data: per hop, per app, voice, device, paths, events."""

from __future__ import annotations

from cxpulse.collector.lookup.report import NoMatch, build, render_text
from cxpulse.collector.store import AgentInfo, PendingBatch, open_store
from cxpulse.v1 import payload as p

S = 1_000_000
NOW = 1_790_000_600 * S
T0 = NOW - 300 * S


def filled_store(tmp_path):
    store = open_store(str(tmp_path / "c.sqlite"))
    k = store.upsert_agent(AgentInfo("agent-1", "DESK-042", "maria.silva", "Windows 11", "0.1.0", "Lisbon"), T0)
    gw = p.Series(target="gateway", address="10.0.0.1", method="icmp_raw")
    isp = p.Series(target="isp", address="100.64.0.1", method="icmp_raw", hop=2)
    crm = p.Series(target="crm", address="10.9.9.9", method="https", kind="http")
    voice = p.Series(target="reflector", address="10.9.9.1", method="udp_reflect", kind="voice")
    dev = p.Series(target="device", address="local", method="os", kind="device")
    for i in range(60):
        gw.add(T0 + i * S, 1500)
        isp.add(T0 + i * S, None if 30 <= i < 35 else 9000)
    crm.add(T0, dns=2000, tcp=9000, tls=20000, ttfb=150000, total=180000, status=200, ver="HTTP/1.1", cert=29)
    crm.add(T0 + 30 * S, dns=None, err="dns")
    voice.add(T0, sent=250, recv=245, dup=0, reord=2, rtt=18000, rtt95=22000, jit=2500, loss=20, burst=300, run=3)
    dev.add(
        T0,
        cpu=955,
        mem=610,
        top="chrome 180%",
        nicerr=0,
        **{"if": "wlan0", "ifk": "wifi", "vpn": "", "proxy": None},
        up=9_600,
        dn=850,
        upb=10_000,
        dnb=48_000,
    )
    ev = p.Event("outage:isp:1", "outage", "isp", T0 + 30 * S, T0 + 35 * S, 2, "no answer for 5 samples in a row")
    path = p.PathSnapshot(
        "crm",
        "10.9.9.9",
        T0,
        "icmp",
        True,
        [
            p.PathHop(1, "10.0.0.1", 1500),
            p.PathHop(2, "100.64.0.1", 9000),
            p.PathHop(3, None, None),
            p.PathHop(4, "10.9.9.9", 20000),
        ],
    )
    store.commit_batches([PendingBatch(k, 1, 1, p.SampleBatch([gw, isp, crm, voice, dev], [ev], [path]))])
    return store


def test_view_and_text_carry_every_section(tmp_path):
    store = filled_store(tmp_path)
    try:
        view = build(store, "maria", 3600, now_us=NOW)
    finally:
        store.close()
    (a,) = view["agents"]
    assert [t["target"] for t in a["targets"]] == ["gateway", "isp"]
    isp = a["targets"][1]
    assert isp["hop"] == 2 and isp["lost"] == 5 and isp["loss_seconds"] == 5
    (crm,) = a["apps"]
    assert crm["checks"] == 2 and crm["availability_pct"] == 50.0 and crm["errors"] == {"dns": 1}
    assert crm["ttfb_median_ms"] == 150.0 and crm["cert_days_left"] == 29
    assert a["voice"]["loss_pct"] == 2.0 and a["voice"]["burst_loss_max_pct"] == 30.0
    assert a["device"]["cpu_pct_max"] == 95.5 and a["device"]["interface_kind"] == "wifi"
    assert (a["device"]["upload_kbps_now"], a["device"]["download_kbps_mean"], a["device"]["download_best_kbps"]) == (
        9_600,
        850.0,
        48_000,
    )
    assert a["events"][0]["kind"] == "outage" and a["events"][0]["duration_s"] == 5.0
    assert [h["address"] for h in a["paths"][0]["hops"]] == ["10.0.0.1", "100.64.0.1", None, "10.9.9.9"]
    text = render_text(view)
    for needle in (
        "maria.silva on DESK-042",
        "isp",
        "crm",
        "dns x1",
        "voice-cadence",
        "worst 200 ms burst loss 30.0%",
        "device: CPU",
        "chrome 180%",
        "path to crm (10.9.9.9): 10.0.0.1 > 100.64.0.1 > * > 10.9.9.9",
        "outage",
        "no answer for 5 samples",
    ):
        assert needle in text, needle


def test_no_match_says_what_was_searched(tmp_path):
    store = filled_store(tmp_path)
    try:
        try:
            build(store, "nobody", 3600, now_us=NOW)
            raise AssertionError("expected NoMatch")
        except NoMatch as exc:
            assert "user, host, agent id and site" in str(exc)
    finally:
        store.close()


# --- long windows: the same view from the rollups --------------------------------------------------

LONG = 7200  # seconds: above report.RAW_WINDOW_MAX_S, so the view comes from the rollups


def _both_paths(store, query, window_s, now_us, monkeypatch):
    from cxpulse.collector.lookup import report

    assert window_s > report.RAW_WINDOW_MAX_S
    fast = build(store, query, window_s, now_us=now_us)
    with monkeypatch.context() as m:
        m.setattr(report, "RAW_WINDOW_MAX_S", 10**9)
        slow = build(store, query, window_s, now_us=now_us)
    return fast, slow


def _close(a, b, rel=0.015):
    return (a is None and b is None) or abs(a - b) <= rel * abs(b)


def test_long_window_from_rollups_carries_the_raw_figures(tmp_path, monkeypatch):
    from cxpulse.collector.lookup.ticket import ticket_summary

    store = filled_store(tmp_path)
    try:
        fast, slow = _both_paths(store, "maria", LONG, NOW, monkeypatch)
    finally:
        store.close()
    (a,), (b,) = fast["agents"], slow["agents"]
    for x, y in zip(a["targets"], b["targets"], strict=True):
        for k in (
            "target",
            "hop",
            "addresses",
            "methods",
            "samples",
            "lost",
            "loss_pct",
            "rtt_max_ms",
            "jitter_mean_abs_ms",
            "loss_seconds",
            "max_loss_run",
            "first_us",
            "last_us",
        ):
            assert x[k] == y[k], (k, x, y)
        assert _close(x["rtt_median_ms"], y["rtt_median_ms"]) and _close(x["rtt_p95_ms"], y["rtt_p95_ms"]), (x, y)
        assert _close(x["jitter_ms"], y["jitter_ms"], 1e-6), (x, y)
    isp = a["targets"][1]
    assert isp["lost"] == 5 and isp["loss_seconds"] == 5 and isp["max_loss_run"] == 5
    (crm,), (crm_raw,) = a["apps"], b["apps"]
    for k in (
        "checks",
        "failed",
        "availability_pct",
        "errors",
        "last_error",
        "last_status",
        "http_version",
        "cert_days_left",
        "addresses",
    ):
        assert crm[k] == crm_raw[k], (k, crm, crm_raw)
    assert crm["last_error"] == "dns" and crm["cert_days_left"] == 29
    assert _close(crm["total_median_ms"], crm_raw["total_median_ms"])
    for k in ("runs", "packets_sent", "loss_pct", "burst_loss_max_pct", "reordered"):
        assert a["voice"][k] == b["voice"][k], k
    assert a["device"] == b["device"]
    assert (a["device"]["upload_kbps_mean"], a["device"]["upload_best_kbps"], a["device"]["link_mbps"]) == (
        9600.0,
        10_000,
        None,
    )
    assert ticket_summary(a, fast["window"]) == ticket_summary(b, slow["window"])
    for needle in ("isp", "dns x1", "worst 200 ms burst loss 30.0%", "chrome 180%", "no answer for 5 samples"):
        assert needle in render_text(fast), needle


def test_long_window_with_many_lossy_minutes_estimates_loss_runs(tmp_path, monkeypatch):
    from cxpulse.collector.lookup import report

    monkeypatch.setattr(report, "LOSSY_MINUTES_MAX", 0)  # too many lossy minutes to read raw: estimated
    store = filled_store(tmp_path)
    try:
        (a,) = build(store, "maria", LONG, now_us=NOW)["agents"]
    finally:
        store.close()
    isp = a["targets"][1]
    assert isp["loss_seconds"] == 5 and isp["max_loss_run"] == 5  # one run of 5 in one minute: the estimate is exact


class _CountingStore:
    """A store that counts the raw rows it hands out (the long view must not read the window's)."""

    def __init__(self, store):
        self._s, self.raw_rows = store, 0

    def __getattr__(self, name):
        return getattr(self._s, name)

    def rows(self, *a):
        got = self._s.rows(*a)
        self.raw_rows += len(got)
        return got

    def rtt_rows(self, *a):
        got = self._s.rtt_rows(*a)
        self.raw_rows += len(got)
        return got


def test_long_window_reads_only_the_tail_and_lossy_minutes(tmp_path):
    store = open_store(str(tmp_path / "c.sqlite"))
    try:
        k = store.upsert_agent(AgentInfo("agent-9", "DESK-9", "rui", "Linux", "0.1.0", "Porto"), NOW)
        start = NOW - 3 * 3600 * S
        for h in range(3):
            gw = p.Series(target="gateway", address="10.0.0.1", method="icmp_raw", hop=1)
            for i in range(3600):
                t = h * 3600 + i
                gw.add(start + t * S, None if 5000 <= t < 5003 else 1500 + i % 7)
            store.commit_batches([PendingBatch(k, 1, h + 1, p.SampleBatch([gw], [], []))])
        counting = _CountingStore(store)
        (a,) = build(counting, "rui", 3 * 3600, now_us=NOW)["agents"]
    finally:
        store.close()
    (gw,) = a["targets"]
    assert gw["samples"] == 10_800 and gw["lost"] == 3 and gw["max_loss_run"] == 3 and gw["loss_seconds"] == 3
    # Ten minutes of tail and the lossy minute, out of 10,800 rows.
    assert counting.raw_rows <= 660, counting.raw_rows


def test_http_listener_answers_without_nagle_delay():
    """A socket made with proto 0 gets no TCP_NODELAY from asyncio: every keep-alive response then
    waited ~40 ms for the client's delayed ACK (measured: /api/v1/health 44 ms -> 1 ms)."""
    import asyncio
    import socket

    from cxpulse.collector.lookup.http import _bind

    async def main() -> int:
        sock = _bind("127.0.0.1", 0)
        got: dict = {}

        async def on(reader, writer):
            got["nodelay"] = writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            writer.close()

        srv = await asyncio.start_server(on, sock=sock)
        try:
            r, w = await asyncio.open_connection(*sock.getsockname()[:2])
            await asyncio.wait_for(r.read(), 10)
            w.close()
        finally:
            srv.close()
            await srv.wait_closed()
        return got["nodelay"]

    assert asyncio.run(main())


def test_long_window_from_rollups_on_postgresql(tmp_path, monkeypatch):
    """The same view from PostgreSQL's rollups (series_methods, app history) as from its raw rows."""
    from cxpulse.collector.lookup.ticket import ticket_summary
    from tests.stores import fresh_schema, postgres_url

    with fresh_schema(postgres_url()) as (_, url):
        real = open_store
        monkeypatch.setitem(globals(), "open_store", lambda _path: real(url))
        store = filled_store(tmp_path)
        try:
            fast, slow = _both_paths(store, "maria", LONG, NOW, monkeypatch)
        finally:
            store.close()
    (a,), (b,) = fast["agents"], slow["agents"]
    assert [(t["samples"], t["lost"], t["loss_seconds"], t["max_loss_run"], t["methods"]) for t in a["targets"]] == [
        (t["samples"], t["lost"], t["loss_seconds"], t["max_loss_run"], t["methods"]) for t in b["targets"]
    ]
    assert a["device"] == b["device"] and a["apps"][0]["last_error"] == "dns"
    assert ticket_summary(a, fast["window"]) == ticket_summary(b, slow["window"])


def test_cycle_collection_is_held_while_views_build_and_given_back_after():
    """Builds in two threads share the pause; the last one out resumes collection, also on an
    error; a program that had collection off keeps it off."""
    import gc
    import threading

    from cxpulse.collector.lookup.report import cycle_collection_held

    assert gc.isenabled()
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with cycle_collection_held():
            inside.set()
            release.wait(5)

    t = threading.Thread(target=other)
    t.start()
    inside.wait(5)
    try:
        with cycle_collection_held():
            raise ValueError("a build fails")
    except ValueError:
        pass
    assert not gc.isenabled()  # the other build still runs
    release.set()
    t.join(5)
    assert gc.isenabled()
    gc.disable()
    try:
        with cycle_collection_held():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
