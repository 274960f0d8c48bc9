"""The JSON API and the ticket route carry the view's "is it just me?" counts and its events by
place (computed once in report; issue 17)."""

from __future__ import annotations

import httpx

from ..test_lookup_others import NOW, S, lab
from .conftest import ServerThread, auth


def test_api_headline_and_ticket_carry_others_and_event_groups(tmp_path):
    lab(tmp_path).close()
    server = ServerThread(str(tmp_path / "c.sqlite"), now_us=lambda: NOW).start()
    try:
        params = {"since": str(NOW // S - 600), "until": str(NOW // S), "timeline": "false"}
        r = httpx.get(
            server.url + "/api/v1/agents/agent-1", params=params, headers=auth(server.helpdesk_key), timeout=60
        )
        assert r.status_code == 200, r.text
        body = r.json()
        o = body["headline"]["others"]
        assert o["site"] == {"name": "Lisbon", "affected": 2, "of": 4}
        assert o["platform"] == {"name": "Genesys Cloud", "affected": 3, "of": 5}
        assert o == body["agent"]["score"]["verdict"]["others"]  # one computation, two places to read it
        assert [g["place"] for g in body["agent"]["event_groups"]] == [
            "ISP",
            "Genesys Cloud",
            "home/office network",
            "Wi-Fi",
        ]
        assert {e["what"] for e in body["agent"]["events"]} >= {
            "connection lost",
            "packets lost",
            "Wi-Fi switched access point",
        }
        ticket = httpx.get(
            server.url + "/api/v1/agents/agent-1/ticket", params=params, headers=auth(server.helpdesk_key), timeout=60
        ).text
        assert f"Others at the same time: {o['text']}" in ticket
        assert "Events: 6, by place, the most felt first: ISP 3" in ticket
    finally:
        server.stop()
