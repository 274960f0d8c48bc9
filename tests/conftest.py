"""Shared fixtures: real collector and agent processes on loopback, bounded in time, always stopped."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.stores import store, store_url  # noqa: F401  (shared fixtures: a fresh store on each backend)

REPO = Path(__file__).resolve().parent.parent
CXPULSE = [sys.executable, "-m", "cxpulse"]

# Test tiers (markers declared in pyproject.toml). A plain ``pytest`` runs the fast tier: these are
# left out unless named (-m, --all-tiers, or the test file on the command line); ./dev.sh test and
# CI (CXPULSE_REQUIRE_ALL=1) run every tier, so no tier is ever dropped there.
TIERS = ("slow", "root", "lab", "browser", "packaging")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--all-tiers", action="store_true", help=f"also run the {', '.join(TIERS)} tiers (./dev.sh test and CI do)"
    )


# A test that asks for one of these fixtures is in that tier wherever it lives.
FIXTURE_TIERS = {
    "lab": "root",  # tests/agent/conftest.py: a namespace lab
    "named_app": "root",  # tests/agent/test_http_probe.py: an app behind a DNS server in namespaces
    "voice_lab": "root",  # tests/test_voice.py: an impaired path between namespaces
    "browser": "browser",  # tests/web/test_browser.py: Chromium
}


@pytest.hookimpl(tryfirst=True)  # before -m selects: the fixtures' tiers count there too
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for fixture in set(getattr(item, "fixturenames", ())) & FIXTURE_TIERS.keys():
            item.add_marker(FIXTURE_TIERS[fixture])
    if os.environ.get("CXPULSE_REQUIRE_ALL") == "1" and config.getoption("markexpr"):
        raise pytest.UsageError("CXPULSE_REQUIRE_ALL=1 runs every tier: -m would leave some out")
    if config.getoption("--all-tiers") or config.getoption("markexpr") or os.environ.get("CXPULSE_REQUIRE_ALL") == "1":
        return
    named = {Path(a.split("::")[0]).resolve() for a in config.args if Path(a.split("::")[0]).is_file()}
    keep, dropped = [], []
    for item in items:
        tiered = any(item.get_closest_marker(t) for t in TIERS)
        (dropped if tiered and item.path.resolve() not in named else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
        config.stash[_DROPPED] = len(dropped)


_DROPPED = pytest.StashKey[int]()


def pytest_report_header(config: pytest.Config) -> str | None:
    if config.getoption("--all-tiers") or os.environ.get("CXPULSE_REQUIRE_ALL") == "1":
        return f"tiers: all ({', '.join(TIERS)} included)"
    return None


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    n = config.stash.get(_DROPPED, 0)
    if n:
        terminalreporter.write_line(
            f"fast tier: {n} tests of the {'/'.join(TIERS)} tiers left out; "
            "./dev.sh test (or pytest --all-tiers) runs them"
        )


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll until predicate() is truthy; fail with `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Proc:
    """A cxpulse subprocess with its log in a file; stopped at teardown whatever happens."""

    def __init__(self, args: list[str], log_path: Path):
        self.args = args
        self.log_path = log_path
        self.p: subprocess.Popen | None = None

    def start(self) -> Proc:
        self.log = open(self.log_path, "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.p = subprocess.Popen(CXPULSE + self.args, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        if self.p is None:
            return None
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self.log.close()
        code, self.p = self.p.returncode, None
        return code

    def alive(self) -> bool:
        return self.p is not None and self.p.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


_PKI: Path | None = None
# Collector address -> what an agent needs to reach it (CA or --insecure, and an enrollment token).
_AGENT_ARGS: dict[str, list[str]] = {}
_LAST: list[str] = []


def shared_pki() -> Path:
    """One CA and a server certificate for localhost / 127.0.0.1 / ::1, shared by the session's
    collectors, so an agent moving between two test collectors trusts both. Removed at exit."""
    global _PKI
    if _PKI is None:
        from cxpulse.collector.security.tls import init_dir

        d = Path(tempfile.mkdtemp(prefix="cxpulse-test-pki-"))
        atexit.register(shutil.rmtree, d, True)
        init_dir(d / "tls", ["localhost"], ["127.0.0.1", "::1"])
        _PKI = d / "tls"
    return _PKI


def enroll_token(db: str | Path, uses: int = 1000) -> str:
    """A fresh enrollment token in this collector database (SQLite path or PostgreSQL URL)."""
    from cxpulse.collector.security.registry import Registry

    reg = Registry.open(str(db))
    try:
        return reg.create_token(uses=uses, note="tests")[0]
    finally:
        reg.close()


_DBS: dict[str, str] = {}
_CREDS: dict[tuple[str, str], str] = {}


def client_channel(address: str, options: list | None = None, *, aio: bool = False):
    """A gRPC channel to a CollectorProc as a raw client (tests that hand-craft streams): TLS
    against the test CA unless that collector serves ``--insecure``."""
    import grpc

    mod = grpc.aio if aio else grpc
    if "--insecure" in _AGENT_ARGS.get(address, ["--insecure"]):
        return mod.insecure_channel(address, options=options)
    creds = grpc.ssl_channel_credentials(root_certificates=(shared_pki() / "ca.pem").read_bytes())
    return mod.secure_channel(address, creds, options=options)


def agent_metadata(collector: str | Path, agent_id: str) -> tuple[tuple[str, str], ...]:
    """Stream metadata with a credential for ``agent_id`` (provisioned once) in the database of the
    CollectorProc at this address, or in this database (path or URL)."""
    return agent_metadata_many(collector, [agent_id])[agent_id]


def agent_metadata_many(collector: str | Path, agent_ids: list[str]) -> dict[str, tuple[tuple[str, str], ...]]:
    """``agent_metadata`` for many simulated agents, provisioned in one transaction."""
    from cxpulse.collector.security.registry import Registry

    db = _DBS.get(str(collector), str(collector))
    missing = [a for a in dict.fromkeys(agent_ids) if (db, a) not in _CREDS]
    if missing:
        reg = Registry.open(db)
        try:
            _CREDS.update({(db, a): c for a, c in reg.provision_agents(missing).items()})
        finally:
            reg.close()
    return {a: (("authorization", f"Bearer {_CREDS[(db, a)]}"),) for a in agent_ids}


def register_collector(address: str, db: str | Path, *, insecure: bool) -> None:
    """Tell the helpers here about a collector started without CollectorProc (a namespace's, a
    benchmark's): agents reaching ``address`` get a token in ``db`` and the CA or ``insecure``."""
    sec = ["--insecure"] if insecure else ["--ca-file", str(shared_pki() / "ca.pem")]
    _AGENT_ARGS[address] = sec + ["--enroll-token", enroll_token(db)]
    _DBS[address] = str(db)
    _LAST.append(address)


def agent_security_keys(collector_address: str) -> dict:
    """The same as bootstrap-file keys (ca_file / insecure, enroll_token). An address no collector
    was registered at (a TCP proxy in front of one) gets the last started collector's."""
    args = _AGENT_ARGS.get(collector_address) or (_AGENT_ARGS[_LAST[-1]] if _LAST else [])
    keys: dict = {}
    it = iter(args)
    for a in it:
        if a == "--insecure":
            keys["insecure"] = True
        else:
            keys[a[2:].replace("-", "_")] = next(it)
    return keys


def agent_security_args(collector_address: str) -> list[str]:
    """``agent run`` options to reach a collector started by CollectorProc (empty if unknown)."""
    return list(_AGENT_ARGS.get(collector_address, []))


class CollectorProc(Proc):
    """``collector serve`` on loopback with TLS from the session's test CA (``--insecure`` in
    ``extra`` serves plain text); agents started with ``start_agent`` enroll with ``self.token``."""

    def __init__(self, tmp: Path, db: Path, port: int = 0, extra: list[str] | None = None):
        self.tmp, self.db, self.port, self.extra = tmp, db, port, extra or []
        self.ready = tmp / f"collector-ready-{id(self)}"
        self.token = ""
        self.insecure = "--insecure" in self.extra
        super().__init__([], tmp / "collector.log")

    @property
    def ca_file(self) -> str:
        return str(shared_pki() / "ca.pem")

    def agent_args(self) -> list[str]:
        sec = ["--insecure"] if self.insecure else ["--ca-file", self.ca_file]
        return sec + ["--enroll-token", self.token]

    def start(self) -> CollectorProc:
        self.ready.unlink(missing_ok=True)
        if not self.token:
            self.token = enroll_token(self.db)
        tls = [] if self.insecure else ["--tls-dir", str(shared_pki())]
        self.args = (
            [
                "-v",
                "collector",
                "serve",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--db",
                str(self.db),
                "--ready-file",
                str(self.ready),
            ]
            + tls
            + self.extra
        )
        super().start()
        wait_for(
            lambda: (self.ready.exists() and self.ready.read_text().strip()) or not self.alive(),
            20,
            what="collector to listen",
        )
        if not self.alive():
            raise AssertionError("collector exited at start:\n" + self.output())
        self.port = int(self.ready.read_text())
        _AGENT_ARGS[self.address] = self.agent_args()
        _DBS[self.address] = str(self.db)
        _LAST.append(self.address)
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so that ``procs`` knows at teardown whether the test failed."""
    report = yield
    setattr(item, f"_report_{report.when}", report)
    return report


@pytest.fixture
def procs(request):
    """Processes started through this list are stopped at teardown, also when the test fails; a
    failed test prints the end of each one's log (a hang in CI is otherwise a bare timeout)."""
    started: list[Proc] = []
    yield started
    failed = any(getattr(getattr(request.node, f"_report_{w}", None), "failed", False) for w in ("setup", "call"))
    for p in reversed(started):
        p.stop(signal.SIGKILL if p.alive() else signal.SIGTERM, timeout=5)
        if failed:
            lines = p.output().splitlines()[-60:] if p.log_path.exists() else []
            print(f"--- last {len(lines)} lines of {p.log_path.name} ---", *lines, sep="\n")


@pytest.fixture
def collector(tmp_path, procs) -> CollectorProc:
    c = CollectorProc(tmp_path, tmp_path / "collector.sqlite").start()
    procs.append(c)
    return c


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium driven by Debian's chromedriver (the browser tier: tests/web, tests/security)."""
    from tests.requirements import require

    require(
        CHROMIUM is not None and DRIVER is not None,
        "needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)",
    )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        require(False, "needs the selenium package (pip install selenium)")
        raise
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-extensions",
        "--disable-default-apps",
        "--no-default-browser-check",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1440,900",
        "--lang=en-US",
    ):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver given by path: Selenium never looks for (or downloads) one of its own.
    d = webdriver.Chrome(service=Service(DRIVER, log_output=str(tmp_path / "chromedriver.log")), options=opts)
    d.set_page_load_timeout(60)
    yield d
    d.quit()


def start_agent(tmp_path: Path, procs: list, collector_address: str, *extra: str, name: str = "agent") -> Proc:
    """A real agent process measuring loopback only (never this machine's real gateway)."""
    state = tmp_path / name
    args = [
        "-v",
        "agent",
        "run",
        "--collector",
        collector_address,
        "--state-dir",
        str(state),
        "--no-gateway",
        "--interval",
        "0.2",
        "--batch-interval",
        "1",
        "--target",
        "loopback=127.0.0.1:9",
    ] + list(extra)
    if "--config" not in extra:  # a config file brings its own ca_file / token
        args += agent_security_args(collector_address)
    p = Proc(args, tmp_path / f"{name}.log").start()
    procs.append(p)
    return p


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(CXPULSE + list(args), capture_output=True, text=True, timeout=timeout, cwd=REPO)
