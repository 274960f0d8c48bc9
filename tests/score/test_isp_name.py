"""The ISP named for people (collector/score/isp_name.py), and the one verdict naming it.

Real readers against real data: an IP-to-ASN MaxMind DB written here with ``mmdb-writer`` and
read by ``maxminddb``; PTR answers from a DNS server of the test's own on loopback (dnslib), asked
by dnspython through the namer's configurable name server. Then an ISP-loss scenario through a
real SQLite store and the lookup service: the page's headline, the ticket, the fleet row and the
evidence sentence all carry the same name.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time

import pytest

from cxpulse.collector.score import isp_name
from cxpulse.collector.score.isp_name import IspNamer, NamingConfig, NamingError

dnslib = pytest.importorskip("dnslib")
from dnslib import PTR, QTYPE, RCODE, RR  # noqa: E402
from dnslib.server import BaseResolver, DNSServer  # noqa: E402

pytestmark = pytest.mark.timeout(120)

VODAFONE_HOP = "80.81.192.1"  # PTR ae1-0.dus10.vodafone.de
BT_HOP = "195.2.3.4"  # PTR core1.lon.bt.co.uk: a two-label public suffix
SLOW_HOP = "195.2.3.5"  # answers after SLOW_S
MUTE_HOP = "195.2.3.6"  # never answers
GATED_HOP = "195.2.3.9"  # answers once the test opens its gate
ASN_HOP = "145.254.1.1"  # in the ASN file: AS3209 Vodafone GmbH
SLOW_S = 1.0


class _PtrTable(BaseResolver):
    """PTR answers from a table; counts the questions; can be slow or mute per address."""

    def __init__(self):
        self.names = {
            VODAFONE_HOP: "ae1-0.dus10.vodafone.de.",
            BT_HOP: "core1.lon.bt.co.uk.",
            SLOW_HOP: "edge.slow-isp.net.",
            GATED_HOP: "gw.gated-isp.net.",
            ASN_HOP: "ignored.example.org.",
        }
        self.asked: list[str] = []
        self.lock = threading.Lock()
        self.closing = threading.Event()  # the mute address answers nothing, until the server stops
        self.gate = threading.Event()  # the gated address answers once this is set

    def resolve(self, request, handler):
        qname = str(request.q.qname).rstrip(".")
        octets = qname.removesuffix(".in-addr.arpa").split(".")
        address = ".".join(reversed(octets))
        with self.lock:
            self.asked.append(address)
        reply = request.reply()
        if address == MUTE_HOP:
            self.closing.wait(10)  # longer than any timeout here: the resolver gives up first
            return reply
        if address == SLOW_HOP:
            self.closing.wait(SLOW_S)
        if address == GATED_HOP:
            self.gate.wait(10)
        name = self.names.get(address)
        if request.q.qtype == QTYPE.PTR and name:
            reply.add_answer(RR(request.q.qname, QTYPE.PTR, rdata=PTR(name), ttl=60))
        else:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


class _Quiet:
    def log_recv(self, *a):
        pass

    def log_send(self, *a):
        pass

    def log_request(self, *a):
        pass

    def log_reply(self, *a):
        pass

    def log_truncated(self, *a):
        pass

    def log_error(self, *a):
        pass

    def log_data(self, *a):
        pass


@pytest.fixture(scope="module")
def ptr_server():
    table = _PtrTable()
    server = DNSServer(table, address="127.0.0.1", port=0, logger=_Quiet())
    server.start_thread()
    port = server.server.server_address[1]
    yield table, f"127.0.0.1:{port}"
    table.closing.set()
    time.sleep(0.2)  # the waiting handlers answer while the socket is open
    server.stop()
    server.server.server_close()


@pytest.fixture(scope="module")
def asn_db(tmp_path_factory):
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-ASN", description="cxpulse test ASN")
    w.insert_network(
        IPSet(["145.254.0.0/16"]), {"autonomous_system_number": 3209, "autonomous_system_organization": "Vodafone GmbH"}
    )
    w.insert_network(
        IPSet(["2a02:8100::/27"]), {"autonomous_system_number": 3209, "autonomous_system_organization": "Vodafone GmbH"}
    )
    w.insert_network(IPSet(["62.6.0.0/16"]), {"asn": "AS2856", "as_name": "British Telecommunications PLC\n"})
    path = tmp_path_factory.mktemp("asn") / "asn.mmdb"
    w.to_db_file(str(path))
    return str(path)


def _wait_named(namer: IspNamer, address: str, tries: int = 50) -> str | None:
    """Ask until the background lookup has landed (bounded: tries x 0.1 s)."""
    for _ in range(tries):
        name = namer.name(address)
        if name is not None:
            return name
        time.sleep(0.1)
    return None


# --- the database file ---------------------------------------------------------------------------


def test_asn_file_names_the_isp_by_number_and_organization(asn_db, ptr_server):
    table, server = ptr_server
    namer = IspNamer(NamingConfig(asn_db=asn_db, nameservers=(server,)))
    try:
        before = len(table.asked)
        assert namer.name(ASN_HOP) == "AS3209 Vodafone GmbH"
        assert namer.name("2a02:8100::1") == "AS3209 Vodafone GmbH"
        assert namer.name("62.6.1.1") == "AS2856 British Telecommunications PLC"  # the ipinfo layout, cleaned
        assert len(table.asked) == before, "a database hit asks no DNS"
        # Not in the file: reverse DNS names it.
        assert _wait_named(namer, VODAFONE_HOP) == "vodafone.de"
        # The ISP hop is carrier-grade NAT (no row, no PTR): the first public hop names the ISP.
        assert namer.isp(["100.64.3.1", ASN_HOP]) == "AS3209 Vodafone GmbH"
    finally:
        namer.close()


def test_a_missing_or_corrupt_file_is_an_error_at_start(tmp_path):
    with pytest.raises(NamingError, match="does not exist"):
        IspNamer(NamingConfig(asn_db=str(tmp_path / "nope.mmdb"), reverse_dns=False))
    bad = tmp_path / "bad.mmdb"
    bad.write_bytes(b"not a maxmind db" * 100)
    with pytest.raises(NamingError, match="not a MaxMind DB file"):
        IspNamer(NamingConfig(asn_db=str(bad), reverse_dns=False))


@pytest.mark.parametrize("cmd", [["lookup", "anyone"], ["collector", "serve", "--insecure"]])
def test_the_cli_says_so_in_one_line_and_exits_2(tmp_path, cmd):
    bad = tmp_path / "asn.mmdb"
    bad.write_bytes(b"\x00" * 64)
    p = subprocess.run(
        [sys.executable, "-m", "cxpulse.cli", *cmd, "--db", str(tmp_path / "c.sqlite"), "--asn-db", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "not a MaxMind DB file" in p.stderr and "Traceback" not in p.stderr, p.stderr


# --- reverse DNS -------------------------------------------------------------------------------------


def test_ptr_names_the_registrable_domain_and_is_cached(ptr_server):
    table, server = ptr_server
    namer = IspNamer(NamingConfig(nameservers=(server,), wait_s=2.0))
    try:
        assert namer.name(VODAFONE_HOP) == "vodafone.de"
        assert namer.name(BT_HOP) == "bt.co.uk"  # the Public Suffix List, not "the last two labels"
        assert namer.name("195.2.3.7") is None  # NXDOMAIN: shown as the address
        asked = len(table.asked)
        assert [namer.name(VODAFONE_HOP), namer.name(BT_HOP), namer.name("195.2.3.7")] == [
            "vodafone.de",
            "bt.co.uk",
            None,
        ]
        assert len(table.asked) == asked, "answers (and the lack of one) are cached"
        # Private, CGNAT and documentation addresses are never asked about.
        assert [namer.name(a) for a in ("192.168.1.1", "100.64.1.1", "10.0.0.1", "203.0.113.1")] == [None] * 4
        assert len(table.asked) == asked
    finally:
        namer.close()


def test_a_slow_answer_shows_the_address_now_and_the_name_later(ptr_server):
    _, server = ptr_server
    namer = IspNamer(NamingConfig(nameservers=(server,), wait_s=0.05, dns_timeout_s=3.0))
    try:
        assert namer.name(SLOW_HOP) is None, "the request does not wait for the slow server"
        assert _wait_named(namer, SLOW_HOP) == "slow-isp.net", "the lookup went on and filled the cache"
    finally:
        namer.close()


def test_a_silent_server_times_out_and_is_remembered(ptr_server):
    table, server = ptr_server
    namer = IspNamer(NamingConfig(nameservers=(server,), wait_s=0.0, dns_timeout_s=0.3))
    try:
        assert namer.name(MUTE_HOP) is None
        fut = namer._pending.get(MUTE_HOP)
        assert fut is not None
        assert fut.result(timeout=10) is None  # the lookup's own timeout ended it
        asked = table.asked.count(MUTE_HOP)
        assert namer.name(MUTE_HOP) is None and table.asked.count(MUTE_HOP) == asked, "not asked again at once"
    finally:
        namer.close()


def test_a_request_waits_at_most_its_budget_for_many_unknown_names(ptr_server):
    _, server = ptr_server
    namer = IspNamer(NamingConfig(nameservers=(server,), wait_s=1.0, dns_timeout_s=3.0, max_pending=2))
    try:
        with isp_name.wait_budget(0.0):  # the fleet: names known show, the others are asked in the background
            assert namer.name(SLOW_HOP) is None
            assert namer.name(BT_HOP) is None
            assert namer.name(VODAFONE_HOP) is None  # the queue is full: not even asked yet
            assert len(namer._pending) <= 2
    finally:
        namer.close()


def test_a_thread_waits_for_names_at_most_wait_s_per_refill(ptr_server):
    """Without a budget (the fleet built in one thread): once a slow name used the thread's wait,
    the next unknown name is not waited for; the page shows the address. The second server answers
    0.5 s after it is asked: a request that waited (up to 1 s) would get the name, one that did not
    returns before, however slow this machine (a fast server made that a race on a loaded CI)."""
    table, server = ptr_server
    namer = IspNamer(NamingConfig(nameservers=(server,), wait_s=1.0, dns_timeout_s=3.0))
    got: list = []
    table.gate.clear()
    opener = threading.Timer(0.5, table.gate.set)

    def fleet() -> None:  # a fresh thread: a full allowance
        got.append(namer.name(MUTE_HOP))  # waits its 1 s, the server never answers: None
        opener.start()
        got.append(namer.name(GATED_HOP))  # the allowance is spent: not waited for

    try:
        t = threading.Thread(target=fleet)
        t.start()
        t.join(10)
        assert got == [None, None]
        assert _wait_named(namer, GATED_HOP) == "gated-isp.net", "it was asked in the background all the same"
    finally:
        opener.cancel()
        table.gate.set()
        namer.close()


def test_off_switch_asks_nobody(ptr_server):
    table, server = ptr_server
    namer = IspNamer(NamingConfig(nameservers=(server,), reverse_dns=False))
    try:
        assert namer.name("195.2.3.8") is None and namer.isp(["195.2.3.8"]) is None
        time.sleep(0.2)
        assert "195.2.3.8" not in table.asked
    finally:
        namer.close()


def test_name_server_option_is_checked():
    for bad in ("dns.example.com", "10.0.0.1:0", "10.0.0.1:x"):
        with pytest.raises(NamingError):
            IspNamer(NamingConfig(nameservers=(bad,)))
    IspNamer(NamingConfig(nameservers=("[::1]:5353", "127.0.0.1"))).close()


# --- the verdict --------------------------------------------------------------------------------


def _isp_loss_with_public_hops(tmp_path):
    """The isp_loss scenario, its home desks' ISP hops given real public addresses."""
    from cxpulse.collector.score import scenarios as scn
    from cxpulse.collector.store import open_store

    sc = scn.build("isp_loss", seed=1)
    sc.agents = [dataclasses.replace(a, isp=VODAFONE_HOP, public=BT_HOP) if a.site == "home" else a for a in sc.agents]
    store = open_store(str(tmp_path / "isp.sqlite"))
    scn.load(store, sc, lambda now: None, list(sc.ticks()))
    return store, sc


