"""Alerts into ITSM: debounce without flapping, one delivery per alert, HMAC, retries, a bounded queue.

Webhooks go to a real HTTP receiver on 127.0.0.1 that can be told to fail (500/503) and recover.
The fleet the alerter reads is fed minute by minute from a fixed script (the one fake here: it
stands for the scorer's per-minute output, so a test can say exactly which minutes were poor).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from cxpulse.collector.alerts import (
    Alert,
    AlertConfig,
    Alerter,
    ConfigError,
    IncidentWatch,
    PoorEpisodes,
    WebhookConfig,
    load_config,
    verify_signature,
)
from cxpulse.collector.alerts.templates import render

from .conftest import ServerThread
from .scenario import DAY_END

S = 1_000_000
M = 60 * S
T0 = 1_790_000_040 * S
SECRET = b"s3cret-for-tests"
EXAMPLE = Path(__file__).resolve().parents[2] / "collector" / "alerts" / "alerts.example.toml"


# --- the rules ------------------------------------------------------------------------------------


def run_minutes(ep: PoorEpisodes, scores: list[float | None], agent: str = "a") -> list[tuple[int, str]]:
    out = []
    for i, s in enumerate(scores):
        st = ep.observe(agent, T0 + i * M, s)
        if st:
            out.append((i, st))
    return out


def test_poor_for_n_minutes_opens_once_and_resolves_once():
    ep = PoorEpisodes(poor_minutes=5, resolve_minutes=10, resolve_score=40)
    scores = [80] * 3 + [25] * 8 + [35] * 6 + [60] * 10 + [20] * 5
    assert run_minutes(ep, scores) == [(7, "open"), (26, "resolved"), (31, "open")]


def test_a_borderline_agent_never_flaps():
    ep = PoorEpisodes(poor_minutes=5, resolve_minutes=10, resolve_score=40)
    # Hovering at the poor line for two hours: never five poor minutes in a row.
    assert run_minutes(ep, [28, 33, 29, 31, 27, 32, 26] * 17) == []
    # Once open, hovering just above the poor line never resolves it (the resolve line is 40).
    ep = PoorEpisodes(poor_minutes=5, resolve_minutes=10, resolve_score=40)
    got = run_minutes(ep, [10] * 5 + [28, 33, 29, 36, 27, 38] * 20)
    assert got == [(4, "open")]


def test_a_gap_breaks_a_poor_run_and_silence_closes_an_open_episode():
    ep = PoorEpisodes(poor_minutes=3, resolve_minutes=5, resolve_score=40, stale_minutes=30)
    for i in (0, 1, 3, 4):  # minute 2 missing: two runs of two
        assert ep.observe("a", T0 + i * M, 10) is None
    assert ep.observe("a", T0 + 5 * M, 10) == "open"
    assert ep.expire(T0 + 20 * M) == []
    assert ep.expire(T0 + 35 * M) == [("a", T0 + 3 * M)]
    assert ep.open_since("a") is None
    assert ep.observe("a", T0 + 4 * M, 10) is None, "minutes already seen are ignored"


def test_incidents_open_once_and_close_once():
    w = IncidentWatch(missing_evals=2)
    inc = {"id": 3, "kind": "platform", "scope": "salesforce", "start_us": T0, "end_us": None}
    assert [s for s, _ in w.observe([inc])] == ["open"]
    assert w.observe([inc]) == [] and w.observe([dict(inc)]) == []
    assert [s for s, _ in w.observe([dict(inc, end_us=T0 + 9 * M)])] == ["resolved"]
    assert w.observe([dict(inc, end_us=T0 + 9 * M)]) == []
    # Seen only after it closed: open and resolved together; one that ages out open: resolved.
    assert [s for s, _ in w.observe([{"id": 4, "start_us": T0, "end_us": T0 + M}])] == ["open", "resolved"]
    assert [s for s, _ in w.observe([{"id": 5, "start_us": T0, "end_us": None}])] == ["open"]
    assert w.observe([]) == []
    assert [s for s, i in w.observe([])] == ["resolved"]


# --- config and payloads -----------------------------------------------------------------------------


def test_the_example_config_loads(monkeypatch):
    monkeypatch.setenv("CXPULSE_WEBHOOK_SECRET", "x")
    cfg = load_config(str(EXAMPLE))
    assert [w.format for w in cfg.webhooks] == ["servicenow", "jsm", "slack", "generic", "servicenow"]
    assert cfg.webhooks[4].sites == ["Lisbon floor 3", "Porto"] and cfg.webhooks[0].sites == []
    assert cfg.poor_minutes == 5 and cfg.resolve_minutes == 10 and cfg.webhooks[3].secret() == b"x"


@pytest.mark.parametrize(
    "text,needle",
    [
        ('[[alerts.webhook]]\nname = "a"\nurl = "ftp://x"\n', "url must be an http"),
        ('[[alerts.webhook]]\nname = "a"\nurl = "https://x.example"\nformat = "pagerduty"\n', "format must be one of"),
        ('[[alerts.webhook]]\nname = "a"\nurl = "https://x.example"\ncolour = "red"\n', "unknown key(s): colour"),
        ("[alerts]\npoor_minutes = 0\n", "poor_minutes must be between 1 and 240"),
        ("[alerts]\nresolve_score = 20\n", "resolve_score must be between 30"),
        ("[alerts]\nflap = true\n", "unknown alert setting(s): flap"),
        (
            '[[alerts.webhook]]\nname = "a"\nurl = "https://x.example"\nsecret_env = "CXPULSE_NOPE_UNSET"\n',
            "CXPULSE_NOPE_UNSET",
        ),
        ("[alerts\n", "not valid TOML"),
    ],
)
def test_bad_config_fails_at_start_with_the_key_named(tmp_path, text, needle):
    p = tmp_path / "alerts.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(str(p))
    assert needle in str(e.value)


def test_payload_shapes():
    a = Alert(
        id="cxpulse-agent-a-1",
        kind="agent_poor",
        state="open",
        at_us=T0 + 5 * M,
        since_us=T0,
        title="maria.silva on DESK-042: poor for 5 min",
        summary="weak Wi-Fi",
        severity="major",
        agent={"agent_id": "a-1", "user": "maria.silva", "host": "DESK-042", "site": "Lisbon"},
        details={
            "next_step": "Use a wired connection",
            "ticket": "cxpulse: ...",
            "link": "http://127.0.0.1/#/agent/a-1",
        },
    )
    snow = render("servicenow", a)
    assert snow["correlation_id"] == a.id and snow["short_description"].startswith("maria.silva")
    assert {"description", "impact", "urgency"} <= set(snow)
    jsm = render("jsm", a)
    assert jsm["alias"] == a.id and jsm["priority"] == "P2" and "site:Lisbon" in jsm["tags"]
    assert render("slack", a)["text"].startswith(":red_circle: maria.silva")
    assert render("teams", a)["@type"] == "MessageCard"
    gen = render("generic", a)
    assert gen["id"] == a.id and gen["state"] == "open" and gen["agent"]["user"] == "maria.silva"
    resolved = Alert(**{**a.__dict__, "state": "resolved"})
    assert render("servicenow", resolved)["state"] == "6"
    assert render("jsm", resolved) == {
        "alias": a.id,
        "source": "cxpulse",
        "user": "cxpulse",
        "note": render("slack", resolved)["text"][len(":large_green_circle: ") :],
    }
    for fmt in ("generic", "servicenow", "jsm", "slack", "teams"):
        json.dumps(render(fmt, a))


# --- a real receiver -----------------------------------------------------------------------------------


class Receiver:
    """An HTTP server on 127.0.0.1 that records every request; ``fail_next`` / ``status`` script failures."""

    def __init__(self):
        self.requests: list[dict] = []
        self.fail_next = 0
        self.status = 200
        self.lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer.lock:
                    code = 500 if outer.fail_next > 0 else outer.status
                    outer.fail_next = max(0, outer.fail_next - 1)
                    outer.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body, "code": code}
                    )
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def delivered(self) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["code"] < 300]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _cfg(url: str, secret_file: str = "", **kw) -> AlertConfig:
    opts = {"backoff_base_s": 0.05, "backoff_max_s": 0.2, "give_up_after_s": 30.0, **kw}
    cfg = AlertConfig(webhooks=[WebhookConfig(name="itsm", url=url, format="generic", secret_file=secret_file)], **opts)
    cfg.validate()
    return cfg


class ScriptedFleet:
    """Stands for LookupService: the scorer's per-minute scores, as the fleet snapshot carries them."""

    public_url = "http://127.0.0.1:8080"

    def __init__(self, scores: dict[str, list[float]]):
        self.scores = scores
        self.now = T0
        self.incidents: list[dict] = []

    def fleet(self, window_s: int) -> dict:
        minutes = {
            aid: [
                {"t_us": T0 + i * M, "score": s, "label": None, "limiting": "wifi"}
                for i, s in enumerate(sc)
                if T0 + i * M < self.now and T0 + i * M >= self.now - window_s * S
            ]
            for aid, sc in self.scores.items()
        }
        rows = [
            {"agent_id": aid, "user": f"user-{aid}", "host": f"HOST-{aid}", "site": "Lisbon"} for aid in self.scores
        ]
        return {
            "generated_us": self.now,
            "worst": rows,
            "_minutes": minutes,
            "incidents": {
                "open": [i for i in self.incidents if i["end_us"] is None],
                "recent": [i for i in self.incidents if i["end_us"] is not None],
            },
        }

    def view(self, agent_id: str, since: int, until: int) -> dict:
        score = {
            "window": {"score": 12.0, "label": "poor", "reason": "worst minute: wifi"},
            "limiting": "wifi",
            "faults": [
                {
                    "domain": "wifi",
                    "label": "Wi-Fi",
                    "confidence": 0.95,
                    "evidence": "weak Wi-Fi: RSSI -80 dBm",
                    "start_us": since,
                    "end_us": until,
                    "minutes": 5,
                    "worst_score": 10.0,
                }
            ],
            "incidents": [],
            "components": [],
            "timeline": [],
        }
        agent = {
            "agent_id": agent_id,
            "user": f"user-{agent_id}",
            "host": f"HOST-{agent_id}",
            "site": "Lisbon",
            "targets": [{"target": "gateway", "hop": 1, "loss_pct": 0.0}],
            "apps": [],
            "wifi": None,
            "device": None,
            "events": [],
            "paths": [],
            "score": score,
        }
        return {"window": {"since_us": since, "until_us": until}, "agent": agent}


