"""The detector on synthetic second-level series with known truth: each injected disruption is one event."""

from __future__ import annotations

import random

import pytest

from cxpulse.agent.detector import DebounceConfig, Detector
from cxpulse.agent.detector.debounce import Debounce

S = 1_000_000
T0 = 1_790_000_000 * S


def clean(n, base=10_000, seed=1):
    rnd = random.Random(seed)
    return [base + rnd.randint(-800, 800) for _ in range(n)]


def run(rtts, target="gw", det=None, step=S):
    det = det or Detector()
    events = []
    for i, r in enumerate(rtts):
        events += det.observe_rtt(target, T0 + i * step, r)
    return det, events


def closed(events):
    return [e for e in events if e.end_us is not None]


def test_clean_path_gives_no_events_over_ten_minutes():
    _, events = run(clean(600))
    assert events == []


def test_single_lost_ping_and_two_in_five_are_not_alarms():
    rtts = clean(100)
    rtts[40] = None
    rtts[70] = rtts[72] = None
    assert run(rtts)[1] == []


@pytest.mark.parametrize("length", [3, 5, 10, 30])
def test_outage_is_one_event_with_its_start_and_end(length):
    rtts = clean(60) + [None] * length + clean(30, seed=2)
    _, events = run(rtts)
    opened = [e for e in events if e.end_us is None]
    assert len(opened) == 1 and len(closed(events)) == 1
    e = closed(events)[0]
    assert e.kind == "outage" and e.id == opened[0].id and e.target == "gw"
    assert e.start_us == T0 + 60 * S
    assert abs(e.end_us - (T0 + (60 + length) * S)) < 0.05 * S
    assert f"{length} samples" in e.evidence


def test_loss_burst_with_answers_between():
    rtts = clean(60) + [None, 10_000, None, None, 10_100, None] + clean(20, seed=3)
    _, events = run(rtts)
    (e,) = closed(events)
    assert e.kind == "loss_burst" and "4 of 6 samples lost" in e.evidence


@pytest.mark.parametrize("length, extra_ms", [(3, 50), (5, 150), (10, 400)])
def test_latency_spike_is_one_event_with_severity(length, extra_ms):
    rtts = clean(60) + [r + extra_ms * 1000 for r in clean(length, seed=4)] + clean(30, seed=5)
    _, events = run(rtts)
    assert [e.kind for e in events] == ["latency_spike", "latency_spike"]
    e = closed(events)[0]
    assert e.start_us == T0 + 60 * S and abs(e.end_us - (T0 + (60 + length) * S)) < 0.05 * S
    assert e.severity == (1 if extra_ms < 100 else 2 if extra_ms < 300 else 3)
    assert "baseline 10." in e.evidence


def test_spikes_on_two_hops_are_separate_events():
    det = Detector()
    events = []
    for i in range(100):
        bad = 50 <= i < 55
        events += det.observe_rtt("gateway", T0 + i * S, 2_000 + (i % 3) * 10)
        events += det.observe_rtt("isp", T0 + i * S, None if bad else 12_000 + (i % 5) * 100)
    assert {(e.kind, e.target) for e in events} == {("outage", "isp")}


def test_jitter_episode_on_a_high_baseline_link():
    rtts = clean(60, base=80_000) + [45_000, 110_000] * 6 + clean(20, base=80_000, seed=6)
    _, events = run(rtts)
    kinds = {e.kind for e in events}
    assert "jitter_episode" in kinds


def test_sub_second_cadence_catches_a_one_second_outage():
    """At 0.2 s between probes a 1 s outage is 5 lost samples: one event (at 1 Hz it would be one lost ping)."""
    step = S // 5
    rtts = clean(300) + [None] * 5 + clean(50, seed=7)
    _, events = run(rtts, step=step)
    (e,) = closed(events)
    assert e.kind == "outage" and e.start_us == T0 + 300 * step


def test_app_failures_debounced_and_dns_named():
    det = Detector()
    ev = []
    for i, err in enumerate([None, "dns", None, None, "dns", "dns", None, None]):
        ev += det.observe_app("crm", T0 + i * 30 * S, err, "NXDOMAIN" if err else None)
    assert [(e.kind, e.end_us is None) for e in ev] == [("dns_failure", True), ("dns_failure", False)]
    assert ev[0].id == ev[1].id


