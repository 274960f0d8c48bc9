"""Homes for the scenario lab: desk -> home router -> ISP -> platform, with a fault each.

Why real homes: the verdict (collector/score/triage.py) is only as right as the figures a real
agent measures on a real path, and issue 17's second lab found a lossy home LAN called "DNS" that
no generated scenario had shown. So every home here is namespaces (``tests/paths.NetPath``), a
real agent on its desk, a DNS server at its ISP the desk resolves through, a platform of its own
(``platform.py``), and one fault injected at one place. All homes stream to one collector in a
"cloud" namespace reached through each home's ISP at one service address, as desks reach a
collector on the internet. Only the lab's own namespaces carry traffic (10.253.0.0/16).

A ``Scenario`` names the fault, where it is injected, and the place the verdict must name.

The one fake, at the boundary a namespace cannot give: a desk's own CPU. Every "desk" here shares
this machine's cores with the other eight agents, the impairment bridges and whatever else runs,
so the whole-machine CPU it would read is not the desk's (a first run called five homes "this
desk (the PC)": CPU above 90% in 58% of readings). Each agent therefore reads a ``/proc/stat`` of
an idle desk, bind-mounted in a mount namespace of its own (as lxcfs does for containers); its
network counters (``/proc/net/dev``), routes and sockets stay the namespace's real ones.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO
from tests.impair import Impairment
from tests.netns import Host, Lab
from tests.paths import NetPath

__all__ = ["CLOUD_IP", "SCENARIOS", "UPLINK", "Home", "Scenario", "build_cloud", "refuse_once"]

PY = sys.executable
HERE = Path(__file__).resolve().parent
CLOUD_IP = "10.253.255.1"  # the collector's service address, routed by every home's ISP to the cloud
UPLINK = "4mbit"  # the home uplink for the bulk upload: a few Mbit/s with a queue, as a cable modem has


@dataclass(frozen=True)
class Scenario:
    name: str
    injected: str  # what was done, for the table
    expect: str | None  # the verdict's place key (triage.DOMAINS); None: nothing wrong
    impair_at: str | None = None  # NetPath link for an impairment bridge
    refused: bool = True  # takes part in the one refused check on every desk at once
    # The app checked; its name gives the platform's ("salesforce" -> "the Salesforce platform").
    # The platform faults get platforms of their own: three homes failing on one platform at once
    # is a real platform incident, not what each of those scenarios is about.
    app: str = "salesforce"
    platform: str = "Salesforce"

    @property
    def app_host(self) -> str:
        """Resolved by each home's own DNS server to that home's platform."""
        return f"acme.{self.app}.lab"


SCENARIOS = (
    Scenario("lan_loss", "5% loss each way on desk -> home router (the LAN; no radio here)", "lan", "desk-gw"),
    Scenario("isp_delay", "+100 ms (jitter 30 ms) each way on home router -> ISP", "network", "gw-isp"),
    Scenario("isp_loss", "5% loss each way on home router -> ISP", "network", "gw-isp"),
    Scenario(
        "platform_slow",
        "platform answers after 4 s (time to first byte)",
        "app",
        app="genesys",
        platform="Genesys Cloud",
    ),
    Scenario("platform_5xx", "platform answers 503", "app", app="five9", platform="Five9"),
    Scenario("dns_failing", "the desk's resolver answers SERVFAIL", "dns", app="zendesk", platform="Zendesk"),
    Scenario("clean", "nothing (control; left out of the refused check)", None, refused=False),
    Scenario("refused_once", "only the refused check every desk got at once", None),
    Scenario(
        "bulk_upload",
        "the desk uploads to a sink beyond the ISP over a 4 Mbit/s home uplink (tbf, 128 kB queue)",
        "own_traffic",
    ),
)


def build_cloud(lab: Lab) -> Host:
    cloud = lab.host("cloud")
    cloud.ip("addr", "add", f"{CLOUD_IP}/32", "dev", "lo")
    return cloud


class Home:
    """One home's namespaces and processes; the lab owns them (closing it stops everything)."""

    def __init__(self, lab: Lab, cloud: Host, sc: Scenario, workdir: Path) -> None:
        self.sc, self.workdir, self.lab = sc, workdir, lab
        self.agent_id = f"lab-{sc.name.replace('_', '-')}"
        self.user = f"lab.{sc.name}"
        self.path = NetPath(workdir, impair_at=sc.impair_at, lab=lab).__enter__()
        p = self.path
        up = lab.link(p.isp, cloud, prefix=30)
        p.isp.route(f"{CLOUD_IP}/32", via=up.b_addr)
        for name in ("desk-gw", "gw-isp"):
            cloud.route(str(p.links[name].network), via=up.a_addr)
        self.app_ip = p.hops.app
        self.resolver_ip = p.links["gw-isp"].b_addr  # the ISP's resolver, as a home router hands out
        p.desk.etc_file("resolv.conf", f"nameserver {self.resolver_ip}\n")
        self.mode_file = workdir / f"mode-{sc.name}"
        self.mode_file.write_text("ok\n")
        self._dns: subprocess.Popen | None = None
        self._logs: list = []

    def _log(self, what: str):
        f = open(self.workdir / f"{self.sc.name}-{what}.log", "ab")
        self._logs.append(f)
        return f

    def start_servers(self) -> None:
        p = self.path
        p.app.spawn(
            PY,
            str(HERE / "platform.py"),
            "--listen",
            self.app_ip,
            "--port",
            "80",
            "--mode-file",
            str(self.mode_file),
            stdout=self._log("platform"),
            stderr=subprocess.STDOUT,
        )
        self._start_dns({self.sc.app_host: {"a": [self.app_ip]}})
        if self.sc.name == "bulk_upload":
            # The home uplink: the router's WAN port shaped, with a queue of ~250 ms when full.
            p.gw.exec(
                "tc",
                "qdisc",
                "add",
                "dev",
                p.links["gw-isp"].a_if,
                "root",
                "tbf",
                "rate",
                UPLINK,
                "burst",
                "16kb",
                "limit",
                "128kb",
            )
            p.app.spawn(
                PY,
                str(HERE / "bulk.py"),
                "sink",
                "--listen",
                self.app_ip,
                "--seconds",
                "900",
                stdout=self._log("sink"),
                stderr=subprocess.STDOUT,
            )

    def _start_dns(self, table: dict) -> None:
        if self._dns is not None:
            self._dns.terminate()
            self._dns.wait(5)
        ready = self.workdir / f"dns-ready-{self.sc.name}-{time.monotonic_ns()}"
        self._dns = self.path.isp.spawn(
            PY,
            str(REPO / "tests" / "agent" / "dns_lab.py"),
            "--listen",
            self.resolver_ip,
            "--table",
            json.dumps(table),
            "--ready",
            str(ready),
            stdout=self._log("dns"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        while not ready.exists():
            if time.monotonic() > deadline or self._dns.poll() is not None:
                raise RuntimeError(f"DNS server of {self.sc.name} did not start")
            time.sleep(0.05)

    def start_agent(self, security: list[str]) -> None:
        cfg = self.workdir / f"agent-{self.sc.name}.toml"
        cfg.write_text(
            f'collector = "{CLOUD_IP}:50051"\n'
            f'state_dir = "{self.workdir / ("agent-" + self.sc.name)}"\n'
            f'site = "home-{self.sc.name}"\n'
            "probe_interval_s = 1.0\nprobe_timeout_s = 1.0\n"
            "batch_interval_s = 2.0\n"  # fresh data for the test; the verdict reads per-second samples
            "app_interval_s = 30.0\napp_timeout_s = 10.0\n"  # the real rate: the refused check is 1 of 2 a minute
            "trace_enabled = true\ntrace_interval_s = 900.0\nhop_probing = true\n"
            "[[targets]]\n"
            f'name = "app-edge"\nhost = "{self.app_ip}"\nport = 80\n'
            "[[apps]]\n"
            f'name = "{self.sc.app}"\nurl = "http://{self.sc.app_host}/"\napdex_t_ms = 500\n'
        )
        stat = self.workdir / "idle-proc-stat"
        if not stat.exists():
            stat.write_text(_idle_proc_stat())
        # unshare: the bind mount stays in the agent's own mount namespace, never the machine's.
        self.path.desk.spawn(
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            'mount --bind "$0" /proc/stat && exec "$@"',
            str(stat),
            PY,
            "-m",
            "cxpulse",
            "-v",
            "agent",
            "run",
            "--config",
            str(cfg),
            "--agent-id",
            self.agent_id,
            "--user",
            self.user,
            *security,
            stdout=self._log("agent"),
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )

    # -- the fault --

    def inject(self, seconds: float) -> None:
        """Start this home's fault (the bulk upload stops by itself after ``seconds``)."""
        n, b = self.sc.name, self.path.bridge
        if n == "lan_loss":
            b.update(both=Impairment(loss=0.05))
        elif n == "isp_delay":
            b.update(both=Impairment(delay_ms=100, jitter_ms=30))
        elif n == "isp_loss":
            b.update(both=Impairment(loss=0.05))
        elif n == "platform_slow":
            self.mode_file.write_text("slow 4000\n")
        elif n == "platform_5xx":
            self.mode_file.write_text("status 503\n")
        elif n == "dns_failing":
            self._start_dns({self.sc.app_host: {"rcode": "SERVFAIL"}})
        elif n == "bulk_upload":
            self.path.desk.spawn(
                PY,
                str(HERE / "bulk.py"),
                "send",
                "--to",
                self.app_ip,
                "--seconds",
                str(seconds),
                stdout=self._log("send"),
                stderr=subprocess.STDOUT,
            )

    def close_logs(self) -> None:
        for f in self._logs:
            f.close()


def _idle_proc_stat() -> str:
    """This machine's ``/proc/stat`` with the CPU lines of an idle desk (2% busy since boot)."""
    out = []
    for line in Path("/proc/stat").read_text().splitlines():
        if re.match(r"cpu\d*\s", line):
            line = line.split()[0] + " 1000 0 1000 98000 0 0 0 0 0 0"
        out.append(line)
    return "\n".join(out) + "\n"


_NFT_RULES = """table inet cxlab {
  chain input {
    type filter hook input priority 0;
    tcp dport 80 tcp flags & (syn | ack) == syn counter reject with tcp reset
  }
}
"""


def refuse_once(homes: list[Home], timeout: float = 40.0, log: Callable[[str], None] = print) -> dict[str, int]:
    """Every platform refuses connections until it has refused one check from its desk.

    The platform issue 17 met while "starting": one refused check on every desk at the same
    moment. A rule per platform namespace rejects SYNs to the app's port; each rule is removed as
    soon as its counter shows a refused connection (or at ``timeout``). Returns refused SYNs per home.
    """
    for h in homes:
        h.path.app.exec("nft", "-f", "-", input=_NFT_RULES)
    pending = {h.sc.name: h for h in homes}
    counts: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for name, h in list(pending.items()):
            out = h.path.app.exec("nft", "list", "table", "inet", "cxlab").stdout
            m = re.search(r"packets (\d+)", out)
            if m and int(m.group(1)) >= 1:
                h.path.app.exec("nft", "delete", "table", "inet", "cxlab")
                counts[name] = int(m.group(1))
                del pending[name]
        time.sleep(0.2)
    for name, h in pending.items():
        h.path.app.exec("nft", "delete", "table", "inet", "cxlab", check=False)
        counts[name] = 0
        log(f"{name}: no check reached the platform in {timeout:.0f} s")
    return counts
