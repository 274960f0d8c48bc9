"""The ISP named for people: "AS3209 Vodafone GmbH" or "vodafone.de" instead of 80.81.192.1.
From an IP-to-ASN database if IT supplies one, else bounded, cached reverse DNS; one namer per process.
Design notes: docs/collector-internals.md, "collector/score/isp_name.py".
"""

from __future__ import annotations

import contextvars
import importlib.util
import ipaddress
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = [
    "IspNamer",
    "NamingConfig",
    "NamingError",
    "add_arguments",
    "current",
    "from_arguments",
    "install",
    "wait_budget",
]


class NamingError(ValueError):
    """Bad naming configuration (unreadable database, no name server): said once, at start."""


@dataclass(frozen=True)
class NamingConfig:
    """Tunables (``collector serve`` / ``cxpulse lookup`` flags; defaults here only)."""

    asn_db: str | None = None  # MaxMind DB file with autonomous_system_number / _organization
    reverse_dns: bool = True
    nameservers: tuple[str, ...] = ()  # "ADDR" or "ADDR:PORT" ("[v6]:PORT"); empty: the system's
    dns_timeout_s: float = 2.0  # one PTR lookup, all tries
    wait_s: float = 0.3  # how long a request waits for a name not known yet
    ttl_s: float = 6 * 3600.0  # a name found is kept this long
    negative_ttl_s: float = 600.0  # no name (NXDOMAIN, timeout): asked again after this
    cache_size: int = 20_000
    workers: int = 4
    max_pending: int = 256  # lookups queued at once; beyond, the address is shown and asked later

    def check(self) -> None:
        if self.dns_timeout_s <= 0 or self.wait_s < 0 or self.ttl_s <= 0 or self.negative_ttl_s <= 0:
            raise NamingError("reverse DNS timeout and cache TTLs must be positive, the wait >= 0")
        if self.cache_size < 1 or self.workers < 1 or self.max_pending < 1:
            raise NamingError("reverse DNS cache size, workers and queue must be >= 1")


# The whole view's remaining wait for names (monotonic deadline), when the caller set one.
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("isp_name_deadline", default=None)
# Without one, a thread waits for names at most ``wait_s`` per REFILL_S: one page view waits a
# moment, a fleet of a thousand desks with unknown ISP hops built in one go waits no longer.
REFILL_S = 10.0
_bucket = threading.local()


@contextmanager
def wait_budget(seconds: float) -> Iterator[None]:
    """Names looked up inside wait at most ``seconds`` together (a fleet of a thousand desks with
    unknown ISP hops must not wait ``wait_s`` a thousand times)."""
    token = _deadline.set(time.monotonic() + max(0.0, seconds))
    try:
        yield
    finally:
        _deadline.reset(token)


_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}$")


def _clean_org(text: str) -> str:
    """An organization from a database file, safe to show: printable, one line, bounded."""
    return " ".join("".join(c for c in text if c.isprintable()).split())[:80]