def test_device_pressure():
    det = Detector()
    ev = []
    for i, cpu in enumerate([20, 95, 96, 97, 30, 20, 10, 10]):
        ev += det.observe_device(T0 + i * 5 * S, cpu, 40, "chrome.exe 180%" if cpu > 90 else "")
    assert [e.kind for e in ev] == ["device_pressure", "device_pressure"] and "chrome.exe" in ev[1].evidence


def test_debounce_config_is_validated():
    with pytest.raises(ValueError):
        DebounceConfig(window=3, breaches_to_open=4)
    d = Debounce(DebounceConfig(window=5, breaches_to_open=3, clean_to_close=2))
    seq = [True, False, True, True, False, False]
    assert [d.feed(i, b) for i, b in enumerate(seq)] == [None, None, None, "open", None, "close"]
    assert d.closed.start_us == 0 and d.closed.last_breach_us == 3 and d.closed.breaches == 3


# -- adaptive confirmation: 1 Hz schedule plus follow-ups at 0.1 s after a breach --


def _with_followups(outage_s, first_s=60.0, total_s=80.0, fu=0.1):
    """What the agent feeds the detector: 1 Hz samples, and 0.1 s follow-ups from the first breach
    until three clean answers; ``outage_s`` of no answer starting at ``first_s``."""
    from cxpulse.agent.detector.confirm import Confirmations, ConfirmConfig

    conf = Confirmations(ConfirmConfig())
    down = lambda t: first_s <= t < first_s + outage_s  # noqa: E731
    times = [float(i) for i in range(int(total_s))]
    stream, t_run = [], None
    for t in times:
        stream.append((t, None if down(t) else 10_000))
        if down(t) and t_run is None and conf.begin("isp", t):
            t_run = t + 0.02  # the probe is overdue at its spike threshold
            while conf.take("isp", t_run):
                lost = down(t_run)
                stream.append((t_run, None if lost else 10_000))
                conf.result("isp", not lost)
                t_run += conf.gap_s("isp")
            conf.end("isp")
    stream.sort()
    det = Detector()
    events = []
    for t, r in stream:
        events += det.observe_rtt("isp", T0 + int(t * S), r)
    return events, conf


@pytest.mark.parametrize("outage_s", [0.3, 1.0, 2.0, 10.0])
def test_followups_make_a_short_outage_one_event_ending_when_it_ended(outage_s):
    events, conf = _with_followups(outage_s, first_s=60.0)
    (e,) = closed(events)
    assert e.kind == "outage" and e.start_us == T0 + 60 * S
    # the first clean follow-up is at most one follow-up step (0.1 s, 0.2 s late in a run) after the end
    assert 0 <= e.end_us - (T0 + int((60 + outage_s) * S)) <= 0.21 * S, e.end_us / S - 60 - outage_s
    assert "answered again" in e.evidence
    assert conf.sent <= 10 * outage_s + 10


def test_followups_clear_a_single_lost_ping_without_an_event():
    """A lost 1 Hz probe whose follow-ups are answered is the one-lost-ping case: no event, 3 probes more."""
    events, conf = _with_followups(0.01, first_s=60.0)
    assert events == [] and conf.sent == 3


def test_followup_budget_bounds_a_dead_hop():
    from cxpulse.agent.detector.confirm import Confirmations, ConfirmConfig

    cfg = ConfirmConfig()
    conf = Confirmations(cfg)
    t, sent = 0.0, 0
    while t < 600:  # a hop that never answers, for 10 minutes: a run per lost 1 Hz probe, if allowed
        if conf.begin("isp", t):
            while conf.take("isp", t):
                conf.result("isp", False)
                sent += 1
                t += conf.gap_s("isp")
                if sent > 10_000:
                    break
            conf.end("isp")
        t = float(int(t) + 1)
    assert sent <= 10 * cfg.max_per_minute + cfg.max_per_run
    assert conf.refused > 0 and conf.runs >= 10
    with pytest.raises(ValueError):
        ConfirmConfig(max_per_run=300, max_per_minute=200)
