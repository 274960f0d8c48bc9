"""The agent's binary files under Windows' C-runtime file semantics, emulated on Linux.

On Windows, CPython's ``os.open`` is the C runtime's ``_wopen``: a descriptor opened without
``O_BINARY`` is in TEXT mode, so ``os.write`` writes every LF (0x0A) as CR LF, and ``os.read``
turns CR LF back into LF and stops at the first Ctrl-Z (0x1A) as if the file ended there.
``open(path)`` is not affected (CPython's FileIO always adds ``O_BINARY``), but ``os.fdopen`` /
``open(fd)`` keep whatever mode the descriptor has. ``WindowsCrt`` reproduces exactly that over the
real Linux calls, for files under the test's tmp dir only, with a fake ``os.O_BINARY`` (0x8000,
its value in the Windows CRT). Then the spool's and the central config's real write and read
paths run, with realistic batches from the real batcher.
"""

from __future__ import annotations

import builtins
import io
import os
import random
import stat
from pathlib import Path

import pytest

from cxpulse.agent import central
from cxpulse.agent.batcher import Batcher
from cxpulse.agent.probes.base import Measurement
from cxpulse.agent.spool import Spool, check_file
from cxpulse.atomicfile import write_atomic
from cxpulse.v1 import payload as p
from cxpulse.v1 import telemetry_pb2 as pb

O_BINARY = 0x8000  # fcntl.h of the Windows CRT: _O_BINARY
LF, CR, CTRL_Z = 0x0A, 0x0D, 0x1A
T0 = 1_790_000_000_000_000