class IspNamer:
    """Names for hop addresses. Thread-safe; ``close`` at shutdown."""

    def __init__(self, cfg: NamingConfig = NamingConfig()):
        cfg.check()
        self.cfg = cfg
        self._db = _open_db(cfg.asn_db) if cfg.asn_db else None
        self._resolver = _resolver(cfg) if cfg.reverse_dns else None
        from publicsuffixlist import PublicSuffixList

        self._psl = PublicSuffixList()  # the list bundled with the package; it never downloads
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[float, str | None]] = OrderedDict()
        self._pending: dict[str, Future] = {}
        self._pool = ThreadPoolExecutor(cfg.workers, thread_name_prefix="isp-name") if self._resolver else None

    # -- the public reading --

    def isp(self, addresses: Sequence[str | None]) -> str | None:
        """The ISP's name from its hops, nearest first (the ISP hop, then the first public hop)."""
        for a in addresses:
            name = self.name(a)
            if name:
                return name
        return None

    def name(self, address: str | None) -> str | None:
        """ "AS3209 Vodafone GmbH", "vodafone.de", or None (show the address)."""
        ip = _global(address)
        if ip is None:
            return None  # private, CGNAT, loopback: no database row, and no PTR worth asking for
        if self._db is not None:
            asn = self._asn(ip)
            if asn:
                return asn
        if self._resolver is None:
            return None
        return self._ptr_name(str(ip))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._db is not None:
            self._db.close()

    # -- the database file --

    def _asn(self, ip) -> str | None:
        assert self._db is not None  # asked only with the file open
        try:
            rec = self._db.get(ip)
        except (ValueError, OSError):  # a corrupt row reads as no row; the file opened fine at start
            return None
        if not isinstance(rec, dict):
            return None
        num = rec.get("autonomous_system_number", rec.get("asn"))
        org = (
            rec.get("autonomous_system_organization")
            or rec.get("as_name")
            or rec.get("organization")
            or rec.get("name")
        )
        num_s = str(num).upper().removeprefix("AS") if num not in (None, "", 0) else ""
        num_s = f"AS{num_s}" if num_s.isdigit() else ""
        org_s = _clean_org(org) if isinstance(org, str) else ""
        return " ".join(x for x in (num_s, org_s) if x) or None

    # -- reverse DNS --

    def _ptr_name(self, address: str) -> str | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(address)
            if hit is not None and hit[0] > now:
                self._cache.move_to_end(address)
                return hit[1]
            fut = self._pending.get(address)
            if fut is None:
                if len(self._pending) >= self.cfg.max_pending:
                    return None  # asked again on a later look
                assert self._pool is not None  # built with the resolver, which is asked for here
                try:
                    fut = self._pool.submit(self._resolve, address)
                except RuntimeError:  # closed (shutting down): the address is shown
                    return None
                self._pending[address] = fut
        wait = self._allowance()
        t0 = time.monotonic()
        try:
            return fut.result(timeout=wait) if wait > 0 or fut.done() else None
        except Exception:
            return None
        finally:
            self._spent(time.monotonic() - t0)

    def _allowance(self) -> float:
        """Seconds this request may still wait for a name (``wait_budget``, else the thread's bucket)."""
        now = time.monotonic()
        deadline = _deadline.get()
        if deadline is not None:
            return min(self.cfg.wait_s, max(0.0, deadline - now))
        last, left = getattr(_bucket, "state", (now, self.cfg.wait_s))
        left = min(self.cfg.wait_s, left + (now - last) * self.cfg.wait_s / REFILL_S)
        _bucket.state = (now, left)
        return left

    def _spent(self, seconds: float) -> None:
        if _deadline.get() is None and hasattr(_bucket, "state"):
            _, left = _bucket.state  # no refill credited for the time spent waiting
            _bucket.state = (time.monotonic(), max(0.0, left - seconds))

    def _resolve(self, address: str) -> str | None:
        import dns.exception

        name = None
        assert self._resolver is not None  # the pool runs this only with a resolver
        try:
            answer = self._resolver.resolve_address(address, lifetime=self.cfg.dns_timeout_s)
            for rr in answer:
                name = self._registrable(rr.target.to_text(omit_final_dot=True))
                if name:
                    break
        except dns.exception.DNSException:
            name = None
        ttl = self.cfg.ttl_s if name else self.cfg.negative_ttl_s
        with self._lock:
            self._pending.pop(address, None)
            self._cache[address] = (time.monotonic() + ttl, name)
            self._cache.move_to_end(address)
            while len(self._cache) > self.cfg.cache_size:
                self._cache.popitem(last=False)
        return name

    def _registrable(self, host: str) -> str | None:
        """ "ae1-0.dus10.vodafone.de" -> "vodafone.de"; None for a name that is not a host name."""
        host = host.lower().rstrip(".")
        if not _DOMAIN.match(host):
            return None  # escapes, spaces, a bare TLD: nothing a person should read
        return self._psl.privatesuffix(host)


def _global(address: str | None):
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    return ip if ip.is_global else None


def _open_db(path: str):
    import maxminddb

    try:
        db = maxminddb.open_database(path)
    except FileNotFoundError:
        raise NamingError(f"IP-to-ASN database {path!r} does not exist (--asn-db)") from None
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
        raise NamingError(f"IP-to-ASN database {path!r} is not a MaxMind DB file: {exc}") from None
    return db


