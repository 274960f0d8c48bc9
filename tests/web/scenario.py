"""Stores filled with a known day, for the lookup API and page tests.

The worst case the page must load in under a second is one agent's full day at 1 Hz on three
hops (86,400 RTT samples each), plus Wi-Fi every 5 s, app checks every 30 s and the events the
detector would have sent. What is wrong and when is fixed here, so tests can assert on it:

The day is the last 24 h up to the current minute (so the page's "last 24h" button shows it):

- from 10 h into the day, for 20 min: weak Wi-Fi (RSSI about -79 dBm), RTT and jitter up from the
  gateway on, the CRM app slow;
- from 14 h into the day, for 5 min: the ISP hop loses 30% of its samples (the gateway is clean);
- otherwise a clean day: gateway ~2 ms, ISP ~9 ms, CRM edge ~21 ms.
"""

from __future__ import annotations

import random
import time

from cxpulse.collector.store import AgentInfo, PendingBatch, Store
from cxpulse.v1 import payload as p

S = 1_000_000
# The figures are reproducible (seeded); only the day's position in time follows the clock.
DAY_END = int(time.time()) // 60 * 60 * S
DAY0 = DAY_END - 86_400 * S
WIFI_BAD = (DAY0 + 10 * 3600 * S, DAY0 + (10 * 3600 + 1200) * S)
ISP_LOSS = (DAY0 + 14 * 3600 * S, DAY0 + (14 * 3600 + 300) * S)

DAY_EVENTS = [
    p.Event(
        "wifi_weak:1",
        "wifi_weak_signal",
        "wlan0",
        WIFI_BAD[0],
        WIFI_BAD[1],
        2,
        "RSSI -79 dBm for 20 min (below -75 dBm)",
    ),
    p.Event(
        "spike:gw:1",
        "latency_spike",
        "gateway",
        WIFI_BAD[0] + 60 * S,
        WIFI_BAD[0] + 75 * S,
        2,
        "gateway RTT 55 ms over 15 s (baseline 2 ms)",
    ),
    p.Event(
        "loss:hop2:1", "loss_burst", "hop2", ISP_LOSS[0], ISP_LOSS[1], 3, "30% loss at hop 2 for 5 min; gateway clean"
    ),
]

MARIA = AgentInfo("agent-7f3a", "DESK-042", "maria.silva", "Windows 11", "0.1.0", "Lisbon floor 3")


def _in(ts: int, span: tuple[int, int]) -> bool:
    return span[0] <= ts < span[1]


def fill_day(store: Store, info: AgentInfo = MARIA, start_us: int = DAY0, seconds: int = 86_400, seed: int = 7) -> int:
    """One agent, ``seconds`` of 1 Hz data from ``start_us``, committed an hour per batch; returns its key."""
    rnd = random.Random(seed)
    key = store.upsert_agent(info, start_us + seconds * S)
    seq = 0
    for hour0 in range(0, seconds, 3600):
        gw = p.Series(target="gateway", address="192.168.1.1", method="icmp_raw", hop=1)
        isp = p.Series(target="hop2", address="100.64.0.1", method="icmp_raw", hop=2)
        crm = p.Series(target="crm-edge", address="203.0.113.10", method="tcp_connect", hop=3)
        wifi = p.Series(target="wlan0", address="local", method="nl80211", kind="wifi")
        app = p.Series(target="salesforce", address="203.0.113.20", method="https", kind="http")
        for i in range(hour0, min(hour0 + 3600, seconds)):
            ts = start_us + i * S + rnd.randrange(0, 2000)
            bad_wifi = _in(ts, WIFI_BAD)
            extra = rnd.expovariate(1 / 25_000) if bad_wifi else rnd.expovariate(1 / 400)
            gw_rtt = int(1800 + extra)
            gw.add(ts, gw_rtt)
            lost = _in(ts, ISP_LOSS) and rnd.random() < 0.3
            isp.add(ts + 300, None if lost else int(gw_rtt + 7000 + rnd.expovariate(1 / 500)))
            crm.add(ts + 600, None if lost else int(gw_rtt + 19000 + rnd.expovariate(1 / 800)))
            if i % 5 == 0:
                rssi = -79 + rnd.randrange(-2, 3) if bad_wifi else -55 + rnd.randrange(-2, 3)
                wifi.add(
                    ts,
                    conn=1,
                    ssid="corp",
                    bssid="aa:bb:cc:00:00:01",
                    rssi=rssi,
                    noise=-92,
                    snr=-92 * -1 + rssi,
                    ch=36,
                    mhz=5180,
                    band="5",
                    phy="802.11ax",
                    tx=60_000 if bad_wifi else 866_000,
                    rx=400_000,
                    q=None,
                )
            if i % 30 == 0:
                slow = bad_wifi
                app.add(
                    ts,
                    dns=3000,
                    tcp=22000,
                    tls=45000,
                    ttfb=400_000 if slow else 140_000,
                    total=700_000 if slow else 210_000,
                    status=200,
                    ver="HTTP/2",
                    cert=80,
                    err=None,
                )
        span = (start_us + hour0 * S, start_us + (hour0 + 3600) * S)
        events = [e for e in DAY_EVENTS if _in(e.start_us, span)]
        seq += 1
        store.commit_batches([PendingBatch(key, 1, seq, p.SampleBatch([gw, isp, crm, wifi, app], events, []))])
    return key


def fill_fleet(store: Store, until_us: int, minutes: int = 15) -> list[AgentInfo]:
    """A few more agents with ``minutes`` of data up to ``until_us``: one site with a bad ISP hop."""
    agents = [
        AgentInfo("agent-0001", "DESK-101", "joao.pereira", "Windows 11", "0.1.0", "Porto"),
        AgentInfo("agent-0002", "DESK-102", "ana.costa", "Windows 10", "0.1.0", "Porto"),
        AgentInfo("agent-0003", "LAPTOP-77", "rui.santos", "macOS 15", "0.1.0", "Home"),
    ]
    rnd = random.Random(11)
    start = until_us - minutes * 60 * S
    for info in agents:
        key = store.upsert_agent(info, until_us)
        gw = p.Series(target="gateway", address="10.1.0.1", method="icmp_raw", hop=1)
        isp = p.Series(target="hop2", address="100.64.9.1", method="icmp_raw", hop=2)
        app = p.Series(target="salesforce", address="203.0.113.20", method="https", kind="http")
        for i in range(minutes * 60):
            ts = start + i * S
            gw.add(ts, 1500 + rnd.randrange(0, 400))
            lossy = info.agent_id == "agent-0003" and rnd.random() < 0.12
            isp.add(ts + 200, None if lossy else 9000 + rnd.randrange(0, 900))
            if i % 30 == 0:
                app.add(
                    ts,
                    dns=2000,
                    tcp=20000,
                    tls=40000,
                    ttfb=150_000,
                    total=200_000,
                    status=200,
                    ver="HTTP/2",
                    cert=80,
                    err=None,
                )
        events = []
        if info.agent_id == "agent-0003":
            events.append(
                p.Event(
                    "loss:hop2:9",
                    "loss_burst",
                    "hop2",
                    start + 60 * S,
                    start + 120 * S,
                    2,
                    "12% loss at hop 2; gateway clean",
                )
            )
        store.commit_batches([PendingBatch(key, 1, 1, p.SampleBatch([gw, isp, app], events, []))])
    return agents