async def _drive(alerter: Alerter, fleet: ScriptedFleet, minutes: int, on_minute=None) -> list[Alert]:
    out = []
    for i in range(1, minutes + 1):
        fleet.now = T0 + i * M
        if on_minute:
            on_minute(i, fleet)
        out += await alerter.evaluate_once()
    for s in alerter.senders.values():
        assert await s.flush(20), "webhook queue did not drain"
    return out


def test_webhooks_deliver_once_per_alert_signed_and_in_order(tmp_path, receiver):
    key = tmp_path / "hmac.key"
    key.write_bytes(SECRET + b"\n")
    fleet = ScriptedFleet(
        {
            "a-1": [80] * 3 + [20] * 8 + [35] * 4 + [70] * 12,  # one episode: open at minute 8, resolved at 27
            "b-2": [28, 33, 29, 31, 27, 32] * 5,  # borderline: never
        }
    )

    def incidents(i, f):
        if i == 10:
            f.incidents = [
                {
                    "id": 9,
                    "kind": "platform",
                    "scope": "salesforce",
                    "start_us": T0 + 8 * M,
                    "end_us": None,
                    "agents": 14,
                }
            ]
        if i == 20:
            f.incidents = [dict(f.incidents[0], end_us=T0 + 19 * M)]

    async def main():
        al = Alerter(_cfg(receiver.url, str(key)), fleet)
        await al.start(loop=False)
        try:
            emitted = await _drive(al, fleet, 30, incidents)
        finally:
            await al.stop()
        return al, emitted

    al, emitted = asyncio.run(main())
    assert [(a.kind, a.state) for a in emitted] == [
        ("agent_poor", "open"),
        ("incident", "open"),
        ("incident", "resolved"),
        ("agent_poor", "resolved"),
    ]
    got = receiver.delivered()
    assert len(got) == 4 and len(receiver.requests) == 4, "one request per alert, no retries needed"
    bodies = [json.loads(r["body"]) for r in got]
    assert [(b["kind"], b["state"]) for b in bodies] == [(a.kind, a.state) for a in emitted]
    for r in got:
        h = {k.lower(): v for k, v in r["headers"].items()}
        assert verify_signature(SECRET, r["body"], h["x-cxpulse-timestamp"], h["x-cxpulse-signature"])
        assert not verify_signature(b"wrong", r["body"], h["x-cxpulse-timestamp"], h["x-cxpulse-signature"])
    opened, resolved = bodies[0], bodies[3]
    assert opened["id"] == resolved["id"] == f"cxpulse-agent-a-1-{(T0 + 3 * M) // S}"
    assert opened["agent"]["user"] == "user-a-1" and opened["details"]["fault_domain"] == "wifi"
    assert "move closer to the access point" in opened["details"]["next_step"]
    assert opened["details"]["ticket"].startswith("cxpulse: user-a-1 on HOST-a-1")
    assert opened["details"]["link"].startswith("http://127.0.0.1:8080/#/agent/a-1?since=")
    assert bodies[1]["title"].startswith("salesforce-wide incident since")
    assert {d["outcome"] for d in al.deliveries.entries()} == {"delivered"}


