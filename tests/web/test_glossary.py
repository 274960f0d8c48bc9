"""docs/glossary.md is the glossary module's list, and that list covers what the views show (issue 17)."""

from __future__ import annotations

from pathlib import Path

from cxpulse.collector.lookup.glossary import TERMS, glossary, markdown
from cxpulse.collector.lookup.words import EVENT_WORDS
from cxpulse.v1.kinds import EVENT_KINDS

DOC = Path(__file__).resolve().parents[2] / "docs" / "glossary.md"


def test_docs_glossary_is_the_modules_list():
    assert DOC.read_text() == markdown(), "docs/glossary.md is out of step: regenerate it from glossary.markdown()"


def test_glossary_covers_the_jargon_the_views_print():
    terms = {t for t, *_ in TERMS}
    # What issue 17 found unexplained on the page, the ticket and the CLI, and the tables' headers.
    for shown in (
        "Apdex",
        "T",
        "R",
        "|dRTT|",
        "stability",
        "severity-weighted s",
        "voice",
        "apps",
        "wifi",
        "median",
        "p95",
        "jitter",
        "loss s",
        "RSSI",
        "SNR",
        "dns",
        "tcp",
        "tls",
        "ttfb",
        "avail %",
        "MOS",
    ):
        assert shown in terms, shown
    assert all(plain and meaning for _, plain, _, meaning in TERMS)
    g = glossary()
    assert {e["kind"] for e in g["events"]} == set(EVENT_WORDS) >= set(EVENT_KINDS), "an event kind without plain words"
    assert all(e["meaning"] for e in g["events"])


def test_glossary_api(server):
    import httpx

    r = httpx.get(
        f"{server.url}/api/v1/glossary", headers={"Authorization": f"Bearer {server.helpdesk_key}"}, timeout=30
    )
    assert r.status_code == 200 and r.json() == glossary()
    assert httpx.get(f"{server.url}/api/v1/glossary", timeout=30).status_code == 401
