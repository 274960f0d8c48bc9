"""The person's page in headless Chromium: "Others at the same time" near the verdict, and the
events grouped by place in the view's order with their plain words (issue 17)."""

from __future__ import annotations

from ..test_lookup_others import NOW, S, lab
from .conftest import ServerThread
from .test_browser import open_fresh, sign_in, wait


def test_page_shows_others_and_events_by_place(browser, tmp_path):
    from selenium.webdriver.common.by import By

    lab(tmp_path).close()
    server = ServerThread(str(tmp_path / "c.sqlite"), now_us=lambda: NOW).start()
    try:
        d = browser
        d.get(server.url + "/")
        sign_in(d, server.helpdesk_key)
        wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#worst"), 30, "the fleet after sign-in")
        open_fresh(d, f"{server.url}/#/agent/agent-1?since={NOW // S - 600}&until={NOW // S}")
        wait(d, lambda d: d.find_elements(By.ID, "others"), 30, "the others block")
        others = d.find_element(By.ID, "others").text
        assert others.startswith(
            "Others at the same time: 2 of 4 desks in Lisbon, 3 of 4 on the same ISP (100.64.0.1), "
            "3 of 5 on Genesys Cloud"
        ), others
        assert "in the degraded time" in others
        # The block sits with the verdict ("Where"), above the evidence and the next step.
        assert d.find_element(By.CSS_SELECTOR, "#where #others")
        groups = [li.get_attribute("data-place") for li in d.find_elements(By.CSS_SELECTOR, "#eventgroups li")]
        assert groups == ["isp", "platform:Genesys Cloud", "lan", "wifi"], groups
        rows = d.find_elements(By.CSS_SELECTOR, "#events tbody tr")
        what = [r.find_elements(By.TAG_NAME, "td")[2].text for r in rows]
        assert what[:3] == ["connection lost", "packets lost", "packets lost"], what
        assert not any("_" in w for w in what), what
        assert rows[0].find_elements(By.TAG_NAME, "td")[3].text == "ISP (isp)"
    finally:
        server.stop()
