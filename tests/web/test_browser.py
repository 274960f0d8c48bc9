"""The helpdesk page in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium).

From the search box to the agent page with its chart, events, zoom to the second, and the copy
button; page load times measured in the browser (Performance API marks set by the page) for a
day of one agent's data; screenshots kept in the test's tmp dir (and in $CXPULSE_ARTIFACTS_DIR
when set) so a person can look at what the analyst sees.
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from pathlib import Path

import httpx

from .conftest import load_budget_ms
from .scenario import DAY0, DAY_END, ISP_LOSS, S

AGENT = "agent-7f3a"


def shot(d, tmp_path: Path, name: str, height: int | None = None) -> Path:
    """A PNG of the page; ``height`` resizes the window first to get the whole page in one picture."""
    if height:
        d.set_window_size(1440, height)
        time.sleep(0.3)
    p = tmp_path / name
    d.save_screenshot(str(p))
    keep = os.environ.get("CXPULSE_ARTIFACTS_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(p, Path(keep) / name)
    if height:
        d.set_window_size(1440, 900)
    return p


def wait(d, cond, timeout: float = 30, what: str = "condition"):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(d, timeout, poll_frequency=0.05).until(lambda drv: cond(drv))
    except Exception:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None


def mark(d, name: str) -> float | None:
    """When the page set this Performance mark, in ms since navigation start (None: not yet)."""
    return d.execute_script(
        f"const m = performance.getEntriesByName('{name}'); return m.length ? m[m.length - 1].startTime : null;"
    )


def open_fresh(d, url: str) -> None:
    d.get("about:blank")
    d.get(url)


def sign_in(d, key: str) -> None:
    """Type the key into the page's sign-in box (shown because the API answered 401) and submit."""
    from selenium.webdriver.common.by import By

    wait(d, lambda d: d.find_element(By.ID, "signin").is_displayed(), 10, "the sign-in box")
    box = d.find_element(By.ID, "apikey")
    box.clear()
    box.send_keys(key)
    d.find_element(By.ID, "signin-go").click()