def test_a_receiver_that_fails_and_recovers_gets_each_alert_once(receiver):
    receiver.fail_next = 3  # three 500s, then healthy
    fleet = ScriptedFleet({"a-1": [10] * 6})

    async def main():
        al = Alerter(_cfg(receiver.url), fleet)
        await al.start(loop=False)
        try:
            await _drive(al, fleet, 6)
            al.config.test_send_min_interval_s = 0
            receiver.status = 503  # an outage...
            al.test_send()
            await asyncio.sleep(0.6)
            receiver.status = 200  # ...and the recovery
            assert await al.senders["itsm"].flush(20)
        finally:
            await al.stop()
        return al

    al = asyncio.run(main())
    delivered = receiver.delivered()
    keys = [r["headers"]["X-Cxpulse-Delivery"] for r in delivered]
    assert len(keys) == 2 and len(set(keys)) == 2, keys
    attempts_for_first = [r for r in receiver.requests if r["headers"]["X-Cxpulse-Delivery"] == keys[0]]
    assert [r["code"] for r in attempts_for_first] == [500, 500, 500, 200]
    assert len([r for r in receiver.requests if r["code"] == 503]) >= 2
    outcomes = [d["outcome"] for d in al.deliveries.entries()]
    assert outcomes.count("delivered") == 2 and outcomes.count("retrying") >= 5
    assert al.senders["itsm"].counts["delivered"] == 2