@pytest.mark.slow
def test_the_verdict_names_the_isp_everywhere(tmp_path, ptr_server):
    from cxpulse.collector.lookup.service import LookupService

    _, server = ptr_server
    store, sc = _isp_loss_with_public_hops(tmp_path)
    prev = isp_name.install(IspNamer(NamingConfig(nameservers=(server,), wait_s=2.0)))
    try:
        svc = LookupService(store, now_us=lambda: sc.end_us)
        desk = sc.faults[0].agents[0]
        page = svc.agent(desk, sc.t0_us, sc.end_us, 60, False, None)
        hl, text = page["headline"], page["ticket"]
        assert hl["domain"] == "network", hl
        assert hl["domain_label"] == "the ISP (vodafone.de)", hl
        assert f"{VODAFONE_HOP}, vodafone.de" in hl["sentence"], hl["sentence"]
        assert "Where: the ISP (vodafone.de)" in text, text
        assert hl["isp"] == "vodafone.de" and hl["next_step"].startswith("Contact the ISP (vodafone.de): loss"), hl
        assert f"Next step: {hl['next_step']}" in text, text
        fault = page["agent"]["score"]["fault"]
        assert fault["isp"] == "vodafone.de" and fault["label"] == "the ISP (vodafone.de)", fault
        row = next(r for r in svc.fleet(sc.minutes * 60)["worst"] if r["agent_id"] == desk)
        assert row["fault_label"] == "the ISP (vodafone.de)", row
    finally:
        isp_name.install(prev).close()
        store.close()


