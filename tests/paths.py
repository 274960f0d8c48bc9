"""The standard path a contact-center agent's traffic takes: desk -> gw -> isp -> app.

The agent's job is to say which hop is at fault, so its tests need real hops: four namespaces,
routed (gw and isp forward and decrement TTL, a traceroute from desk sees gw, isp, app), with an
optional impairment bridge (``tests/impair.py``) spliced into one link. The bridge is a layer-2
device and never shows up as a hop.

    with NetPath(tmp_path, impair_at="gw-isp") as path:
        path.bridge.update(both=Impairment(delay_ms=20))
        path.desk.call(echo_train, path.hops.app, 50, 0.02)   # RTT to app ~ 40 ms + baseline
        path.desk.call(echo_train, path.hops.gateway, 50, 0.02)  # RTT to gw unchanged

Addresses (all from 10.253.0.0/16, one fresh /24 per link, of which the first /30 is used):
desk-gw: desk .1, gw .2; gw-isp: gw .1, isp .2; isp-app: isp .1, app .2. ``hops`` gives each
router the way desk sees it: the address it answers a traceroute from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import TracebackType

from tests.impair import Bridge, Config, splice
from tests.netns import Host, Lab, Link

__all__ = ["LINKS", "Hops", "NetPath", "Path"]

LINKS = ("desk-gw", "gw-isp", "isp-app")


@dataclass(frozen=True)
class Hops:
    """Each hop's address as desk sees it, nearest first."""

    gateway: str
    isp: str
    app: str

    def as_list(self) -> list[str]:
        return [self.gateway, self.isp, self.app]


class NetPath:
    """Builds the four hosts on enter and removes everything on exit (also on failure).

    Pass ``lab`` to build inside a lab the test already has (it then stays the test's to close),
    e.g. to add a second app server; otherwise the path owns a lab of its own. ``impair_at`` names
    one of ``LINKS``; its bridge's ``a_to_b`` is the direction away from desk (upstream).
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        impair_at: str | None = None,
        config: Config | None = None,
        lab: Lab | None = None,
        prefix: int = 30,
    ) -> None:
        if impair_at is not None and impair_at not in LINKS:
            raise ValueError(f"impair_at must be one of {LINKS}, not {impair_at!r}")
        self.workdir = workdir
        self.impair_at = impair_at
        self.config = config
        self.prefix = prefix
        self._own_lab = lab is None
        self.lab = lab if lab is not None else Lab()
        self.links: dict[str, Link] = {}
        self.bridge: Bridge | None = None

    def __enter__(self) -> NetPath:
        if self._own_lab:
            self.lab.__enter__()
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._own_lab:
            self.lab.close()
        elif self.bridge is not None:
            self.bridge.stop()

    def _build(self) -> None:
        lab = self.lab
        self.desk, self.gw, self.isp, self.app = (lab.host(n) for n in ("desk", "gw", "isp", "app"))
        pairs = {"desk-gw": (self.desk, self.gw), "gw-isp": (self.gw, self.isp), "isp-app": (self.isp, self.app)}
        for name, (a, b) in pairs.items():
            self.links[name] = lab.link(a, b, prefix=self.prefix)
            if name == self.impair_at:  # before any route uses the link
                self.bridge = splice(lab, self.links[name], self.workdir, self.config, label=f"imp_{name}")

        desk_gw, gw_isp, isp_app = (self.links[n] for n in LINKS)
        self.gw.enable_forwarding()
        self.isp.enable_forwarding()
        self.desk.default_route(via=desk_gw.b_addr)
        self.gw.default_route(via=gw_isp.b_addr)
        self.isp.route(str(desk_gw.network), via=gw_isp.a_addr)
        self.app.default_route(via=isp_app.a_addr)
        # Routers answer a traceroute from the address facing the sender (the route back to desk).
        self.hops = Hops(gateway=desk_gw.b_addr, isp=gw_isp.b_addr, app=isp_app.b_addr)

    @property
    def hosts(self) -> dict[str, Host]:
        return {"desk": self.desk, "gw": self.gw, "isp": self.isp, "app": self.app}


# The name the first brief used; ``NetPath`` reads better next to ``pathlib.Path`` in a test.
Path = NetPath
