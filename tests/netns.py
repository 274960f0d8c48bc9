"""Real network namespaces for tests: hosts joined by veth links, with addresses and routes.

The agent measures kernel behaviour (who may open an ICMP socket, which route is the default,
what a silent host looks like), so its tests run against real kernels in namespaces instead of
mocks. A ``Lab`` owns everything it creates and removes it on exit, also when the test fails.

Safety: links get addresses from 10.253.0.0/16, and those exist only inside namespaces made here.
A namespace has no route to the machine's real network, so no test traffic can leave it.

    with Lab() as lab:
        agent, gw = lab.host("agent"), lab.host("gw")
        link = lab.link(agent, gw)              # 10.253.0.1/24 <-> 10.253.0.2/24
        agent.default_route(via=link.b_addr)
        agent.call(some_module_function, arg)   # runs in a child python inside "agent"
"""

from __future__ import annotations

import atexit
import functools
import inspect
import ipaddress
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ChildError",
    "Host",
    "Lab",
    "Link",
    "RoutedDesk",
    "netns_available",
    "require_netns",
    "routed_desk",
    "sweep_stale",
]

NAME_PREFIX = "cxt"
SUBNET_POOL = ipaddress.IPv4Network("10.253.0.0/16")
NOBODY = 65534

_lab_ids = itertools.count()
_open_labs: set[Lab] = set()
_RESULT_MARK = "@@cxpulse-netns-result@@ "


class ChildError(RuntimeError):
    """A command or child python inside a namespace failed; carries its output for the report."""