class WindowsCrt:
    """Text-mode descriptors as the Windows C runtime has them, for paths under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = os.path.realpath(root)
        self.text_fds: set[int] = set()
        self.at_eof: set[int] = set()  # Ctrl-Z seen: the CRT's FEOFLAG, every later read returns 0 bytes
        self.text_opens = 0
        self.binary_opens = 0
        self._open, self._write, self._read, self._close = os.open, os.write, os.read, os.close
        self._lseek, self._builtin_open = os.lseek, builtins.open

    def install(self, mp: pytest.MonkeyPatch) -> None:
        mp.setattr(os, "O_BINARY", O_BINARY, raising=False)
        mp.setattr(os, "open", self.os_open)
        mp.setattr(os, "write", self.os_write)
        mp.setattr(os, "read", self.os_read)
        mp.setattr(os, "close", self.os_close)
        mp.setattr(os, "fdopen", self.os_fdopen)
        mp.setattr(builtins, "open", self.builtin_open)

    def _mine(self, path: object) -> bool:
        if not isinstance(path, (str, bytes, os.PathLike)):
            return False
        full = os.path.realpath(os.fsdecode(path))
        return full == self.root or full.startswith(self.root + os.sep)

    def os_open(self, path, flags, mode=0o777, *, dir_fd=None):
        fd = self._open(path, flags & ~O_BINARY, mode, dir_fd=dir_fd)
        self.text_fds.discard(fd)
        self.at_eof.discard(fd)
        if self._mine(path) and not stat.S_ISDIR(os.fstat(fd).st_mode):
            if flags & O_BINARY:
                self.binary_opens += 1
            else:
                self.text_opens += 1
                self.text_fds.add(fd)
        return fd

    def os_write(self, fd, data):
        if fd not in self.text_fds:
            return self._write(fd, data)
        raw = bytes(data)
        out = raw.replace(b"\n", b"\r\n")
        view = memoryview(out)
        while view:  # the CRT writes its translated buffer whole
            view = view[self._write(fd, view) :]
        return len(raw)  # and reports the caller's bytes as written, not the CRs it added

    def os_read(self, fd, n):
        if fd not in self.text_fds:
            return self._read(fd, n)
        if fd in self.at_eof or n <= 0:
            return b""
        raw = self._read(fd, n)
        z = raw.find(bytes([CTRL_Z]))
        if z >= 0:  # end of file as far as the CRT is concerned; positioned on the Ctrl-Z
            self._lseek(fd, z - len(raw), os.SEEK_CUR)
            raw = raw[:z]
            self.at_eof.add(fd)
        tail_cr = raw.endswith(b"\r") and fd not in self.at_eof
        out = (raw[:-1] if tail_cr else raw).replace(b"\r\n", b"\n")
        if tail_cr:  # a CR at the end of the buffer: the CRT peeks at the next byte
            nxt = self._read(fd, 1)
            if nxt == b"\n":
                out += b"\n"
            else:
                out += b"\r"
                if nxt:
                    self._lseek(fd, -1, os.SEEK_CUR)
        return out

    def os_close(self, fd):
        self.text_fds.discard(fd)
        self.at_eof.discard(fd)
        return self._close(fd)

    def os_fdopen(self, fd, mode="r", buffering=-1, encoding=None, errors=None, newline=None, closefd=True):
        return self.builtin_open(fd, mode, buffering, encoding, errors, newline, closefd)

    def builtin_open(
        self, file, mode="r", buffering=-1, encoding=None, errors=None, newline=None, closefd=True, opener=None
    ):
        if isinstance(file, int) and file in self.text_fds:
            return self._text_mode_file(file, mode, encoding, errors, newline, closefd)
        f = self._builtin_open(file, mode, buffering, encoding, errors, newline, closefd, opener)
        if self._mine(file):  # FileIO opens with O_BINARY on Windows: a binary descriptor
            self.binary_opens += 1
            self.text_fds.discard(f.fileno())
        return f

    def _text_mode_file(self, fd, mode, encoding, errors, newline, closefd):
        raw = _CrtRaw(self, fd, mode, closefd)
        if "+" in mode:
            buffered = io.BufferedRandom(raw)
        elif raw.writable():
            buffered = io.BufferedWriter(raw)
        else:
            buffered = io.BufferedReader(raw)
        if "b" in mode:
            return buffered
        return io.TextIOWrapper(buffered, encoding or "utf-8", errors, newline)


class _CrtRaw(io.RawIOBase):
    """A file object over a text-mode descriptor: every byte goes through the emulated CRT."""

    def __init__(self, crt: WindowsCrt, fd: int, mode: str, closefd: bool) -> None:
        self.crt, self.fd, self.mode, self.closefd = crt, fd, mode, closefd

    def readable(self) -> bool:
        return "r" in self.mode or "+" in self.mode

    def writable(self) -> bool:
        return any(c in self.mode for c in "wax+")

    def fileno(self) -> int:
        return self.fd

    def readinto(self, b) -> int:
        data = self.crt.os_read(self.fd, len(b))
        b[: len(data)] = data
        return len(data)

    def write(self, b) -> int:
        return self.crt.os_write(self.fd, b)

    def close(self) -> None:
        if not self.closed and self.closefd:
            self.crt.os_close(self.fd)
        super().close()


@pytest.fixture
def crt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WindowsCrt:
    c = WindowsCrt(tmp_path)
    c.install(monkeypatch)
    return c


def test_the_emulation_is_windows_text_mode(crt: WindowsCrt, tmp_path: Path) -> None:
    """What the C runtime does, checked on the emulator itself: otherwise the tests below prove nothing."""
    path = str(tmp_path / "t.bin")
    data = b"a\nb\r\nc\x1ad\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    assert os.write(fd, data) == len(data)
    os.close(fd)
    with open(path, "rb") as f:  # FileIO: binary on Windows as well
        assert f.read() == b"a\r\nb\r\r\nc\x1ad\r\n"
    fd = os.open(path, os.O_RDONLY)
    assert os.read(fd, 100) == b"a\nb\r\nc"  # CR LF -> LF; stops at Ctrl-Z
    assert os.read(fd, 100) == b""
    os.close(fd)
    with os.fdopen(os.open(path, os.O_RDONLY), "rb") as f:  # fdopen keeps the descriptor's text mode
        assert f.read() == b"a\nb\r\nc"
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_BINARY)
    os.write(fd, data)
    os.close(fd)
    fd = os.open(path, os.O_RDONLY | os.O_BINARY)
    assert os.read(fd, 100) == data
    os.close(fd)


def realistic_batches(n: int, seed: int = 16) -> list[tuple[bytes, int]]:
    """What a desk closes every 10 s: gateway, anchors and hops at 1 s, app checks, device and
    Wi-Fi readings, a voice run now and then, events and path snapshots, through the real batcher."""
    rnd = random.Random(seed)
    out = []
    ts = T0
    hops = ["192.168.1.1", "100.64.0.1", "203.0.113.9", "198.51.100.20"]
    for b in range(n):
        batcher = Batcher()
        for s in range(10):
            t = ts + s * 1_000_000 + rnd.randrange(2000)
            for name, addr, base in (
                ("gateway", "192.168.1.1", 1_500),
                ("anchor-dns", "1.1.1.1", 11_000),
                ("crm", "13.107.42.14", 23_000),
            ):
                rtt = None if rnd.random() < 0.02 else int(rnd.gauss(base, base * 0.15)) + rnd.randrange(300)
                batcher.add(
                    Measurement(name, addr, p.METHOD_ICMP_DGRAM, t + rnd.randrange(500), max(rtt, 50) if rtt else None)
                )
            if s % 5 == 0:
                batcher.add_row(
                    "wifi",
                    "wlan0",
                    "wifi",
                    "nl80211",
                    t,
                    {
                        "conn": 1,
                        "ssid": "CC-Floor3",
                        "bssid": f"a4:2b:b0:{rnd.randrange(4):02x}:10:7e",
                        "rssi": rnd.randrange(-72, -48),
                        "noise": -95,
                        "snr": rnd.randrange(20, 45),
                        "ch": 36,
                        "mhz": 5180,
                        "band": "5",
                        "phy": "802.11ax",
                        "tx": rnd.choice([433_300, 866_700, 1_200_900]),
                        "rx": rnd.choice([390_000, 780_000]),
                        "q": None,
                    },
                )
        for hop, addr in enumerate(hops, 1):
            batcher.add(Measurement("crm", addr, p.METHOD_ICMP_DGRAM, ts + 5_000_000, rnd.randrange(800, 30_000)), hop)
        batcher.add_row(
            "device",
            "local",
            "device",
            "os",
            ts + 9_000_000,
            {
                "cpu": rnd.randrange(30, 900),
                "mem": rnd.randrange(400, 850),
                "top": "Teams.exe 23%, chrome.exe 11%",
                "nicerr": rnd.randrange(3),
                "if": "Wi-Fi",
                "ifk": "wifi",
                "vpn": None,
                "proxy": None,
            },
        )
        if b % 6 == 0:
            batcher.add_row(
                "crm",
                "13.107.42.14",
                "http",
                "https",
                ts + 2_000_000,
                {
                    "dns": rnd.randrange(800, 40_000),
                    "tcp": rnd.randrange(15_000, 40_000),
                    "tls": rnd.randrange(30_000, 90_000),
                    "ttfb": rnd.randrange(60_000, 400_000),
                    "total": rnd.randrange(200_000, 900_000),
                    "status": 200,
                    "ver": "HTTP/1.1",
                    "cert": 73,
                    "err": None,
                },
            )
        if b % 18 == 3:
            batcher.add_row(
                "reflector",
                "10.20.0.5",
                "voice",
                "udp_reflect",
                ts + 1_000_000,
                {
                    "sent": 250,
                    "recv": 250 - rnd.randrange(4),
                    "dup": 0,
                    "reord": rnd.randrange(2),
                    "rtt": rnd.randrange(20_000, 60_000),
                    "rtt95": rnd.randrange(60_000, 90_000),
                    "jit": rnd.randrange(1_000, 9_000),
                    "loss": rnd.randrange(16),
                    "burst": rnd.randrange(200),
                    "run": rnd.randrange(3),
                    "err": None,
                },
            )
        if b % 7 == 2:
            batcher.add_event(
                p.Event(
                    f"ev-{b}",
                    "latency_spike",
                    "crm",
                    ts + 3_000_000,
                    ts + 4_200_000,
                    2,
                    "rtt 182 ms vs baseline 23 ms (x7.9)",
                )
            )
        if b % 30 == 5:
            batcher.add_path(
                p.PathSnapshot(
                    "crm",
                    "13.107.42.14",
                    ts + 6_000_000,
                    "icmp_dgram",
                    True,
                    [p.PathHop(i, a, rnd.randrange(800, 30_000)) for i, a in enumerate(hops, 1)],
                )
            )
        out.append(batcher.close())
        ts += 10_000_000
    return out


def test_spooled_batches_survive_windows_text_mode(crt: WindowsCrt, tmp_path: Path) -> None:
    batches = realistic_batches(300)
    payloads = [data for data, _ in batches]
    # The point of the test: real payloads hold the bytes text mode mangles.
    with_lf = sum(LF in d for d in payloads)
    with_ctrl_z = sum(CTRL_Z in d for d in payloads)
    assert with_lf >= 0.9 * len(payloads) and with_ctrl_z >= 0.5 * len(payloads), (with_lf, with_ctrl_z)
    assert all(p.decode(d).sample_count == n for d, n in batches)

    spool_dir = tmp_path / "spool"
    s = Spool(str(spool_dir))
    entries = [s.append(data, n) for data, n in batches]
    assert all(e.path is not None for e in entries), "the emulated disk must take the batches"

    def read_all(spool: Spool) -> list[bytes | None]:
        return [spool.read(e) for e in spool.pending()]

    back = read_all(s)
    lost = sum(b is None for b in back)
    assert lost == 0 and s.dropped_batches == 0, f"{lost} of {len(payloads)} batches set aside as corrupt"
    assert back == payloads and not list((spool_dir / "rejected").iterdir())
    assert crt.binary_opens >= len(batches) and crt.text_opens == 0, (crt.binary_opens, crt.text_opens)
    for e in entries:
        check_file(e.path)

    # Renumbering (the collector holds seqs this run used) reads and rewrites every file.
    assert s.reconcile(1000) == len(payloads)
    assert read_all(s) == payloads and s.dropped_batches == 0

    # A restart reads every header back (the start-up scan), then every payload.
    s2 = Spool(str(spool_dir))
    assert [e.seq for e in s2.pending()] == list(range(1001, 1001 + len(payloads)))
    assert read_all(s2) == payloads
    assert s2.dropped_batches == 0 and not s2.open_gaps
    assert not list((spool_dir / "rejected").iterdir())


def test_central_config_survives_windows_text_mode(crt: WindowsCrt, tmp_path: Path) -> None:
    c = pb.AgentConfig(
        probe_interval_ms=1000, reflector="10.20.0.5:4433", reflector_key=bytes(range(256))
    )  # every byte value: LF and Ctrl-Z among them
    c.detector["spike_rel"] = 0.5
    central.save(str(tmp_path), c)
    assert crt.text_opens == 0
    kept = central.load_saved(str(tmp_path))
    assert kept is not None and kept.reflector_key == c.reflector_key


def test_atomic_write_read_back_through_a_text_mode_reader(crt: WindowsCrt, tmp_path: Path) -> None:
    """A binary write is byte-exact even for a reader that opens with O_BINARY through os.open."""
    data = bytes(range(256)) * 4
    path = str(tmp_path / "blob")
    write_atomic(path, data)
    fd = os.open(path, os.O_RDONLY | os.O_BINARY)
    try:
        assert os.read(fd, 4096) == data
    finally:
        os.close(fd)
