"""The helpdesk page says which ISP, by name (issue 17), in a real headless Chromium.

The isp_loss scenario with real public addresses on the home desks' ISP hops, stored in SQLite and
served by the collector's HTTP server in this process; the process's ISP namer asks a DNS server of
the test's own on loopback (tests/score/test_isp_name.py). The agent page's "Where:" reads the
verdict's name, "the ISP (vodafone.de)" (the fleet row's is checked through the API there).
"""

from __future__ import annotations

import pytest

from cxpulse.collector.score import isp_name
from cxpulse.collector.score.isp_name import IspNamer, NamingConfig

from ..score.test_isp_name import VODAFONE_HOP, _isp_loss_with_public_hops, ptr_server  # noqa: F401 - fixture
from .test_browser import sign_in, wait

pytestmark = pytest.mark.timeout(180)
S = 1_000_000


@pytest.mark.slow
def test_agent_page_names_the_isp(tmp_path, browser, ptr_server):  # noqa: F811
    from selenium.webdriver.common.by import By

    from .conftest import ServerThread

    _, dns_server = ptr_server
    store, sc = _isp_loss_with_public_hops(tmp_path)
    db = str(tmp_path / "isp.sqlite")
    store.close()
    prev = isp_name.install(IspNamer(NamingConfig(nameservers=(dns_server,), wait_s=2.0)))
    server = ServerThread(db).start()
    try:
        d = browser
        desk = sc.faults[0].agents[0]
        d.get(server.url + "/")
        sign_in(d, server.helpdesk_key)
        wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#worst"), 30, "the fleet after sign-in")
        d.get(f"{server.url}/#/agent/{desk}?since={sc.t0_us // S}&until={sc.end_us // S}")
        where = wait(
            d,
            lambda d: next(
                (e.text for e in d.find_elements(By.CSS_SELECTOR, "p.where") if e.text.startswith("Where:")), None
            ),
            30,
            "the verdict's Where",
        )
        assert "Where: the ISP (vodafone.de)" in where, where
        body = d.find_element(By.TAG_NAME, "body").text
        assert VODAFONE_HOP in body or "vodafone.de" in body
    finally:
        server.stop()
        isp_name.install(prev).close()
