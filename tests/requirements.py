"""Skip-or-fail for tests that need something this machine may lack (root, ``ip netns``, IPv6).

A developer's laptop should skip such tests with a reason; CI sets ``CXPULSE_REQUIRE_ALL=1`` so
that a missing capability fails loudly instead of turning the suite silently green.
"""

from __future__ import annotations

import os

import pytest

__all__ = ["require", "require_all"]


def require_all() -> bool:
    return os.environ.get("CXPULSE_REQUIRE_ALL") == "1"


def require(ok: bool, reason: str) -> None:
    """Continue if ``ok``; otherwise skip the test, or fail it under ``CXPULSE_REQUIRE_ALL=1``."""
    if ok:
        return
    if require_all():
        pytest.fail(f"required by CXPULSE_REQUIRE_ALL=1: {reason}", pytrace=False)
    pytest.skip(reason)