@pytest.mark.slow
def test_cxpulse_lookup_names_the_isp_and_can_be_told_not_to(tmp_path, ptr_server):
    """The CLI's flags end to end: --reverse-dns-server names the ISP in the lookup's verdict and
    next step; --no-reverse-dns asks nobody and shows the address."""
    table, server = ptr_server
    store, sc = _isp_loss_with_public_hops(tmp_path)
    store.close()
    days = int((time.time() * 1e6 - sc.t0_us) // (86_400 * 1e6)) + 2  # the scenario's fixed day, in the window
    base = [
        sys.executable,
        "-m",
        "cxpulse.cli",
        "lookup",
        sc.faults[0].agents[0],
        "--db",
        str(tmp_path / "isp.sqlite"),
        "--window",
        f"{days}d",
        "--reverse-dns-server",
        server,
    ]
    named = subprocess.run(base, capture_output=True, text=True, timeout=120)
    assert named.returncode == 0, named.stderr
    assert "the ISP (vodafone.de)" in named.stdout and "Contact the ISP (vodafone.de)" in named.stdout, named.stdout
    table.names[VODAFONE_HOP] = "renamed.example.net."  # a new process would read this name if it asked
    asked = table.asked.count(VODAFONE_HOP)
    off = subprocess.run([*base, "--no-reverse-dns"], capture_output=True, text=True, timeout=120)
    table.names[VODAFONE_HOP] = "ae1-0.dus10.vodafone.de."
    assert off.returncode == 0, off.stderr
    assert "the ISP (beyond the router)" in off.stdout and f"(isp {VODAFONE_HOP})" in off.stdout, off.stdout
    assert "example.net" not in off.stdout and table.asked.count(VODAFONE_HOP) == asked, "nobody was asked"


@pytest.mark.slow
def test_without_a_namer_the_verdict_keeps_the_address(tmp_path):
    from cxpulse.collector.lookup.service import LookupService

    store, sc = _isp_loss_with_public_hops(tmp_path)
    prev = isp_name.install(None)
    try:
        page = LookupService(store, now_us=lambda: sc.end_us).agent(
            sc.faults[0].agents[0], sc.t0_us, sc.end_us, 60, False, None
        )
        hl = page["headline"]
        assert hl["domain_label"] == "the ISP (beyond the router)" and f"(isp {VODAFONE_HOP})" in hl["sentence"], hl
        assert hl["next_step"].startswith("Contact the ISP: loss"), hl
    finally:
        isp_name.install(prev)
        store.close()
