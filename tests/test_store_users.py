"""Desk users in the store: display names, the search by any word of a name, and each change of user.

Both stores, as tests/test_store.py (PostgreSQL with CXPULSE_TEST_POSTGRES set).
"""

from __future__ import annotations

import sqlite3

from cxpulse.collector.store import AgentInfo, UserChange, fold, open_store, search_words, user_key

T0 = 1_790_000_000_000_000
MIN = 60_000_000


def info(agent_id, user, name, host="DESK-1", site="Lisbon"):
    return AgentInfo(agent_id, host, user, "Windows 11 23H2", "0.2.0", site, name)


def found(store, q):
    return sorted(a.info.agent_id for a in store.find_agents(q))


def test_fold_drops_accents_case_and_punctuation():
    assert fold("João Conceição") == "joao conceicao"
    assert fold("CORP\\msilva") == "corp msilva"
    assert fold("  SILVA,  Maria ") == "silva maria"
    assert fold("Ærøskøbing Straße") == "ærøskøbing strasse"  # letters without a decomposition stay letters
    assert user_key("CORP\\msilva", "Maria Silva") == " corp msilva maria silva "
    assert search_words("maria  SILVA") == ["%maria%", "%silva%"]
    assert search_words("%_\\") == []  # nothing of a LIKE pattern survives folding


def test_search_by_any_word_of_the_display_name_case_and_accent_insensitive(store):
    store.upsert_agent(info("a-maria", "CORP\\msilva", "Maria Silva", "DESK-12"), T0)
    store.upsert_agent(info("a-joao", "CORP\\jconceicao", "João Conceição", "DESK-13"), T0)
    store.upsert_agent(info("a-mario", "CORP\\mcosta", "Mário Costa", "DESK-14", "Porto"), T0)
    for q, want in [
        ("maria silva", ["a-maria"]),
        ("Silva", ["a-maria"]),
        ("silva maria", ["a-maria"]),
        ("SILVA, Maria", ["a-maria"]),
        ("Conceicao", ["a-joao"]),
        ("joão", ["a-joao"]),
        ("JOAO CONCEIÇÃO", ["a-joao"]),
        ("mario", ["a-mario"]),
        ("msilva", ["a-maria"]),
        ("CORP\\msilva", ["a-maria"]),
        ("desk-13", ["a-joao"]),
        ("porto", ["a-mario"]),
        ("a-joao", ["a-joao"]),
        ("mari", ["a-maria", "a-mario"]),
        ("maria costa", []),
    ]:
        assert found(store, q) == want, q
    (rec,) = store.find_agents("maria silva")
    assert rec.info.display_name == "Maria Silva" and rec.info.os_user == "CORP\\msilva"
    assert store.agent("a-joao").info.display_name == "João Conceição"
    assert {a.info.display_name for a in store.all_agents()} == {"Maria Silva", "João Conceição", "Mário Costa"}


def test_hot_desk_changes_are_recorded_and_the_earlier_user_still_finds_the_desk(store):
    k = store.upsert_agent(info("desk-a", "CORP\\msilva", "Maria Silva"), T0)
    store.upsert_agent(info("desk-a", "CORP\\msilva", "Maria Silva"), T0 + 5 * MIN)  # a reconnect: no change
    store.upsert_agent(info("desk-a", "", ""), T0 + 60 * MIN)  # logoff: nobody at the desk
    store.upsert_agent(info("desk-a", "CORP\\jconceicao", "João Conceição"), T0 + 70 * MIN)
    assert store.user_changes(k, T0, T0 + 80 * MIN) == [
        UserChange(T0, "CORP\\msilva", "Maria Silva"),
        UserChange(T0 + 60 * MIN, "", ""),
        UserChange(T0 + 70 * MIN, "CORP\\jconceicao", "João Conceição"),
    ]
    # A window opens with the user in force at its start; changes after its end are not in it.
    assert store.user_changes(k, T0 + 65 * MIN, T0 + 66 * MIN) == [UserChange(T0 + 60 * MIN, "", "")]
    assert store.user_changes(k, T0 + 30 * MIN, T0 + 61 * MIN) == [
        UserChange(T0, "CORP\\msilva", "Maria Silva"),
        UserChange(T0 + 60 * MIN, "", ""),
    ]
    assert store.user_changes(k, T0 - 10 * MIN, T0 - MIN) == []
    # The agent shows the current user; the earlier one still finds the desk (the ticket may be hers).
    rec = store.agent("desk-a")
    assert (rec.info.os_user, rec.info.display_name) == ("CORP\\jconceicao", "João Conceição")
    assert found(store, "maria silva") == ["desk-a"] and found(store, "conceicao") == ["desk-a"]


def test_logoff_keeps_the_last_user_on_the_agent(store):
    store.upsert_agent(info("desk-b", "CORP\\msilva", "Maria Silva"), T0)
    store.upsert_agent(info("desk-b", "", ""), T0 + MIN)
    rec = store.agent("desk-b")
    assert (rec.info.os_user, rec.info.display_name, rec.last_seen_us) == ("CORP\\msilva", "Maria Silva", T0 + MIN)
    assert found(store, "silva") == ["desk-b"]


def test_old_agent_without_display_name_is_found_by_login(store):
    store.upsert_agent(AgentInfo("old", "DESK-9", "ana.lopes"), T0)
    assert found(store, "ana lopes") == ["old"] and found(store, "ANA.LOPES") == ["old"]
    assert store.agent("old").info.display_name == ""


def test_sqlite_made_before_display_names_gets_the_columns_on_open(tmp_path):
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE agents (key INTEGER PRIMARY KEY, agent_id TEXT NOT NULL UNIQUE, host TEXT NOT NULL DEFAULT '',
            os_user TEXT NOT NULL DEFAULT '', os TEXT NOT NULL DEFAULT '', agent_version TEXT NOT NULL DEFAULT '',
            site TEXT NOT NULL DEFAULT '', first_seen_us INTEGER NOT NULL, last_seen_us INTEGER NOT NULL);
        INSERT INTO agents (agent_id, host, os_user, first_seen_us, last_seen_us)
            VALUES ('kept', 'DESK-3', 'Joana.Gonçalves', 1, 2);
    """)
    con.close()
    st = open_store(str(path))
    try:
        assert found(st, "goncalves") == ["kept"]  # the search key was filled from the login
        k = st.upsert_agent(info("kept", "CORP\\jgoncalves", "Joana Gonçalves", "DESK-3"), T0)
        assert st.agent("kept").info.display_name == "Joana Gonçalves"
        assert st.user_changes(k, T0, T0 + 1) == [UserChange(T0, "CORP\\jgoncalves", "Joana Gonçalves")]
    finally:
        st.close()
