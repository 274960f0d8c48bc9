"""agent/service.py: `agent configure` (what every installer calls), the stop-from-another-thread
runner the Windows service uses, and the frozen-build helpers. Runs from source, no build needed."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import subprocess
import sys
import threading
import tomllib

import pytest

from cxpulse.agent import service, service_windows
from cxpulse.agent.config import load
from cxpulse.agent.probes.base import Target
from tests.conftest import wait_for

from .conftest import REPO

PEM = "-----BEGIN CERTIFICATE-----\nMIIBcxpulseTestOnly\n-----END CERTIFICATE-----\n"
EXAMPLE = REPO / "agent" / "agent.example.toml"


def main(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdout, sys.stderr, sys.stdin
    sys.stdout, sys.stderr, sys.stdin = out, err, io.StringIO(stdin)
    try:
        code = service.main(list(argv))
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.stdout, sys.stderr, sys.stdin = old
    return code, out.getvalue(), err.getvalue()


def test_configure_creates_a_file_the_agent_loads(tmp_path):
    cfg = tmp_path / "etc" / "agent.toml"
    code, out, _ = main(
        "agent",
        "configure",
        "--config",
        str(cfg),
        "--collector",
        "c.example.test:50051",
        "--site",
        'Branch "12" \\ east',
        "--state-dir",
        str(tmp_path / "state"),
    )
    assert code == 0 and str(cfg) in out
    loaded = load(cfg)
    assert loaded.collector == "c.example.test:50051" and loaded.site == 'Branch "12" \\ east'
    assert not (cfg.parent / service.ENROLL_FILE).exists()  # no secret given, no secrets file


def test_configure_updates_only_the_given_keys_and_keeps_the_rest(tmp_path):
    cfg = tmp_path / "agent.toml"
    cfg.write_text(EXAMPLE.read_text())
    code, _, _ = main("agent", "configure", "--config", str(cfg), "--collector", "new.example.test:443", "--site", "")
    assert code == 0
    text = cfg.read_text()
    assert 'collector = "new.example.test:443"' in text and 'collector = "127.0.0.1:50051"' not in text
    assert text.replace('collector = "new.example.test:443"', 'collector = "127.0.0.1:50051"') == EXAMPLE.read_text()
    before = load(EXAMPLE)
    after = load(cfg)
    assert after.targets == before.targets and after.apps == before.apps and after.site == before.site
    # A key the file did not have goes before the first table, where TOML keeps it top-level.
    code, _, _ = main("agent", "configure", "--config", str(cfg), "--state-dir", str(tmp_path / "s"))
    assert code == 0 and load(cfg).state_dir == str(tmp_path / "s") and load(cfg).targets == before.targets


def test_configure_with_nothing_given_leaves_an_existing_file_alone(tmp_path):
    cfg = tmp_path / "agent.toml"
    cfg.write_text('collector = "kept.example.test:1"\n')
    mtime = cfg.stat().st_mtime_ns
    assert main("agent", "configure", "--config", str(cfg), "--collector", "", "--enroll-token", "")[0] == 0
    assert cfg.stat().st_mtime_ns == mtime


def test_configure_refuses_a_bad_value_and_keeps_the_old_file(tmp_path):
    cfg = tmp_path / "agent.toml"
    cfg.write_text('collector = "kept.example.test:1"\n')
    code, _, err = main("agent", "configure", "--config", str(cfg), "--collector", "no-port")
    assert code == 2 and "collector must be HOST:PORT" in err
    assert cfg.read_text() == 'collector = "kept.example.test:1"\n'
    assert [p.name for p in tmp_path.iterdir()] == ["agent.toml"]  # no temporary file left behind


@pytest.mark.parametrize("form", ["path", "pem", "base64-pem", "base64-der"])
def test_ca_cert_forms(tmp_path, form):
    der = b"\x30\x82\x01\x0acxpulse-test-der"
    value = {
        "path": str(tmp_path / "given.pem"),
        "pem": PEM,
        "base64-pem": base64.b64encode(PEM.encode()).decode(),
        "base64-der": base64.b64encode(der).decode(),
    }[form]
    (tmp_path / "given.pem").write_text(PEM)
    cfg = tmp_path / "conf" / "agent.toml"
    service.write_bootstrap(cfg, ca_cert=value)
    ca = (cfg.parent / "ca.pem").read_text()
    if form == "base64-der":
        body = "".join(ca.splitlines()[1:-1])
        assert ca.startswith("-----BEGIN CERTIFICATE-----\n") and base64.b64decode(body) == der
    else:
        assert ca == PEM
    enroll = tomllib.loads((cfg.parent / service.ENROLL_FILE).read_text())
    assert enroll == {"ca_file": str(cfg.parent / "ca.pem")}


def test_ca_cert_garbage_is_an_error(tmp_path):
    with pytest.raises(ValueError):
        service.write_bootstrap(tmp_path / "agent.toml", ca_cert="not a certificate!")


def test_token_from_stdin_is_private_and_merged(tmp_path):
    cfg = tmp_path / "agent.toml"
    assert main("agent", "configure", "--config", str(cfg), "--enroll-token", "-", stdin="tok-1\n")[0] == 0
    enroll = cfg.parent / service.ENROLL_FILE
    assert tomllib.loads(enroll.read_text()) == {"enroll_token": "tok-1"}
    if os.name != "nt":
        assert stat.S_IMODE(enroll.stat().st_mode) == 0o600
    service.write_bootstrap(cfg, ca_cert=PEM)  # a later CA keeps the token
    assert tomllib.loads(enroll.read_text()) == {"enroll_token": "tok-1", "ca_file": str(tmp_path / "ca.pem")}


def test_root_writes_below_it_with_paths_as_the_agent_sees_them(tmp_path):
    written = service.write_bootstrap(
        "/etc/cxpulse/agent.toml", collector="c.example.test:1", ca_cert=PEM, root=tmp_path
    )
    assert tmp_path / "etc/cxpulse/agent.toml" in written
    enroll = tomllib.loads((tmp_path / "etc/cxpulse" / service.ENROLL_FILE).read_text())
    assert enroll["ca_file"] == "/etc/cxpulse/ca.pem"


def test_once_from_source_against_a_local_collector(collector):
    code, out, err = main(
        "agent",
        "once",
        "--json",
        "--no-gateway",
        "--count",
        "1",
        "--no-wifi",
        "--collector",
        collector.address,
        "--target",
        "loopback=127.0.0.1",
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["collector"]["reachable"] is True and report["targets"][0]["name"] == "loopback"
    assert report["wifi"] is None


def test_once_reports_an_unreachable_collector_without_failing():
    code, out, _ = main(
        "agent",
        "once",
        "--no-gateway",
        "--count",
        "1",
        "--no-wifi",
        "--collector",
        "127.0.0.1:9",
        "--target",
        "loopback=127.0.0.1",
    )
    assert code == 0 and "NOT reachable" in out


def test_once_rejects_bad_configuration():
    code, _, err = main("agent", "once", "--collector", "nonsense")
    assert code == 2 and "configuration error" in err


def test_service_runner_stops_when_asked_from_another_thread(collector, tmp_path):
    """What SvcStop does on Windows: request_stop from the control thread; the batch is spooled and sent."""
    cfg = load(EXAMPLE).with_overrides(
        collector=collector.address,
        state_dir=str(tmp_path / "state"),
        targets=(Target("loopback", "127.0.0.1", 9),),
        probe_interval_s=0.2,
        batch_interval_s=1.0,
        measure_gateway=False,
        apps=(),
        trace_enabled=False,
        ca_file=collector.ca_file,
        enroll_token=collector.token,
    )
    runner = service.ServiceRunner(cfg)
    t = threading.Thread(target=runner.run)
    t.start()
    try:
        wait_for(lambda: (tmp_path / "state" / "identity.json").exists(), 20, what="the agent to start")
        threading.Event().wait(2.5)
    finally:
        runner.request_stop()
        t.join(30)
    assert not t.is_alive()
    summary = json.loads((tmp_path / "state" / "last_run.json").read_text())
    assert summary["samples_measured"] > 0 and summary["batches_acked"] > 0, summary


def test_a_stop_before_start_still_counts(tmp_path):
    cfg = load(EXAMPLE).with_overrides(
        collector="127.0.0.1:9", state_dir=str(tmp_path / "s"), apps=(), trace_enabled=False, measure_gateway=False
    )
    runner = service.ServiceRunner(cfg)
    runner.request_stop()
    t = threading.Thread(target=runner.run)
    t.start()
    t.join(30)
    assert not t.is_alive()


def test_windows_service_module_is_import_safe_here():
    assert service_windows.AVAILABLE is (sys.platform == "win32")
    if not service_windows.AVAILABLE:
        code, _, err = main("agent", "service", "--config", "x.toml")
        assert code == 2 and "Windows service" in err


def test_trace_child_argv_source_and_frozen(monkeypatch, tmp_path):
    assert service.trace_child_argv() == [sys.executable, "-m", "cxpulse.agent.path.trace_child"]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "cxpulse"))
    name = "cxpulse-trace.exe" if sys.platform == "win32" else "cxpulse-trace"
    assert service.trace_child_argv() == [str(tmp_path / name)]


def test_version_line():
    code, out, _ = main("--version")
    assert code == 0 and out.startswith("cxpulse ") and "source" in out


def test_collector_stays_out_of_the_agent_entry_point():
    """The frozen entry must not import the collector (the build leaves it out: an import would crash)."""
    code = (
        "import sys\n"
        "from cxpulse.agent import service\n"
        "service.build_parser()\n"
        "import cxpulse.agent.runner, cxpulse.agent.probes.http, cxpulse.agent.device, cxpulse.agent.wifi.cli\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('cxpulse.collector', 'cxpulse.cli', 'scapy')))\n"
        "assert 'cxpulse.agent.runner' in sys.modules and not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
