"""Links back to the helpdesk page: one way to write "this person, this window, this zone" as a URL.
The ticket carries it so a later reader opens the same view (the page reads ``since``, ``until``, ``tz``); alerts too.
An empty ``base`` gives a link relative to the page; which base is used: docs/api.md, "Ticket summary".
"""

from __future__ import annotations

import urllib.parse

__all__ = ["view_url"]

_S = 1_000_000


def view_url(base: str, agent_id: str, since_us: int, until_us: int, tz: str | None = None) -> str:
    """The page's address for ``agent_id`` over [since, until) (whole seconds) in zone ``tz``."""
    q: dict[str, int | str] = {"since": since_us // _S, "until": -(-until_us // _S)}
    if tz:
        q["tz"] = tz
    return f"{(base or '').rstrip('/')}/#/agent/{urllib.parse.quote(agent_id, safe='')}?{urllib.parse.urlencode(q)}"