def test_search_open_chart_zoom_copy(server, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    d, base = browser, server.url
    # No key yet: an agent's address shows the sign-in box and nothing about the agent.
    d.get(f"{base}/#/agent/{AGENT}")
    wait(d, lambda d: d.find_element(By.ID, "signin").is_displayed(), 10, "the sign-in box")
    assert "maria" not in d.find_element(By.TAG_NAME, "body").text and not d.find_elements(By.ID, "who")
    d.get(base + "/")
    # A wrong key brings the box back, with why.
    sign_in(d, "cxp_key_0000000000000000_not-a-real-key")
    wait(d, lambda d: "not accepted" in d.find_element(By.ID, "signin-msg").text, 10, "the wrong key refused")
    assert not d.find_elements(By.CSS_SELECTOR, "#worst tbody tr")
    shot(d, tmp_path, "signin.png")
    sign_in(d, server.helpdesk_key)
    wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#worst tbody tr")) == 4, what="the fleet's worst agents")
    assert not d.find_element(By.ID, "signin").is_displayed()
    worst_row = d.find_element(By.CSS_SELECTOR, "#worst tbody tr").text
    assert "rui.santos" in worst_row, "the lossy home agent ranks worst"
    assert "the ISP" in worst_row and " network " not in f" {worst_row} ", "the place in words, not the verdict's key"
    shot(d, tmp_path, "fleet.png")

    # Search -> agent page (last hour by default).
    d.find_element(By.ID, "q").send_keys("MARIA")
    wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#results li.result"), what="search results")
    d.find_element(By.CSS_SELECTOR, "#results li.result").click()
    wait(d, lambda d: mark(d, "cx-summary-ready") is not None, what="the agent page's summary")
    assert d.find_element(By.ID, "who").text == "maria.silva on DESK-042"
    assert "1 h" in d.find_element(By.ID, "rangelabel").text

    # The whole day, as a fresh page load, twice (the timeline is not cached on the server: each
    # load reads the day again): the chart must be up within a second.
    loads = []
    for _ in range(2):
        open_fresh(d, f"{base}/#/agent/{AGENT}?since={DAY0 // S}&until={DAY_END // S}")
        wait(d, lambda d: mark(d, "cx-chart-ready") is not None, 10, "the day's chart")
        wait(d, lambda d: mark(d, "cx-summary-ready") is not None, 120, "the day's summary")
        loads.append((mark(d, "cx-chart-ready"), mark(d, "cx-summary-ready"), d.find_element(By.ID, "foot").text))
    for chart_ms, summary_ms, foot in loads:
        print(
            f"\nday of data: chart ready {chart_ms:.0f} ms after navigation start, summary {summary_ms:.0f} ms; "
            f"page says: {foot}"
        )
    budget = load_budget_ms(1000)
    assert min(c for c, _, _ in loads) < budget, (
        f"the day's chart took {[round(c) for c, _, _ in loads]} ms (budget {budget} ms)"
    )

    rtt = d.find_elements(By.CSS_SELECTOR, "#chart path.series.rtt")
    assert [p.get_attribute("data-target") for p in rtt] == ["gateway", "hop2", "crm-edge"]
    assert all(int(p.get_attribute("data-n")) >= 700 for p in rtt), "one point per 2-minute bucket all day"
    for kind in ("jitter", "loss", "rssi", "score"):
        assert d.find_elements(By.CSS_SELECTOR, f"#chart .series.{kind}"), kind
    assert sorted(e.get_attribute("data-kind") for e in d.find_elements(By.CSS_SELECTOR, "#chart rect.ev")) == [
        "latency_spike",
        "loss_burst",
        "wifi_weak_signal",
    ]
    sentence = d.find_element(By.ID, "sentence").text
    assert sentence.startswith("What was wrong: ") and "Wi-Fi" in sentence, sentence
    assert "move closer to the access point" in d.find_element(By.ID, "next").text
    assert len(d.find_elements(By.CSS_SELECTOR, "#hops tbody tr")) == 3
    assert d.find_element(By.CSS_SELECTOR, "#apps tbody tr").text.startswith("salesforce")
    assert len(d.find_elements(By.CSS_SELECTOR, "#events tbody tr")) == 3
    shot(d, tmp_path, "agent-day.png")
    shot(d, tmp_path, "agent-day-full.png", height=1900)

    # Drag to zoom: the server sends finer buckets for the range.
    overlay = d.find_element(By.CSS_SELECTOR, "#chart rect.overlay")
    w = overlay.size["width"]
    d.execute_script("performance.clearMarks('cx-zoom-ready')")
    ActionChains(d).move_to_element_with_offset(overlay, int(-0.08 * w), 0).click_and_hold().move_by_offset(
        int(0.16 * w), 0
    ).release().perform()
    wait(d, lambda d: mark(d, "cx-zoom-ready") is not None, 10, "the zoomed timeline")
    step = int(d.find_element(By.ID, "chart").get_attribute("data-step"))
    assert step < 120 and "zoomed" in d.find_element(By.ID, "rangelabel").text, step

    # Click the ISP loss burst: zoomed around it, to the second.
    d.execute_script("performance.clearMarks('cx-zoom-ready')")
    # Rows by place, the most felt first, in words (issue 17): the loss burst is "packets lost" at hop2.
    ev = next(r for r in d.find_elements(By.CSS_SELECTOR, "#events tbody tr") if "packets lost" in r.text)
    assert "hop2" in ev.text
    ev.click()
    wait(
        d,
        lambda d: (
            mark(d, "cx-zoom-ready") is not None and d.find_element(By.ID, "chart").get_attribute("data-step") == "1"
        ),
        10,
        "one-second buckets around the loss burst",
    )
    loss_rects = d.find_elements(By.CSS_SELECTOR, "#chart g.series.loss[data-target='hop2'] rect")
    assert 40 <= len(loss_rects) <= 130, f"{len(loss_rects)} lossy seconds drawn"
    span_before = float(d.find_element(By.ID, "chart").get_attribute("data-until")) - float(
        d.find_element(By.ID, "chart").get_attribute("data-since")
    )
    # Wheel zoom around the cursor.
    overlay = d.find_element(By.CSS_SELECTOR, "#chart rect.overlay")
    d.execute_script(
        """const o = arguments[0], r = o.getBoundingClientRect();
        o.dispatchEvent(new WheelEvent('wheel', {deltaY: -120, clientX: r.left + r.width / 2,
                                                 clientY: r.top + 20, bubbles: true, cancelable: true}));""",
        overlay,
    )
    wait(
        d,
        lambda d: (
            float(d.find_element(By.ID, "chart").get_attribute("data-until"))
            - float(d.find_element(By.ID, "chart").get_attribute("data-since"))
            < span_before
        ),
        5,
        "the wheel to zoom in",
    )
    shot(d, tmp_path, "agent-zoomed.png")

    # Copy the ticket summary: clipboard (when the browser allows it) and a visible textarea.
    try:
        d.execute_cdp_cmd(
            "Browser.grantPermissions",
            {"origin": base, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
        )
    except Exception:
        pass
    copy = d.find_element(By.ID, "copy")
    d.execute_script("arguments[0].scrollIntoView({block: 'center'})", copy)
    copy.click()
    wait(d, lambda d: d.find_element(By.ID, "ticketbox").is_displayed(), 5, "the ticket text")
    shown = d.find_element(By.ID, "ticket").get_attribute("value")
    zone = d.execute_script("return Intl.DateTimeFormat().resolvedOptions().timeZone")
    api_text = httpx.get(
        f"{base}/api/v1/agents/{AGENT}/ticket",
        params={"since": str(DAY0 // S), "until": str(DAY_END // S), "tz": zone},
        headers=server.headers,
        timeout=60,
    ).text
    assert shown == api_text and shown.startswith("cxpulse: maria.silva on DESK-042")
    clip = d.execute_async_script(
        "const done = arguments[0]; navigator.clipboard.readText().then(done, (e) => done('ERR ' + e));"
    )
    note = d.find_element(By.ID, "copynote").text
    if clip.startswith("ERR"):
        assert "Ctrl+C" in note or "Copied" in note, note  # no clipboard here: the text is shown selected
    else:
        assert clip == api_text and note.startswith("Copied")
    shot(d, tmp_path, "agent-ticket.png")

    # Nothing from elsewhere, no script errors, no CSP violations.
    urls = d.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")
    assert urls and all(u.startswith(base) or u.startswith("data:") for u in urls), urls
    # The page's own 401s (the wrong key at sign-in) are the only errors the browser may log.
    errors = [e for e in d.get_log("browser") if e["level"] == "SEVERE" and "401 (Unauthorized)" not in e["message"]]
    assert not errors, errors
    # The analyst's lookups are in the audit log under the helpdesk key, from this browser's address.
    helpdesk = server.registry.verify_api_key(server.helpdesk_key)
    seen = server.registry.audit(actor=f"key:{helpdesk.key_id}", subject=AGENT)
    assert {e.action for e in seen} >= {"agent.view", "agent.timeline"} and {e.remote for e in seen} == {"127.0.0.1"}
    # Sign out: the key is forgotten and the box is back.
    d.execute_script("window.scrollTo(0, 0)")
    d.find_element(By.ID, "signout").click()
    wait(d, lambda d: d.find_element(By.ID, "signin").is_displayed(), 5, "the sign-in box after sign-out")
    assert d.execute_script("return sessionStorage.getItem('cxpulse.apikey')") is None
    print(f"screenshots: {tmp_path}")


def test_an_hour_loads_whole_in_under_a_second(server, browser, tmp_path):
    """The default view (last hour): chart and summary, scored, both inside the budget."""
    from selenium.webdriver.common.by import By

    d, base = browser, server.url
    d.get(base + "/")
    sign_in(d, server.helpdesk_key)
    wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#worst tbody tr"), 30, "the fleet after sign-in")
    d.get(base + "/static/app.css")  # the browser is warm, as it is for an analyst with the page open
    times = []
    for _ in range(3):
        open_fresh(d, f"{base}/#/agent/{AGENT}?since={DAY_END // S - 3600}&until={DAY_END // S}")
        wait(d, lambda d: mark(d, "cx-summary-ready") is not None, 20, "the hour's summary")
        times.append((mark(d, "cx-chart-ready"), mark(d, "cx-summary-ready")))
    print(f"\nlast hour: (chart, summary) ms after navigation start: {[(round(a), round(b)) for a, b in times]}")
    assert min(b for _, b in times) < load_budget_ms(1000), times
    assert d.find_element(By.CSS_SELECTOR, "#score .num").text.strip() != "…"
    shot(d, tmp_path, "agent-hour.png")


def test_fleet_shows_streaming_desks_as_reporting(browser, tmp_path):
    """Three desks said Hello 20 minutes ago and have streamed a batch a minute since (through the
    ingest writer, as the collector stores them): the fleet's 15-minute view counts all three as
    reporting and lists none as silent (issue 17: last_seen used to stay at the Hello)."""
    import asyncio

    from selenium.webdriver.common.by import By

    from cxpulse.collector.ingest.writer import StoreWriter
    from cxpulse.collector.store import AgentInfo, PendingBatch, open_store
    from cxpulse.v1 import payload as p

    from .conftest import ServerThread

    minutes = 20
    now = (time.time_ns() // 1000 // S) * S
    hello = now - minutes * 60 * S
    db = str(tmp_path / "fleet.sqlite")
    store = open_store(db)
    clock = [hello / S]
    writer = StoreWriter(store, clock=lambda: clock[0])
    writer.start()
    try:
        keys = [
            store.upsert_agent(AgentInfo(f"desk-{i}", host=f"DESK-{i}", os_user=f"user{i}", site="Porto"), hello)
            for i in range(3)
        ]

        async def stream() -> None:
            for m in range(minutes):  # bounded: one batch per desk per simulated minute
                clock[0] = (hello + (m + 1) * 60 * S) / S
                batches = []
                for n, k in enumerate(keys):
                    s = p.Series(target="gateway", address="192.0.2.1", method=p.METHOD_ICMP_RAW)
                    for i in range(60):
                        s.add(hello + m * 60 * S + i * S, 1500 + 100 * n + i % 5)
                    batches.append(writer.commit(PendingBatch(k, 1, m + 1, p.SampleBatch([s]), stream=n + 1)))
                assert all(b.stored for b in await asyncio.gather(*batches))

        asyncio.run(asyncio.wait_for(stream(), 60))
    finally:
        writer.stop()
        store.close()

    server = ServerThread(db).start()
    try:
        d = browser
        d.get(server.url + "/")
        sign_in(d, server.helpdesk_key)
        wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#worst tbody tr")) == 3, 30, "three desks in the fleet")
        heading = d.find_element(By.CSS_SELECTOR, "#worst h2").text
        assert "3 of 3 agents reporting" in heading, heading
        assert not d.find_elements(By.ID, "silent"), "a streaming desk listed as silent"
        rows = " ".join(r.text for r in d.find_elements(By.CSS_SELECTOR, "#worst tbody tr"))
        assert all(f"DESK-{i}" in rows for i in range(3)), rows
        shot(d, tmp_path, "fleet-streaming.png")
    finally:
        server.stop()


def test_search_box_finds_a_desk_by_the_words_of_the_users_name(browser, tmp_path):
    """The page's search box asks the same search as the API and the CLI: any words of the
    display name, in any order and without accents, find the desk (issue 17)."""
    from selenium.webdriver.common.by import By

    from cxpulse.collector.store import AgentInfo, open_store

    from .conftest import ServerThread

    now = time.time_ns() // 1000
    db = str(tmp_path / "names.sqlite")
    store = open_store(db)
    try:
        store.upsert_agent(
            AgentInfo(
                "desk-maria", host="DESK-9", os_user="CORP\\msilva", display_name="Maria Conceição Silva", site="Porto"
            ),
            now,
        )
        store.upsert_agent(
            AgentInfo(
                "desk-other", host="DESK-3", os_user="CORP\\jsilveira", display_name="João Silveira", site="Porto"
            ),
            now,
        )
    finally:
        store.close()
    server = ServerThread(db).start()
    try:
        d = browser
        d.get(server.url + "/")
        sign_in(d, server.helpdesk_key)
        wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#worst"), 30, "the fleet after sign-in")
        d.find_element(By.ID, "q").send_keys("silva conceicao")
        wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#results li.result"), 30, "search results")
        found = [li.get_attribute("data-id") for li in d.find_elements(By.CSS_SELECTOR, "#results li.result")]
        assert found == ["desk-maria"], found
        shown = d.find_element(By.CSS_SELECTOR, "#results li.result").text
        assert "Maria Conceição Silva (CORP\\msilva) on DESK-9" in shown, (
            "the result names the person as the ticket does"
        )
    finally:
        server.stop()


# --- the chart's colours, ticks and "no data"; the keyboard (issue 17) ---------------------------


def _rgb(css: str) -> tuple[int, int, int]:
    """'rgb(0, 114, 178)' or '#0072b2' -> (0, 114, 178)."""
    css = css.strip()
    if css.startswith("#"):
        return tuple(int(css[i : i + 2], 16) for i in (1, 3, 5))
    nums = css[css.index("(") + 1 : css.index(")")].replace(",", " ").split()
    return tuple(int(float(x)) for x in nums[:3])


# Machado, Oliveira & Fernandes (2009), severity 1.0: what a deutan or protan reader sees.
_CVD = {
    "normal": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    "deuteranopia": ((0.367322, 0.860646, -0.227968), (0.280085, 0.672501, 0.047413), (-0.011820, 0.042940, 0.968881)),
    "protanopia": ((0.152286, 1.052583, -0.204868), (0.114503, 0.786281, 0.099216), (-0.003882, -0.048116, 1.051998)),
}


def _delta_e(a: tuple, b: tuple, vision: str) -> float:
    """CIE76 colour difference between two sRGB colours as a reader with ``vision`` sees them."""

    def lab(c):
        lin = [(x / 255) / 12.92 if x / 255 <= 0.04045 else ((x / 255 + 0.055) / 1.055) ** 2.4 for x in c]
        r, g, bl = (max(0.0, min(1.0, sum(m * v for m, v in zip(row, lin)))) for row in _CVD[vision])
        x, y, z = (
            (0.4124 * r + 0.3576 * g + 0.1805 * bl) / 0.95047,
            0.2126 * r + 0.7152 * g + 0.0722 * bl,
            (0.0193 * r + 0.1192 * g + 0.9505 * bl) / 1.08883,
        )
        f = [t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116 for t in (x, y, z)]
        return 116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])

    return sum((p - q) ** 2 for p, q in zip(lab(a), lab(b))) ** 0.5


def _signed_in(d, server) -> None:
    from selenium.webdriver.common.by import By

    d.get(server.url + "/")
    sign_in(d, server.helpdesk_key)
    wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#worst tbody tr"), 30, "the fleet after sign-in")


def test_chart_colours_ticks_and_no_data(server, browser, tmp_path):
    """Hops and event severities never share a colour, even for a colour-blind reader; the y axes
    step 1-2-5 (not 63/125/188); where the window has no samples yet, the chart says so."""
    from selenium.webdriver.common.by import By

    d = browser
    _signed_in(d, server)
    since, until = DAY0 // S + 9 * 3600, DAY_END // S + 1800  # the Wi-Fi and ISP trouble, then 30 min in the future
    open_fresh(d, f"{server.url}/#/agent/{AGENT}?since={since}&until={until}")
    wait(d, lambda d: mark(d, "cx-summary-ready") is not None, 60, "the summary")
    style = "return getComputedStyle(arguments[0])[arguments[1]]"
    hops = {
        p.get_attribute("data-target"): _rgb(d.execute_script(style, p, "stroke"))
        for p in d.find_elements(By.CSS_SELECTOR, "#chart path.series.rtt")
    }
    sev = {
        int(r.get_attribute("data-severity")): _rgb(d.execute_script(style, r, "fill"))
        for r in d.find_elements(By.CSS_SELECTOR, "#chart rect.ev")
    }
    assert sorted(hops) == ["crm-edge", "gateway", "hop2"] and sorted(sev) == [2, 3], (hops, sev)
    legend_sev = [
        _rgb(d.execute_script(style, e, "backgroundColor")) for e in d.find_elements(By.CSS_SELECTOR, "#legend .ev")
    ]
    assert len(legend_sev) == 3 and legend_sev[1] == sev[2] and legend_sev[2] == sev[3], (
        "the legend shows the marks' colours"
    )
    legend_hops = [
        _rgb(d.execute_script(style, e, "backgroundColor")) for e in d.find_elements(By.CSS_SELECTOR, "#legend .sw")
    ]
    assert legend_hops == list(hops.values())
    every = list(hops.values()) + legend_sev
    for vision in _CVD:
        worst_cross = min(_delta_e(h, s, vision) for h in hops.values() for s in legend_sev)
        worst_any = min(_delta_e(a, b, vision) for i, a in enumerate(every) for b in every[i + 1 :])
        print(
            f"\n{vision}: smallest colour difference hop vs severity {worst_cross:.1f}, any two {worst_any:.1f} (CIE76)"
        )
        assert worst_cross >= 20, f"{vision}: a hop line looks like an event severity (dE {worst_cross:.1f})"
        assert worst_any >= 12, f"{vision}: two chart colours look alike (dE {worst_any:.1f})"

    for panel in ("rtt", "jitter", "loss"):
        vals = [
            float(t.get_attribute("data-v"))
            for t in d.find_elements(By.CSS_SELECTOR, f"#chart g.yaxis[data-panel='{panel}'] text.ytick")
        ]
        steps = {round(b - a, 9) for a, b in itertools.pairwise(vals)}
        assert vals[0] == 0 and len(vals) >= 3 and len(steps) == 1, (panel, vals)
        step = steps.pop()
        mant = step / 10 ** __import__("math").floor(__import__("math").log10(step))
        assert round(mant, 6) in (1, 2, 5), f"{panel} ticks {vals}: step {step} is not 1, 2 or 5 x 10^n"

    shade = d.find_elements(By.CSS_SELECTOR, "#chart rect.nodata")
    assert shade, "no 'no data' shading over the empty end of the window"
    last = shade[-1]
    step_s = int(d.find_element(By.ID, "chart").get_attribute("data-step"))
    assert int(last.get_attribute("data-until")) == until
    assert DAY_END // S - 2 * step_s <= int(last.get_attribute("data-since")) <= DAY_END // S + step_s
    assert all(
        int(r.get_attribute("data-until")) <= since + 60
        or int(r.get_attribute("data-since")) >= DAY_END // S - 2 * step_s
        for r in shade
    ), "shading over minutes that have samples"
    labels = [t.text for t in d.find_elements(By.CSS_SELECTOR, "#chart text.nodata-label")]
    # "no data yet" when the window reaches past now, "no data: agent not reporting" otherwise: which
    # depends on the wall clock against the fixture's day (seen both ways in CI); either is labelled.
    assert labels and all(t.startswith("no data") for t in labels), labels
    assert "no data" in d.find_element(By.ID, "legend").text
    shot(d, tmp_path, "chart-colours-nodata.png")


def _focused(d) -> str:
    """The focused element in a few words: its id, or what it is and says."""
    return d.execute_script("""const e = document.activeElement; if (!e || e === document.body) return 'body';
        if (e.id) return '#' + e.id;
        if (e.dataset.range) return 'range:' + e.dataset.range;
        if (e.tagName === 'TR') return 'row:' + e.closest('section').id + ':' + [...e.parentNode.children].indexOf(e);
        return e.tagName.toLowerCase() + ':' + (e.textContent || '').trim().slice(0, 30);""")


def test_keyboard_reaches_every_control_and_event_row(server, browser, tmp_path):
    """From the search box, Tab walks the range buttons, zoom buttons, ticket button, the chart and
    every event row, in page order; Enter on an event row zooms to it, + on the chart zooms in; the
    focused row shows a focus ring (issue 17: nothing below the ticket button was reachable)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    d = browser
    _signed_in(d, server)
    open_fresh(d, f"{server.url}/#/agent/{AGENT}?since={DAY0 // S}&until={DAY_END // S}")
    wait(d, lambda d: mark(d, "cx-summary-ready") is not None, 120, "the day's summary")
    d.execute_script("document.getElementById('q').focus()")
    order = [_focused(d)]
    for _ in range(80):  # bounded: the page has a few dozen stops
        ActionChains(d).send_keys(Keys.TAB).perform()
        order.append(_focused(d))
        if order[-1] == "row:events:2":
            break
    print("\nTab order:", " > ".join(order))
    want = [
        "#q",
        "range:15m",
        "range:1h",
        "range:4h",
        "range:24h",
        "range:7d",
        "#zoomout",
        "#zoomreset",
        "#copy",
        "#chart",
        "row:events:0",
        "row:events:1",
        "row:events:2",
    ]
    assert all(w in order for w in want), [w for w in want if w not in order]
    assert [order.index(w) for w in want] == sorted(order.index(w) for w in want), order
    row = d.find_element(By.CSS_SELECTOR, "#events tbody tr:nth-child(3)")
    assert d.execute_script("return getComputedStyle(arguments[0]).outlineStyle", row) not in ("none", ""), (
        "no visible focus"
    )
    assert "Enter" in row.get_attribute("aria-label") and row.get_attribute("aria-label").count(":") >= 2

    # Enter on the first event row zooms the chart to that event (finer buckets than the day's).
    first = d.find_element(By.CSS_SELECTOR, "#events tbody tr:nth-child(1)")
    d.execute_script("arguments[0].focus()", first)
    d.execute_script("performance.clearMarks('cx-zoom-ready')")
    ActionChains(d).send_keys(Keys.ENTER).perform()
    wait(
        d,
        lambda d: (
            mark(d, "cx-zoom-ready") is not None
            and int(d.find_element(By.ID, "chart").get_attribute("data-step")) < 120
            and "zoomed" in d.find_element(By.ID, "rangelabel").text
        ),
        15,
        "Enter on the event row to zoom to it",
    )
    # Space on the next row works as well; then the chart itself: + zooms in, Escape resets.
    d.execute_script("arguments[0].focus()", d.find_element(By.CSS_SELECTOR, "#events tbody tr:nth-child(2)"))
    before = d.find_element(By.ID, "rangelabel").text
    ActionChains(d).send_keys(Keys.SPACE).perform()
    wait(d, lambda d: d.find_element(By.ID, "rangelabel").text != before, 10, "Space on an event row")
    chart = d.find_element(By.ID, "chart")
    d.execute_script("arguments[0].focus()", chart)
    span = lambda: float(chart.get_attribute("data-until")) - float(chart.get_attribute("data-since"))  # noqa: E731
    s0 = span()
    ActionChains(d).send_keys("+").perform()
    wait(d, lambda d: span() < s0, 10, "+ on the chart to zoom in")
    ActionChains(d).send_keys(Keys.ESCAPE).perform()
    wait(d, lambda d: "zoomed" not in d.find_element(By.ID, "rangelabel").text, 10, "Escape on the chart to reset")
    shot(d, tmp_path, "keyboard.png")


def test_ticket_link_opens_the_same_view(server, browser, tmp_path):
    """The ticket's "View:" line is this page for this person, window and zone; opened fresh, it
    shows the same window in the same zone, and the same ticket (issue 17)."""
    import datetime as dt
    import zoneinfo

    from selenium.webdriver.common.by import By

    d = browser
    _signed_in(d, server)
    since, until = ISP_LOSS[0] // S - 1800, ISP_LOSS[0] // S + 1800
    zone = "Asia/Tokyo"
    open_fresh(d, f"{server.url}/#/agent/{AGENT}?since={since}&until={until}&tz={zone}")
    wait(d, lambda d: mark(d, "cx-summary-ready") is not None, 60, "the summary")
    ticket = d.find_element(By.ID, "ticket").get_attribute("value")
    link = ticket.splitlines()[-1].removeprefix("View: ")
    assert link == f"{server.url}/#/agent/{AGENT}?since={since}&until={until}&tz=Asia%2FTokyo", ticket
    label = d.find_element(By.ID, "rangelabel").text
    tokyo = dt.datetime.fromtimestamp(since, zoneinfo.ZoneInfo(zone))
    assert label.startswith(tokyo.strftime("%Y-%m-%d %H:%M")) and zone in label, (label, tokyo)
    assert tokyo.strftime("%H:%M") in ticket.splitlines()[1], "the ticket's When: line is in the same zone"
    who = d.find_element(By.ID, "who").text

    open_fresh(d, "about:blank")
    open_fresh(d, link)
    wait(d, lambda d: mark(d, "cx-summary-ready") is not None, 60, "the linked view")
    assert d.find_element(By.ID, "who").text == who
    assert d.find_element(By.ID, "rangelabel").text == label
    assert f"times in {zone}" in d.find_element(By.ID, "foot").text
    assert d.find_element(By.ID, "ticket").get_attribute("value") == ticket
    # A range button keeps the linked zone.
    d.find_element(By.CSS_SELECTOR, "button[data-range='4h']").click()
    wait(
        d,
        lambda d: "tz=Asia%2FTokyo" in d.current_url and "4 h" in d.find_element(By.ID, "rangelabel").text,
        10,
        "4 h in Tokyo time",
    )

    # Without a zone in the address, the browser's zone, and the link names it.
    browser_zone = d.execute_script("return Intl.DateTimeFormat().resolvedOptions().timeZone")
    open_fresh(d, f"{server.url}/#/agent/{AGENT}?since={since}&until={until}")
    wait(d, lambda d: mark(d, "cx-summary-ready") is not None, 60, "the summary")
    ticket = d.find_element(By.ID, "ticket").get_attribute("value")
    assert ticket.splitlines()[-1] == f"View: {server.url}/#/agent/{AGENT}?since={since}&until={until}&" + __import__(
        "urllib.parse"
    ).parse.urlencode({"tz": browser_zone})
    shot(d, tmp_path, "ticket-link.png")


def test_jargon_has_plain_words_and_tooltips(server, browser, tmp_path):
    """Component names in plain words, their reasons' jargon (Apdex, T, R, |dRTT|, severity-weighted
    s, RSSI) as tooltips from the glossary, table headers explained, event rows and chart marks in
    the words of cxpulse.collector.lookup.words (issue 17)."""
    from selenium.webdriver.common.by import By

    from cxpulse.collector.lookup.glossary import TERMS
    from cxpulse.collector.lookup.words import EVENT_EXPLAINED, EVENT_WORDS

    plain = {t: p for t, p, _, _ in TERMS}
    d = browser
    _signed_in(d, server)
    open_fresh(d, f"{server.url}/#/agent/{AGENT}?since={DAY0 // S}&until={DAY_END // S}")
    wait(d, lambda d: mark(d, "cx-summary-ready") is not None, 120, "the day's summary")
    wait(
        d, lambda d: d.find_elements(By.CSS_SELECTOR, "#context abbr.explain[data-term]"), 20, "the glossary's tooltips"
    )
    names = d.find_elements(By.CSS_SELECTOR, "#context tbody tr td:first-child abbr.explain")
    assert names, "component names not in plain words"
    for n in names:
        term = n.get_attribute("data-term")
        assert n.text == plain[term] and term in n.get_attribute("title"), (term, n.text)
    jargon = d.find_elements(By.CSS_SELECTOR, "#context td.wrap abbr.explain")
    print("\nexplained in the reasons:", sorted({j.text for j in jargon}))
    assert jargon and all(j.get_attribute("title") for j in jargon)
    assert {j.get_attribute("data-term") for j in jargon} & {"Apdex", "T", "R", "severity-weighted s", "RSSI", "|dRTT|"}
    heads = {th.text: th.get_attribute("title") for th in d.find_elements(By.CSS_SELECTOR, "#hops th, #apps th")}
    for h in ("p95", "jitter", "loss s", "ttfb"):
        assert heads.get(h) and "ms" in heads["p95"], (h, heads.get(h))
    rows = d.find_elements(By.CSS_SELECTOR, "#events tbody tr")
    assert rows and all(any(EVENT_EXPLAINED[k] in r.get_attribute("title") for k in EVENT_EXPLAINED) for r in rows)
    marks = [
        m.find_element(By.TAG_NAME, "title").get_attribute("textContent")
        for m in d.find_elements(By.CSS_SELECTOR, "#chart rect.ev")
    ]
    assert marks and all(m.split(" at ")[0] in EVENT_WORDS.values() for m in marks), marks
    limiting = [
        a
        for a in d.find_elements(By.CSS_SELECTOR, "#score .muted abbr")
        if a.get_attribute("data-term") != "limited by"
    ]
    if limiting:  # "limited by app responsiveness", not "limited by apps"
        assert limiting[0].text in plain.values(), limiting[0].text
    shot(d, tmp_path, "plain-words.png", height=1900)
