"""The collector's central configuration as the agent receives it: checked whole, kept if good.
A push with any bad value is refused entirely (``config_rejected``); the last good one survives restarts.
Design notes: docs/agent-internals.md, "agent/central.py".
"""

from __future__ import annotations

import logging
import os

from cxpulse.atomicfile import write_atomic
from cxpulse.v1 import telemetry_pb2 as pb
from cxpulse.v1.contract import check

__all__ = ["FILE_NAME", "check", "load_saved", "save"]

log = logging.getLogger("cxpulse.agent.central")

FILE_NAME = "central-config.pb"


def save(state_dir: str, c: pb.AgentConfig) -> None:
    """Keep ``c`` as the last good config (without the per-stream committed_seq); errors are logged."""
    kept = pb.AgentConfig()
    kept.CopyFrom(c)
    kept.committed_seq = 0
    path = os.path.join(state_dir, FILE_NAME)
    try:
        write_atomic(path, kept.SerializeToString())  # binary on Windows too (O_BINARY)
    except OSError as exc:  # never crash after start-up: the config still runs, only not kept
        log.warning("cannot keep the collector's config in %s: %s", path, exc)


def load_saved(state_dir: str) -> pb.AgentConfig | None:
    """The last good config kept by ``save``, or None (none, unreadable, or no longer valid here)."""
    path = os.path.join(state_dir, FILE_NAME)
    try:
        with open(path, "rb") as f:
            c = pb.AgentConfig.FromString(f.read())
    except FileNotFoundError:
        return None
    except Exception as exc:  # a damaged file is not a reason to stop measuring
        log.warning("ignoring the kept collector config %s: %s", path, exc)
        return None
    problem = check(c)
    if problem:
        log.warning("ignoring the kept collector config %s: %s", path, problem)
        return None
    return c
