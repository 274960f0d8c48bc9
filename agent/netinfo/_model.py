"""The record every netinfo backend returns, shared so that callers never depend on one OS's module."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["DefaultRoute"]


class DefaultRoute(NamedTuple):
    """A default route via a gateway; ``metric`` is lower-is-preferred, as each backend ranks it."""

    gateway: str
    interface: str
    metric: int