def _run(
    argv: list[str], *, check: bool = True, timeout: float = 20, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise ChildError(f"{' '.join(argv)} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


@functools.cache
def netns_available() -> tuple[bool, str]:
    """Whether this process can build labs, and if not, why (for a skip message)."""
    if not sys.platform.startswith("linux"):
        return False, "network namespaces exist on Linux only"
    if os.geteuid() != 0:
        return False, "creating network namespaces needs root"
    if shutil.which("ip") is None:
        return False, "iproute2 `ip` is not installed"
    name = f"{NAME_PREFIX}{os.getpid()}-check"
    proc = _run(["ip", "netns", "add", name], check=False)
    if proc.returncode != 0:
        return False, f"`ip netns add` failed: {proc.stderr.strip()}"
    _run(["ip", "netns", "del", name], check=False)
    return True, ""


def require_netns() -> None:
    from tests.requirements import require  # late: keep this module importable without pytest

    ok, reason = netns_available()
    require(ok, reason)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale() -> None:
    """Delete namespaces left by test processes that died (SIGKILL) before they could clean up.

    Only names of this module's pattern whose owner pid is gone are touched, so labs of test runs
    going on in parallel are left alone.
    """
    proc = _run(["ip", "netns", "list"], check=False)
    for line in proc.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(rf"{NAME_PREFIX}(\d+)-.*", name)
        if m and not _pid_alive(int(m.group(1))):
            _run(["ip", "netns", "del", name], check=False)
            shutil.rmtree(f"/etc/netns/{name}", ignore_errors=True)


@dataclass(frozen=True)
class Link:
    """A veth pair: ``a_if`` in host ``a`` holds ``a_addr``, ``b_if`` in ``b`` holds ``b_addr``."""

    a: Host
    b: Host
    a_if: str
    b_if: str
    a_addr: str
    b_addr: str
    network: ipaddress.IPv4Network


class Host:
    """One network namespace, seen as a machine: interfaces, routes, sysctls, processes."""

    def __init__(self, lab: Lab, name: str, label: str) -> None:
        self.lab = lab
        self.name = name
        self.label = label
        self._ifcount = 0

    def __repr__(self) -> str:
        return f"Host({self.label!r}, netns={self.name!r})"

    def new_ifname(self) -> str:
        name = f"eth{self._ifcount}"
        self._ifcount += 1
        return name

    def ip(self, *args: str, check: bool = True) -> str:
        """``ip -n NS ARGS``; returns stdout."""
        return _run(["ip", "-n", self.name, *args], check=check).stdout

    def exec(
        self, *argv: str, check: bool = True, timeout: float = 20, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace and wait for it."""
        return _run(["ip", "netns", "exec", self.name, *argv], check=check, timeout=timeout, input=input)

    def spawn(self, *argv: str, **popen_kwargs: Any) -> subprocess.Popen:
        """Start a long-running command inside the namespace; the lab kills it on exit."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.name, *argv], **popen_kwargs)
        self.lab._procs.append(proc)
        return proc

    def sysctl(self, key: str, value: str | int) -> None:
        """Set a per-namespace sysctl (``net.*``); the namespace starts from kernel defaults."""
        self.exec("sysctl", "-q", "-w", f"{key}={value}")

    def enable_forwarding(self) -> None:
        self.sysctl("net.ipv4.ip_forward", 1)
        self.sysctl("net.ipv6.conf.all.forwarding", 1)

    def route(self, dest: str, via: str | None = None, *, dev: str | None = None, metric: int | None = None) -> None:
        args = ["route", "add", dest]
        if via is not None:
            args += ["via", via]
        if dev is not None:
            args += ["dev", dev]
        if metric is not None:
            args += ["metric", str(metric)]
        self.ip(*args)

    def default_route(self, via: str, *, dev: str | None = None, metric: int | None = None) -> None:
        self.route("default", via, dev=dev, metric=metric)

    def etc_file(self, name: str, content: str) -> str:
        """Give processes started in this namespace their own ``/etc/<name>`` (hosts, resolv.conf).

        ``ip netns exec`` bind-mounts ``/etc/netns/NS/*`` over ``/etc``; rewriting the same file
        later changes what new lookups see, because the bind mount follows the inode.
        """
        path = os.path.join("/etc/netns", self.name, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(content)
        return path

    def python(
        self, code: str, *args: str, timeout: float = 20, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python -c CODE ARGS`` (this interpreter, so the venv) inside the namespace."""
        return self.exec(sys.executable, "-c", code, *args, timeout=timeout, check=check)

    def call(self, func: Callable[..., Any], *args: Any, as_user: int | None = None, timeout: float = 20) -> Any:
        """Run a module-level function in a child python in this namespace; JSON in, JSON out.

        The function's module is loaded from its file, so it should import only what the child
        needs (not pytest). With ``as_user`` the child drops to that uid (and the gid of the same
        number) after importing, which removes root's capabilities: the way to test what an
        unprivileged agent may do. Modules imported lazily later must be readable by that user.
        """
        path = inspect.getfile(func)
        runner = (
            "import importlib.util, json, os, sys\n"
            "path, qualname, args, uid = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])\n"
            "spec = importlib.util.spec_from_file_location('_cxpulse_netns_child', path)\n"
            "mod = importlib.util.module_from_spec(spec)\n"
            "spec.loader.exec_module(mod)\n"
            "fn = mod\n"
            "for part in qualname.split('.'):\n"
            "    fn = getattr(fn, part)\n"
            "if uid is not None:\n"
            "    os.setgroups([]); os.setgid(uid); os.setuid(uid)\n"
            "result = fn(*args)\n"
            f"sys.stdout.write('\\n' + {_RESULT_MARK!r} + json.dumps(result) + '\\n')\n"
        )
        proc = self.python(
            runner, path, func.__qualname__, json.dumps(list(args)), json.dumps(as_user), timeout=timeout, check=False
        )
        for line in reversed(proc.stdout.splitlines()):
            if line.startswith(_RESULT_MARK):
                return json.loads(line[len(_RESULT_MARK) :])
        raise ChildError(
            f"{func.__qualname__} in {self.name} exited {proc.returncode} without a result\n"
            f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
        )


class Lab:
    """Hosts and links that exist for one test; ``close`` (or leaving the ``with``) removes them."""

    def __init__(self) -> None:
        self.id = next(_lab_ids)
        self.hosts: list[Host] = []
        self.links: list[Link] = []
        self._procs: list[subprocess.Popen] = []
        self._subnets = SUBNET_POOL.subnets(new_prefix=24)
        self._closed = False
        _open_labs.add(self)

    def __enter__(self) -> Lab:
        sweep_stale()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def host(self, label: str = "h") -> Host:
        label = re.sub(r"[^A-Za-z0-9_]", "_", label)
        name = f"{NAME_PREFIX}{os.getpid()}-{self.id}-{len(self.hosts)}{label}"
        _run(["ip", "netns", "add", name])
        host = Host(self, name, label)
        self.hosts.append(host)  # registered before anything else can fail, so close() removes it
        host.ip("link", "set", "lo", "up")
        return host

    def link(self, a: Host, b: Host, *, prefix: int = 24) -> Link:
        """Join two hosts with a veth pair on a fresh 10.253.X.0/24 (or its first /``prefix``).

        Addresses are .1 on ``a`` and .2 on ``b``. The pair is created directly inside the two
        namespaces, so its names never appear in (or collide in) the root namespace.
        """
        if not 24 <= prefix <= 30:
            raise ValueError("prefix must be between /24 and /30")
        network = next(self._subnets)
        if prefix != 24:
            network = next(network.subnets(new_prefix=prefix))
        a_if, b_if = a.new_ifname(), b.new_ifname()
        a_addr, b_addr = str(network.network_address + 1), str(network.network_address + 2)
        a.ip("link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b.name)
        a.ip("addr", "add", f"{a_addr}/{prefix}", "dev", a_if)
        b.ip("addr", "add", f"{b_addr}/{prefix}", "dev", b_if)
        a.ip("link", "set", a_if, "up")
        b.ip("link", "set", b_if, "up")
        link = Link(a, b, a_if, b_if, a_addr, b_addr, network)
        self.links.append(link)
        return link

    def close(self) -> None:
        """Kill processes first: a namespace with a process in it outlives ``ip netns del``."""
        if self._closed:
            return
        self._closed = True
        _open_labs.discard(self)
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=3)
        for host in reversed(self.hosts):
            _run(["ip", "netns", "del", host.name], check=False)
            shutil.rmtree(os.path.join("/etc/netns", host.name), ignore_errors=True)


@dataclass(frozen=True)
class RoutedDesk:
    """A desk behind a routing gateway, and a server beyond it: ``desk -lan- gw -wan- app``."""

    desk: Host
    gw: Host
    app: Host
    lan: Link  # desk (a) - gw (b)
    wan: Link  # gw (a) - app (b)

    @property
    def gateway_ip(self) -> str:
        """The desk's default gateway (the router's LAN address)."""
        return self.lan.b_addr

    @property
    def app_ip(self) -> str:
        return self.wan.b_addr


def routed_desk(lab: Lab) -> RoutedDesk:
    """The set-up most end-to-end tests start from: the agent on ``desk``, the collector and the
    services it measures on ``app``, one forwarding hop between (so the gateway is a real hop)."""
    desk, gw, app = lab.host("desk"), lab.host("gw"), lab.host("app")
    lan, wan = lab.link(desk, gw), lab.link(gw, app)
    gw.enable_forwarding()
    desk.default_route(lan.b_addr)
    app.default_route(wan.a_addr)
    return RoutedDesk(desk, gw, app, lan, wan)


@atexit.register
def _close_forgotten_labs() -> None:
    for lab in list(_open_labs):
        lab.close()
