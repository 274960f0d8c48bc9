"""Display names through the lookup: found by any word of the name, shown as the helpdesk knows the
person, hidden exactly like the login when the collector pseudonymizes (a name is as personal)."""

from __future__ import annotations

import dataclasses
import json

import httpx
import pytest

from cxpulse.collector.lookup.report import build, render_text
from cxpulse.collector.store import open_store
from tests.conftest import run_cli

from .conftest import ServerThread, auth
from .scenario import DAY_END, fill_day, fill_fleet

NAMES = {"maria.silva": "Maria Silva", "joao.pereira": "João Pereira", "ana.costa": "Ana Costa"}


@pytest.fixture(scope="module")
def named_db(tmp_path_factory):
    """The web tests' day store, with display names given by the agents' latest Hellos."""
    path = tmp_path_factory.mktemp("names") / "collector.sqlite"
    store = open_store(str(path))
    try:
        fill_day(store)
        fill_fleet(store, DAY_END)
        for a in store.all_agents():
            if a.info.os_user in NAMES:
                named = dataclasses.replace(a.info, display_name=NAMES[a.info.os_user])
                store.upsert_agent(named, DAY_END - 3600 * 10**6)  # the Hello that named them, an hour back
                store.upsert_agent(named, a.last_seen_us)  # last seen as before: same user, no new change
    finally:
        store.close()
    return str(path)


def test_cli_lookup_by_a_name_without_accents(named_db):
    r = run_cli("lookup", "joao PEREIRA", "--db", named_db, "--window", "15m")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("João Pereira (joao.pereira) on "), r.stdout[
        :200
    ]  # the short output names the person first


def get(s, path, **params):
    r = httpx.get(s.url + path, headers=auth(s.helpdesk_key), params=params, timeout=60)
    assert r.status_code == 200, r.text
    return r


def test_lookup_finds_and_shows_the_display_name(named_db):
    store = open_store(named_db)
    try:
        view = build(store, "maria silva", 900, now_us=DAY_END)
        (a,) = view["agents"]
        assert (a["user"], a["display_name"]) == ("maria.silva", "Maria Silva")
        assert a["users"] and a["users"][-1]["display_name"] == "Maria Silva"
        assert render_text(view).splitlines()[0].startswith("Maria Silva (maria.silva) on ")
        assert [x["user"] for x in build(store, "Joao", 900, now_us=DAY_END)["agents"]] == ["joao.pereira"]
    finally:
        store.close()


def test_api_search_by_name_shows_it_and_pseudonymizes_it_elsewhere(named_db):
    s = ServerThread(named_db, now_us=lambda: DAY_END).start()
    try:
        found = get(s, "/api/v1/agents", q="PEREIRA").json()["agents"]
        assert [(a["user"], a["display_name"]) for a in found] == [("joao.pereira", "João Pereira")]
    finally:
        s.stop()
    s = ServerThread(named_db, now_us=lambda: DAY_END, pseudonymize=True).start()
    try:
        fleet = get(s, "/api/v1/fleet", window="15m")
        by_site = get(s, "/api/v1/agents", q="porto")
        for r in (fleet, by_site):
            text = json.dumps(r.json(), ensure_ascii=False)
            assert not any(w in text for name in NAMES.values() for w in name.split()), text[:500]
        for a in fleet.json()["worst"] + by_site.json()["agents"]:
            assert a["display_name"] in ("", a["user"]) and a["user"].startswith("u-")
        # Typing the person's name (any word of it, without accents) shows the name: the analyst knows it.
        named = get(s, "/api/v1/agents", q="joao pereira").json()["agents"]
        assert [(a["user"], a["display_name"]) for a in named] == [("joao.pereira", "João Pereira")]
    finally:
        s.stop()