def test_a_full_queue_drops_the_oldest_waiting_alert(receiver):
    receiver.status = 503

    async def main():
        al = Alerter(_cfg(receiver.url, queue_max=2), ScriptedFleet({}))
        await al.start(loop=False)
        s = al.senders["itsm"]
        for i in range(5):
            s.enqueue(Alert(id=f"x-{i}", kind="incident", state="open", at_us=T0, since_us=T0, title=f"x-{i}"))
            await asyncio.sleep(0.01)
        depth = s.depth
        receiver.status = 200
        await s.flush(10)
        await al.stop()
        return al, depth

    al, depth = asyncio.run(main())
    assert depth == 2
    assert al.senders["itsm"].counts["dropped"] == 3
    dropped = [d["alert_id"] for d in al.deliveries.entries() if d["outcome"] == "dropped"]
    assert dropped == ["x-1", "x-2", "x-3"], "the head in delivery stays; the oldest waiting go"
    assert [json.loads(r["body"])["id"] for r in receiver.delivered()][-1] == "x-4"


def test_a_refusal_is_not_retried(receiver):
    receiver.status = 400

    async def main():
        al = Alerter(_cfg(receiver.url), ScriptedFleet({}))
        await al.start(loop=False)
        al.test_send()
        await al.senders["itsm"].flush(10)
        await al.stop()
        return al

    al = asyncio.run(main())
    assert len(receiver.requests) == 1 and al.senders["itsm"].counts["failed"] == 1


def test_test_send_through_the_api(day_db, receiver):
    s = ServerThread(day_db, now_us=lambda: DAY_END, alerts_config=_cfg(receiver.url)).start()
    try:
        r = httpx.post(s.url + "/api/v1/alerts/test", headers=s.headers, timeout=10)
        assert r.status_code == 202 and r.json() == {"queued": ["itsm"]}
        again = httpx.post(s.url + "/api/v1/alerts/test", headers=s.headers, timeout=10)
        assert again.status_code == 429 and "one test send per" in again.json()["error"]["message"]
        assert httpx.post(s.url + "/api/v1/alerts/test?target=nope", headers=s.headers, timeout=10).status_code == 404
        assert s.call(s.handle.alerts.senders["itsm"].flush(10))
        log = httpx.get(s.url + "/api/v1/alerts/deliveries", headers=s.headers, timeout=10).json()
        metrics = httpx.get(s.url + "/metrics", headers=s.headers, timeout=30).text
    finally:
        s.stop()
    assert log["configured"] and log["targets"][0]["url"].startswith("http://127.0.0.1:")
    assert [d["outcome"] for d in log["deliveries"]] == ["delivered"]
    (req,) = receiver.delivered()
    assert json.loads(req["body"])["kind"] == "test"
    assert 'cxpulse_webhook_deliveries_total{outcome="delivered",webhook="itsm"} 1.0' in metrics


def test_cli_test_send_and_check_config(receiver, tmp_path, capsys, monkeypatch):
    from cxpulse.collector.alerts import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(
        ["alerts", "test-send", "--url", receiver.url + "/hook", "--format", "slack", "--timeout", "10"]
    )
    assert args.func(args) == 0
    assert "attempt 1: delivered (HTTP 200)" in capsys.readouterr().out
    assert json.loads(receiver.delivered()[0]["body"])["text"].startswith(":red_circle: cxpulse test alert")
    monkeypatch.setenv("CXPULSE_WEBHOOK_SECRET", "x")
    args = parser.parse_args(["alerts", "check-config", str(EXAMPLE)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "servicenow: servicenow -> https://example.service-now.com/..." in out
    receiver.status = 503
    args = parser.parse_args(["alerts", "test-send", "--url", receiver.url, "--timeout", "1"])
    assert args.func(args) == 1
    assert os.environ.get("CXPULSE_WEBHOOK_SECRET") == "x"
