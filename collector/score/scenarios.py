"""Scenario generator: sample streams with a known fault, for testing triage and incident detection.
A small seeded contact center measured as the agent measures it, faults injected on some agents.
Design notes: docs/collector-internals.md, "collector/score/scenarios.py".
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cxpulse.v1.payload import Event, SampleBatch, Series

if TYPE_CHECKING:
    from cxpulse.agent.wifi.parsers._model import WifiReading

__all__ = ["SCENARIOS", "AgentSpec", "ExpectedIncident", "Fault", "Scenario", "build", "load", "world"]

S = 1_000_000
T0_US = 1_790_000_040 * S  # a minute boundary (UTC)
BATCH_S = 10
APP_EVERY_S = 30
VOICE_EVERY_S = 60
DEVICE_EVERY_S = 10
WIFI_EVERY_S = 5
APPS = ("salesforce", "genesys")
MEDIA = "media"

# Fault kind -> the fault domain triage should name (collector/score/triage.py DOMAINS).
DOMAIN_OF = {
    "weak_wifi": "wifi",
    "congested_uplink": "network",
    "isp_loss": "network",
    "site_wan_down": "network",
    "vpn_hairpin": "vpn",
    "salesforce_outage": "app",
    "busy_cpu": "device",
    "dns_failing": "dns",
    "lan_loss": "lan",
    "bulk_upload": "own_traffic",
}


@dataclass(frozen=True)
class AgentSpec:
    agent_id: str
    user: str
    host: str
    site: str
    gateway: str
    isp: str
    public: str
    wifi: bool
    vpn: bool = False
    gw_ms: float = 0.5  # typical RTT to the gateway (the tunnel's peer for a VPN desk)
    isp_ms: float = 6.0  # added by the access link to the ISP hop
    public_ms: float = 4.0
    media_ms: float = 18.0


@dataclass(frozen=True)
class Fault:
    kind: str
    agents: tuple[str, ...]
    start_us: int
    end_us: int
    app: str | None = None

    @property
    def domain(self) -> str:
        return DOMAIN_OF[self.kind]

    def active(self, agent_id: str, ts_us: int) -> bool:
        return agent_id in self.agents and self.start_us <= ts_us < self.end_us


@dataclass(frozen=True)
class ExpectedIncident:
    kind: str  # "platform" or "site"
    scope: str  # the app or the site
    start_us: int
    end_us: int
    agents: tuple[str, ...]


@dataclass
class Scenario:
    name: str
    agents: list[AgentSpec]
    faults: list[Fault]
    minutes: int
    seed: int = 1
    t0_us: int = T0_US

    @property
    def end_us(self) -> int:
        return self.t0_us + self.minutes * 60 * S

    def truth(self, agent_id: str, start_us: int, end_us: int) -> str:
        """The domain of the fault that overlaps this agent's window most, or "none"."""
        best, overlap = "none", 0
        for f in self.faults:
            if agent_id in f.agents:
                o = min(end_us, f.end_us) - max(start_us, f.start_us)
                if o > overlap:
                    best, overlap = f.domain, o
        return best

    def expected_incidents(self) -> list[ExpectedIncident]:
        out = []
        by_id = {a.agent_id: a for a in self.agents}
        for f in self.faults:
            if f.kind == "salesforce_outage":
                out.append(ExpectedIncident("platform", f.app or "salesforce", f.start_us, f.end_us, f.agents))
            elif f.kind == "site_wan_down":
                out.append(ExpectedIncident("site", by_id[f.agents[0]].site, f.start_us, f.end_us, f.agents))
        return out

    def ticks(self) -> Iterator[tuple[int, list[tuple[AgentSpec, int, SampleBatch]]]]:
        """Per batch interval: (time at its end, [(agent, seq, batch)]), in time order."""
        gens = [_AgentGen(a, self) for a in self.agents]
        for n in range(self.minutes * 60 // BATCH_S):
            t = self.t0_us + n * BATCH_S * S
            yield t + BATCH_S * S, [(g.spec, n + 1, g.batch(t)) for g in gens]


# --- the generator of one agent ---------------------------------------------------------------------


class _AgentGen:
    """One desk: its samples second by second, its detector's and Wi-Fi watcher's events."""

    def __init__(self, spec: AgentSpec, sc: Scenario):
        from cxpulse.agent.detector import Detector  # the agent's own detector: realistic events
        from cxpulse.agent.wifi.watcher import WifiWatcher

        self.spec, self.sc = spec, sc
        self.rng = random.Random(f"{sc.seed}:{sc.name}:{spec.agent_id}")
        self.det = Detector()
        self.watch = WifiWatcher()
        self.app_phase = self.rng.randrange(APP_EVERY_S)
        self.voice_phase = self.rng.randrange(VOICE_EVERY_S)
        self.dev_phase = self.rng.randrange(DEVICE_EVERY_S)
        self.wifi_phase = self.rng.randrange(WIFI_EVERY_S)
        self.ap = 0  # which AP a roaming desk is on
        tag = zlib.crc32(spec.agent_id.encode()) % 256
        self.bssids = (f"02:00:00:{tag:02x}:00:01", f"02:00:00:{tag:02x}:00:02")

    def active(self, ts_us: int) -> set[str]:
        return {f.kind for f in self.sc.faults if f.active(self.spec.agent_id, ts_us)}

    def batch(self, t_us: int) -> SampleBatch:
        a = self.spec
        series = {
            "gateway": Series("gateway", a.gateway, "icmp_raw"),
            "isp": Series("isp", a.isp, "icmp_raw", hop=2),
            "public": Series("public", a.public, "icmp_raw", hop=3),
            MEDIA: Series(MEDIA, "192.0.2.50", "icmp_raw"),
        }
        http = {app: Series(app, f"192.0.2.{10 + i}", "https", kind="http") for i, app in enumerate(APPS)}
        voice = Series("reflector", "192.0.2.60", "udp_reflect", kind="voice")
        dev = Series("device", "local", "os", kind="device")
        wifi = Series("wifi", "wlan0", "nl80211", kind="wifi")
        events: list[Event] = []
        for sec in range(BATCH_S):
            ts = t_us + sec * S
            faults = self.active(ts)
            path = self._path(faults)
            jitter_off = self.rng.randrange(0, 2000)
            for name, s in series.items():
                v = path[name]
                s.add(ts + jitter_off, v)
                events += self.det.observe_rtt(name, ts + jitter_off, v)
            k = ts // S
            if (k - self.app_phase) % APP_EVERY_S == 0:
                for app, s in http.items():
                    vals = self._check(app, faults, path)
                    s.add(ts + 300_000, **vals)
                    events += self.det.observe_app(app, ts + 300_000, vals.get("err"), None)
            if (k - self.voice_phase) % VOICE_EVERY_S == 0:
                voice.add(ts + 500_000, **self._voice_run(faults, path))
            if (k - self.dev_phase) % DEVICE_EVERY_S == 0:
                vals = self._device(faults, ts)
                dev.add(ts + 700_000, **vals)
                events += self.det.observe_device(ts + 700_000, vals["cpu"] / 10, vals["mem"] / 10, vals["top"] or "")
            if a.wifi and (k - self.wifi_phase) % WIFI_EVERY_S == 0:
                vals, reading = self._wifi(faults, ts)
                wifi.add(ts + 800_000, **vals)
                events += self.watch.observe(ts + 800_000, reading)
        out = [*series.values(), *http.values(), voice, dev] + ([wifi] if a.wifi else [])
        return SampleBatch([s for s in out if len(s)], events)

    # -- RTT per target, this second --

    def _path(self, faults: set[str]) -> dict[str, int | None]:
        a, r = self.spec, self.rng
        gw = a.gw_ms * math.exp(r.gauss(0, 0.25))
        gw_loss = 0.0
        beyond_extra, beyond_loss = 0.0, 0.0005
        if a.wifi:
            gw += r.expovariate(1 / 1.5)
            if r.random() < 0.004:
                gw += r.uniform(15, 40)  # the occasional Wi-Fi retry burst of a healthy link
        if "weak_wifi" in faults:
            gw += r.expovariate(1 / 45.0)
            gw_loss = 0.07
        if "lan_loss" in faults:
            gw_loss = 0.05  # desk -> home/branch router: a bad cable, port or router (issue 17's second lab)
        if "vpn_hairpin" in faults:
            gw += 140 + r.expovariate(1 / 60.0)
            gw_loss = 0.03
        if "busy_cpu" in faults:
            gw += r.uniform(0, 30)  # the probe's own timestamps wait for a busy scheduler
        if faults & {"congested_uplink", "bulk_upload"}:  # the home uplink's queue, whoever fills it
            beyond_extra += 90 + 110 * (0.5 + 0.5 * math.sin(r.random() * 6.28)) + r.expovariate(1 / 30.0)
            beyond_loss = 0.015
        if "isp_loss" in faults:
            beyond_loss = 0.13
            beyond_extra += r.uniform(0, 6)
        if "site_wan_down" in faults:
            beyond_loss = 1.0
        gw_lost = r.random() < gw_loss
        out: dict[str, int | None] = {"gateway": None if gw_lost else _us(gw)}
        acc = gw
        for name, add in (("isp", a.isp_ms), ("public", a.public_ms), (MEDIA, a.media_ms)):
            acc += add * math.exp(r.gauss(0, 0.08))
            lost = r.random() < gw_loss or r.random() < beyond_loss
            out[name] = None if lost else _us(acc + beyond_extra)
        self._media_ms = acc + beyond_extra
        self._loss = 1 - (1 - gw_loss) * (1 - beyond_loss)
        return out

    # -- app checks --

    def _check(self, app: str, faults: set[str], path: dict) -> dict:
        r = self.rng
        rtt = self._media_ms + r.uniform(0, 4)
        if "site_wan_down" in faults:
            return {"dns": _us(r.uniform(1, 5)), "err": "timeout"}
        if r.random() < self._loss * 0.5:
            return {"dns": _us(r.uniform(1, 5)), "err": "timeout"}  # a lossy path loses whole checks too
        if "dns_failing" in faults:
            if r.random() < 0.8:
                return {"err": "dns"}
            dns = r.uniform(2500, 4500)
        else:
            dns = r.uniform(0.5, 3) if r.random() < 0.8 else r.uniform(8, 25)
        if "lan_loss" in faults and r.random() < 0.1:
            dns += 1000  # a DNS packet lost on the near link: the resolver retries after 1 s
        if app == "salesforce" and "salesforce_outage" in faults:
            if r.random() < 0.85:
                return {
                    "dns": _us(dns),
                    "tcp": _us(rtt),
                    "tls": _us(2 * rtt),
                    "ttfb": _us(r.uniform(20, 60)),
                    "status": 503,
                    "ver": "HTTP/2",
                    "err": "http",
                }
            ttfb = r.uniform(4000, 9000)
        else:
            ttfb = r.uniform(40, 120) + rtt
        if "vpn_hairpin" in faults:
            ttfb += r.uniform(900, 2200)  # the secure web gateway inspects, in the far data center
        if "busy_cpu" in faults:
            ttfb += r.uniform(250, 900)
        if r.random() < 0.0005:
            return {"dns": _us(dns), "tcp": _us(rtt), "err": "timeout"}  # a rare blip on a clean day
        tcp, tls = rtt, 2 * rtt
        total = dns + tcp + tls + ttfb + r.uniform(5, 20)
        return {
            "dns": _us(dns),
            "tcp": _us(tcp),
            "tls": _us(tls),
            "ttfb": _us(ttfb),
            "total": _us(total),
            "status": 200,
            "ver": "HTTP/2",
            "cert": 60,
        }

    # -- a voice-cadence run: 250 packets at 20 ms --

    def _voice_run(self, faults: set[str], path: dict) -> dict:
        r = self.rng
        if "site_wan_down" in faults:
            return {"sent": 250, "recv": 0, "err": "timeout"}
        lost_flags = [r.random() < self._loss for _ in range(250)]
        recv = 250 - sum(lost_flags)
        longest = run = 0
        for f in lost_flags:
            run = run + 1 if f else 0
            longest = max(longest, run)
        burst = max(sum(lost_flags[i : i + 10]) for i in range(0, 241)) * 100  # permille of a 200 ms window
        jit = 1.0 + r.uniform(0, 2)
        if faults & {"congested_uplink", "bulk_upload", "weak_wifi", "vpn_hairpin"}:
            jit += r.uniform(15, 45)
        if "busy_cpu" in faults:
            jit += r.uniform(5, 15)
        rtt = self._media_ms
        return {
            "sent": 250,
            "recv": recv,
            "dup": 0,
            "reord": 0,
            "rtt": _us(rtt),
            "rtt95": _us(rtt * 1.3 + jit),
            "jit": _us(jit),
            "loss": round(1000 * (250 - recv) / 250),
            "burst": burst,
            "run": longest,
        }

    # -- device and Wi-Fi readings --

    def _device(self, faults: set[str], ts: int = 0) -> dict:
        a, r = self.spec, self.rng
        if "busy_cpu" in faults:
            cpu, mem, top = r.randint(930, 1000), r.randint(780, 900), "MsMpEng.exe 88%, chrome.exe 40%"
        else:
            cpu, mem, top = r.randint(80, 420), r.randint(450, 700), None
        iface, kind = ("tun0", "vpn") if a.vpn else ("wlan0", "wifi") if a.wifi else ("eth0", "ethernet")
        # The desk's own traffic, kbit/s: a call and a CRM, against the best its link carried (a home
        # line of 10/50 Mbit/s, a branch's 100/300); no draws from ``rng``, so adding these figures
        # left every other scenario's samples as they were.
        home = a.site == "home"
        up, dn = 150 + (ts // S) % 7 * 10, 900 + (ts // S) % 11 * 20
        if "bulk_upload" in faults:
            up = 9_400 + (ts // S) * 37 % 400  # a cloud backup filling the 10 Mbit/s uplink
        return {
            "cpu": cpu,
            "mem": mem,
            "top": top,
            "nicerr": 0,
            "if": iface,
            "ifk": kind,
            "vpn": "tun0" if a.vpn else None,
            "proxy": None,
            "up": up,
            "dn": dn,
            "upb": 10_000 if home else 100_000,
            "dnb": 50_000 if home else 300_000,
            "spd": None if a.wifi or a.vpn else 1000,
        }

    def _wifi(self, faults: set[str], ts: int) -> tuple[dict, WifiReading]:
        from cxpulse.agent.wifi.parsers._model import WifiReading

        r = self.rng
        if "weak_wifi" in faults:
            rssi = round(r.gauss(-79, 3.5))
            noise = -92
            tx = r.choice((6_500, 13_000, 19_500, 26_000, 39_000, 72_200))
            if r.random() < 0.12:
                self.ap = 1 - self.ap  # ping-pong between two weak APs
        else:
            rssi = round(r.gauss(-55, 2.5))
            noise = -95
            tx = r.choice((433_300, 585_000, 780_000, 866_700))
        bssid = self.bssids[self.ap]
        ssid = "corp" if self.spec.site != "home" else "home-net"
        vals = {
            "conn": 1,
            "ssid": ssid,
            "bssid": bssid,
            "rssi": rssi,
            "noise": noise,
            "snr": rssi - noise,
            "ch": 36,
            "mhz": 5180,
            "band": "5",
            "phy": "802.11ac",
            "tx": tx,
            "rx": tx,
            "q": None,
        }
        reading = WifiReading(
            True,
            "nl80211",
            "wlan0",
            ssid,
            bssid,
            rssi,
            noise,
            36,
            5180,
            "5",
            80,
            "802.11ac",
            tx / 1000,
            tx / 1000,
        )
        return vals, reading


def load(
    store, sc: Scenario, on_tick: Callable[[int], None] | None = None, ticks: Iterable[tuple[int, list]] | None = None
) -> dict[str, int]:
    """Commit the scenario through a real store, one group commit per batch interval (as the
    ingest writer would); ``on_tick(now_us)`` runs after each. Returns agent id -> agent key.
    ``ticks``: the scenario's ``ticks()`` generated earlier (batches are not changed by a commit)."""
    from ..store import AgentInfo, PendingBatch

    keys = {
        a.agent_id: store.upsert_agent(AgentInfo(a.agent_id, a.host, a.user, "Windows 11", "0.1.0", a.site), sc.t0_us)
        for a in sc.agents
    }
    for now, items in ticks if ticks is not None else sc.ticks():
        store.commit_batches([PendingBatch(keys[a.agent_id], 1, seq, b) for a, seq, b in items])
        if on_tick is not None:
            on_tick(now)
    return keys


def _us(ms: float) -> int:
    return max(1, round(ms * 1000))


# --- the world and the scenarios --------------------------------------------------------------------


def world() -> list[AgentSpec]:
    """Two branch sites (shared gateway and ISP per site) and four home agents (each its own ISP)."""
    out = []
    for i in range(4):
        out.append(
            AgentSpec(
                f"lis-{i + 1}",
                f"ana.lis{i + 1}",
                f"LIS-DESK-{i + 1:02d}",
                "Lisbon",
                "10.10.0.1",
                "203.0.113.1",
                "203.0.113.9",
                wifi=i >= 2,
                gw_ms=0.4 if i < 2 else 2.0,
            )
        )
    for i in range(4):
        out.append(
            AgentSpec(
                f"opo-{i + 1}",
                f"rui.opo{i + 1}",
                f"OPO-DESK-{i + 1:02d}",
                "Porto",
                "10.20.0.1",
                "198.51.100.1",
                "198.51.100.9",
                wifi=True,
                gw_ms=2.0,
                media_ms=22.0,
            )
        )
    homes = [("hom-1", True, False), ("hom-2", True, False), ("hom-3", True, True), ("hom-4", False, True)]
    for i, (aid, wifi, vpn) in enumerate(homes):
        out.append(
            AgentSpec(
                aid,
                f"home.agent{i + 1}",
                f"HOME-PC-{i + 1:02d}",
                "home",
                "10.99.0.1" if vpn else "192.168.1.1",
                f"100.64.{i + 1}.1",
                f"198.18.{i + 1}.1",
                wifi=wifi,
                vpn=vpn,
                gw_ms=22.0 if vpn else (2.5 if wifi else 0.5),
                isp_ms=9.0 + 3 * i,
                media_ms=24.0,
            )
        )
    return out


def _at(minute: float) -> int:
    return T0_US + round(minute * 60 * S)


def build(name: str, seed: int = 1, minutes: int = 30) -> Scenario:
    """One named scenario of ``SCENARIOS``; ``seed`` varies the samples (and fault times a little)."""
    make = SCENARIOS[name]
    rng = random.Random(f"{name}:{seed}")
    return Scenario(name, world(), make(rng), minutes if name != "clean_day" else max(minutes, 60), seed)


def _span(rng: random.Random, start_min: float, length_min: float) -> tuple[int, int]:
    start = start_min + rng.uniform(0, 1.5)
    return _at(start), _at(start + length_min + rng.uniform(-1, 1))


def _one(
    kind: str, agents: list[tuple[str, float, float]], app: str | None = None
) -> Callable[[random.Random], list[Fault]]:
    def make(rng: random.Random) -> list[Fault]:
        return [Fault(kind, (aid,), *_span(rng, s, n), app) for aid, s, n in agents]

    return make


def _everyone(kind: str, agents: tuple[str, ...], start: float, length: float, app: str | None = None):
    def make(rng: random.Random) -> list[Fault]:
        return [Fault(kind, agents, *_span(rng, start, length), app)]

    return make


ALL = tuple(a.agent_id for a in world())
PORTO = tuple(a.agent_id for a in world() if a.site == "Porto")

SCENARIOS: dict[str, Callable[[random.Random], list[Fault]]] = {
    "weak_wifi": _one("weak_wifi", [("lis-3", 6, 8), ("opo-2", 12, 7), ("hom-1", 18, 8)]),
    "congested_uplink": _one("congested_uplink", [("hom-1", 8, 9), ("hom-2", 15, 8)]),
    "isp_loss": _one("isp_loss", [("hom-2", 7, 8), ("hom-1", 16, 9)]),
    "vpn_hairpin": _one("vpn_hairpin", [("hom-3", 7, 9), ("hom-4", 16, 8)]),
    "salesforce_outage": _everyone("salesforce_outage", ALL, 10, 8, app="salesforce"),
    "site_wan_down": _everyone("site_wan_down", PORTO, 11, 7),
    "busy_cpu": _one("busy_cpu", [("lis-1", 7, 8), ("opo-3", 16, 8)]),
    "dns_failing": _one("dns_failing", [("hom-1", 8, 8), ("lis-4", 16, 8)]),
    "lan_loss": _one("lan_loss", [("hom-2", 7, 8), ("lis-1", 16, 8)]),  # a Wi-Fi home desk, a wired branch one
    "bulk_upload": _one("bulk_upload", [("hom-2", 8, 9), ("hom-1", 17, 8)]),  # the desk fills its own uplink
    "clean_day": lambda rng: [],
}
