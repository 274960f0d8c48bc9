"""How the agent proves who it is and checks whom it talks to: channel security and its credential.
TLS against the installed CA; the enrollment token traded once for a credential kept readable by the service only.
Design notes: docs/agent-internals.md, "agent/enrollment.py".
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import grpc

from cxpulse.atomicfile import write_atomic
from cxpulse.v1 import telemetry_pb2 as pb
from cxpulse.v1 import telemetry_pb2_grpc as pb_grpc

log = logging.getLogger("cxpulse.agent.enrollment")

CREDENTIAL_FILE = "credential.json"
AUTH_KEY = "authorization"
# bdp_probe off: grpc would send a PING after each ack it receives to size its flow-control window,
# useless for a few kB per batch and ~90 of the agent's ~375 data packets an hour (issue 9 upload).
CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.bdp_probe", 0),
]
ENROLL_TIMEOUT_S = 20.0


class NotEnrolled(Exception):
    """No credential and no way to get one (no token, or the collector refused it); the reason says which."""


@dataclass(frozen=True)
class ChannelSecurity:
    """What ``grpc.aio.secure_channel`` needs, built once from the config (files read at start)."""

    insecure: bool = False
    ca_pem: bytes | None = None
    client_cert: bytes | None = None
    client_key: bytes | None = None
    server_name: str = ""

    @classmethod
    def from_config(cls, cfg) -> ChannelSecurity:
        def read(path: str) -> bytes | None:
            if not path:
                return None
            with open(path, "rb") as f:
                return f.read()

        return cls(
            insecure=cfg.insecure,
            ca_pem=read(cfg.ca_file),
            client_cert=read(cfg.client_cert_file),
            client_key=read(cfg.client_key_file),
            server_name=cfg.tls_server_name,
        )

    def channel(self, address: str) -> grpc.aio.Channel:
        options: list[tuple[str, int | str]] = list(CHANNEL_OPTIONS)
        if self.insecure:
            log.warning(
                "INSECURE: plain-text gRPC to %s (insecure = true): the collector is not verified and "
                "the credential crosses the network readable; development only",
                address,
            )
            return grpc.aio.insecure_channel(address, options=options)
        if self.server_name:
            options.append(("grpc.ssl_target_name_override", self.server_name))
        creds = grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem, private_key=self.client_key, certificate_chain=self.client_cert
        )
        return grpc.aio.secure_channel(address, creds, options=options)


class Credential:
    """The agent's credential: loaded from the state dir, or obtained once with the enrollment token."""

    def __init__(self, state_dir: str, agent_id: str, host: str, token: str = ""):
        self.path = os.path.join(state_dir, CREDENTIAL_FILE)
        self.agent_id, self.host, self.token = agent_id, host, token.strip()
        self.secret = self._load()

    def _load(self) -> str:
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return ""
        except (OSError, ValueError) as exc:
            log.error("cannot read %s (%s): enrolling again if a token is configured", self.path, exc)
            return ""
        if (
            not isinstance(data, dict)
            or data.get("agent_id") != self.agent_id
            or not isinstance(data.get("credential"), str)
        ):
            log.error("%s belongs to another agent id: ignoring it", self.path)
            return ""
        return data["credential"]

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((AUTH_KEY, f"Bearer {self.secret}"),) if self.secret else ()

    async def ensure(self, channel: grpc.aio.Channel) -> None:
        """Enroll over ``channel`` unless a credential is held; raises NotEnrolled when it cannot."""
        if self.secret:
            return
        if not self.token:
            raise NotEnrolled("not enrolled: no credential in the state directory and no enroll_token configured")
        stub = pb_grpc.TelemetryServiceStub(channel)
        try:
            resp = await stub.Enroll(
                pb.EnrollRequest(token=self.token, agent_id=self.agent_id, host=self.host), timeout=ENROLL_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (
                grpc.StatusCode.PERMISSION_DENIED,
                grpc.StatusCode.INVALID_ARGUMENT,
                grpc.StatusCode.UNIMPLEMENTED,
            ):
                raise NotEnrolled(f"the collector refused enrollment: {exc.details()}") from None
            raise
        store_credential(self.path, self.agent_id, resp.credential)
        self.secret = resp.credential
        log.warning(
            "enrolled with the collector as agent %s (site %r); credential kept in %s",
            self.agent_id,
            resp.site,
            self.path,
        )

    def rejected(self) -> None:
        """The collector no longer accepts it (revoked, or a collector database that forgot it):
        drop it from memory so that the next session may enroll again (which a revoked id cannot)."""
        self.secret = ""


def store_credential(path: str, agent_id: str, credential: str) -> None:
    """Write atomically, never readable by others, not even for a moment (created 0600, and the
    Windows ACL set while it is still empty)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_atomic(
        path, json.dumps({"agent_id": agent_id, "credential": credential}).encode(), mode=0o600, restrict=_restrict
    )


def _restrict(path: str) -> None:
    """Windows: SYSTEM and Administrators only (the same ACL as enroll.toml); POSIX has the mode."""
    if os.name != "nt":
        return
    from pathlib import Path

    from .acl_windows import restrict_secret_file

    restrict_secret_file(Path(path))