def _resolver(cfg: NamingConfig):
    import dns.nameserver
    import dns.resolver

    if not cfg.nameservers:
        try:
            return dns.resolver.Resolver(configure=True)
        except dns.resolver.NoResolverConfiguration:
            raise NamingError(
                "reverse DNS needs a name server: none is configured on this machine; give "
                "--reverse-dns-server ADDR or turn it off with --no-reverse-dns"
            ) from None
    r = dns.resolver.Resolver(configure=False)
    servers = []
    for spec in cfg.nameservers:
        host, port = _host_port(spec)
        servers.append(dns.nameserver.Do53Nameserver(host, port))
    r.nameservers = servers
    return r


def _host_port(spec: str) -> tuple[str, int]:
    """ "10.0.0.53", "10.0.0.53:5353", "[::1]:5353" -> (address, port)."""
    s = spec.strip()
    host, port = s, 53
    if s.startswith("["):
        host, _, rest = s[1:].partition("]")
        if rest:
            port = _port(rest.removeprefix(":"), spec)
    elif s.count(":") == 1:
        host, p = s.split(":")
        port = _port(p, spec)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise NamingError(f"--reverse-dns-server wants an IP address[:port], got {spec!r}") from None
    return host, port


def _port(text: str, spec: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise NamingError(f"--reverse-dns-server port must be 1..65535, got {spec!r}")
    return int(text)


# --- one namer per process ----------------------------------------------------------------------

_current: IspNamer | None = None


def install(namer: IspNamer | None) -> IspNamer | None:
    """Make ``namer`` the process's (None: hop addresses stay unnamed); returns the previous one."""
    global _current
    prev, _current = _current, namer
    return prev


def current() -> IspNamer | None:
    return _current


def add_arguments(parser) -> None:
    """The naming flags of ``collector serve`` and ``cxpulse lookup`` (one hook line each)."""
    d = NamingConfig()
    g = parser.add_argument_group("naming the ISP (the hops beyond the desk's router)")
    g.add_argument(
        "--asn-db",
        default=None,
        metavar="FILE",
        help="IP-to-ASN MaxMind DB (GeoLite2-ASN, ipinfo or iptoasn layout): names the ISP 'AS3209 Vodafone GmbH'",
    )
    g.add_argument(
        "--no-reverse-dns",
        action="store_true",
        help="do not name ISP hops by reverse DNS (closed networks); they are named by --asn-db or shown as addresses",
    )
    g.add_argument(
        "--reverse-dns-server",
        action="append",
        default=[],
        metavar="ADDR[:PORT]",
        help="name server for reverse DNS (repeatable; default: this machine's)",
    )
    g.add_argument(
        "--reverse-dns-timeout",
        type=float,
        default=d.dns_timeout_s,
        help=f"seconds one reverse lookup may take (default {d.dns_timeout_s:g})",
    )


def from_arguments(args) -> IspNamer | None:
    """The namer the flags describe; NamingError (one clear line) for a bad file or server.

    Without the ``web`` extra's readers installed, the default (reverse DNS, no database) names
    nothing and says so once; an option asked for explicitly is an error instead.
    """
    cfg = NamingConfig(
        asn_db=args.asn_db or None,
        reverse_dns=not args.no_reverse_dns,
        nameservers=tuple(args.reverse_dns_server),
        dns_timeout_s=args.reverse_dns_timeout,
    )
    missing = [
        m
        for m, wanted in (("maxminddb", cfg.asn_db), ("dns", cfg.reverse_dns), ("publicsuffixlist", cfg.reverse_dns))
        if wanted and importlib.util.find_spec(m) is None
    ]
    if missing:
        explicit = cfg.asn_db or cfg.nameservers
        if explicit:
            raise NamingError(
                f"naming the ISP needs {', '.join(missing)}, which cxpulse installs: reinstall it (pip install cxpulse)"
            )
        print(
            "cxpulse: ISP hops are shown as addresses: reverse DNS needs dnspython and publicsuffixlist "
            "(installed with cxpulse: reinstall it; --no-reverse-dns silences this)",
            file=sys.stderr,
        )
        return None
    return IspNamer(cfg)
