"""No POSIX-only call in the agent outside its per-OS modules.

The agent runs on Windows and macOS desks, which no test here can run on, so the code is read
instead: an AST walk of every module under agent/ that reports each call that exists on POSIX
only (or on Linux only), wherever it is not in a module that says its OS in its name. A
module whose file name is, or ends with, ``linux.py``, ``macos.py``, ``windows.py`` or
``posix.py`` is chosen at import for its OS (psutil style), so anything goes there. A few
modules are Linux-only by design; they are listed in ALLOWED with the reason, and the list is
checked to stay honest (an entry that no longer offends must go).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

AGENT = Path(__file__).resolve().parents[2] / "agent"
PER_OS_SUFFIXES = ("linux", "macos", "windows", "posix")

# Module (relative to agent/) -> why it may use POSIX-only calls. Keep this short.
ALLOWED: dict[str, str] = {
    "path/trace_child.py": "the scapy trace child: Linux only (AF_PACKET, resource limits); Windows and macOS "
    "trace through their own per-OS hop discovery",
    "probes/icmp.py": "the socket pinger (raw/datagram ICMP with add_reader): not used on Windows, where "
    "ICMP goes through iphlpapi; rtt.py falls back when add_reader is missing",
}

# One use in a module that is not per-OS, guarded by an OS check right there: (module, what) -> why.
ALLOWED_USES: dict[tuple[str, str], str] = {
    ("config.py", "os.geteuid"): "default_state_dir asks it only after its win32 branch has returned",
}

POSIX_MODULES = {
    "resource": "resource limits (absent on Windows)",
    "fcntl": "fcntl (absent on Windows)",
    "termios": "termios (absent on Windows)",
    "pwd": "the passwd database (absent on Windows)",
    "grp": "the group database (absent on Windows)",
}
LOOP_CALLS = {
    "add_signal_handler": "loop.add_signal_handler (NotImplementedError on Windows' Proactor loop)",
    "add_reader": "loop.add_reader (NotImplementedError on Windows' Proactor loop)",
    "add_writer": "loop.add_writer (NotImplementedError on Windows' Proactor loop)",
}
OS_CALLS = {
    "getuid": "os.getuid (absent on Windows)",
    "geteuid": "os.geteuid (absent on Windows)",
    "fork": "os.fork (absent on Windows; no fork per probe anywhere)",
    "forkpty": "os.forkpty (absent on Windows)",
}
SIGNALS = {"SIGKILL": "signal.SIGKILL (absent on Windows)", "SIGHUP": "signal.SIGHUP (absent on Windows)"}


@dataclass(frozen=True)
class Offence:
    module: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"agent/{self.module}:{self.line}: {self.what}"


def per_os(module: str) -> bool:
    stem = Path(module).stem
    return any(stem == s or stem.endswith(s) for s in PER_OS_SUFFIXES)


def _mentions_binary(node: ast.AST) -> bool:
    for n in ast.walk(node):
        if isinstance(n, ast.Attribute) and n.attr == "O_BINARY":
            return True
        if isinstance(n, ast.Name) and "O_BINARY" in n.id:
            return True
        if isinstance(n, ast.Constant) and n.value == "O_BINARY":  # getattr(os, "O_BINARY", 0)
            return True
    return False


def offences_in(source: str, module: str) -> list[Offence]:
    """Every POSIX-only use in ``source``, with its line."""
    tree = ast.parse(source, module)
    found: list[Offence] = []

    def add(node: ast.AST, what: str) -> None:
        found.append(Offence(module, getattr(node, "lineno", 0), what))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top in POSIX_MODULES:
                    add(node, f"import {alias.name}: {POSIX_MODULES[top]}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            top = node.module.split(".")[0]
            names = {a.name for a in node.names}
            if top in POSIX_MODULES:
                add(node, f"from {node.module} import ...: {POSIX_MODULES[top]}")
            elif top == "getpass" and "getuser" in names:
                add(node, "getpass.getuser: the process's account (SYSTEM or root for a service), not the desk user")
            elif top == "os":
                for name in sorted(names & OS_CALLS.keys()):
                    add(node, OS_CALLS[name])
            elif top == "signal":
                for name in sorted(names & SIGNALS.keys()):
                    add(node, SIGNALS[name])
            elif top == "socket" and "AF_PACKET" in names:
                add(node, "AF_PACKET: Linux packet sockets only")
        elif isinstance(node, ast.Attribute):
            base = node.value.id if isinstance(node.value, ast.Name) else None
            if node.attr in LOOP_CALLS:
                add(node, LOOP_CALLS[node.attr])
            elif node.attr == "AF_PACKET":
                add(node, "AF_PACKET: Linux packet sockets only")
            elif base == "os" and node.attr in OS_CALLS:
                add(node, OS_CALLS[node.attr])
            elif base == "signal" and node.attr in SIGNALS:
                add(node, SIGNALS[node.attr])
            elif base == "getpass" and node.attr == "getuser":
                add(node, "getpass.getuser: the process's account (SYSTEM or root for a service), not the desk user")
        elif isinstance(node, ast.Name) and node.id == "AF_PACKET":
            add(node, "AF_PACKET: Linux packet sockets only")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "open"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "os"
        ):
            flags = (
                node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "flags"), None)
            )
            if flags is None or not _mentions_binary(flags):
                add(
                    node,
                    "os.open without O_BINARY: a text-mode descriptor on Windows (LF -> CR LF, Ctrl-Z ends reads); "
                    "use cxpulse.atomicfile (proto/cxpulse/atomicfile.py) or getattr(os, 'O_BINARY', 0)",
                )
    return sorted(set(found), key=lambda o: o.line)


def agent_modules() -> list[str]:
    return sorted(str(p.relative_to(AGENT)) for p in AGENT.rglob("*.py"))


def scan() -> dict[str, list[Offence]]:
    """Offences per module; per-OS modules are not read (anything goes there, their own tests import them)."""
    return {
        m: offs
        for m in agent_modules()
        if not per_os(m) and (offs := offences_in((AGENT / m).read_text(encoding="utf-8"), m))
    }


def test_no_posix_only_calls_outside_per_os_modules() -> None:
    found = scan()
    bad = [o for m, offs in found.items() if m not in ALLOWED for o in offs if not _allowed_use(o)]
    for o in bad:
        print(o)
    assert not bad, (
        "POSIX-only calls outside per-OS modules (move them to a <thing>_windows/_posix module, "
        "or fix them):\n" + "\n".join(map(str, bad))
    )


def _allowed_use(o: Offence) -> bool:
    return any(o.module == m and o.what.startswith(what) for m, what in ALLOWED_USES)


def test_allow_list_is_honest() -> None:
    found = scan()
    for (module, what), reason in ALLOWED_USES.items():
        uses = [o for o in found.get(module, []) if o.what.startswith(what)]
        assert uses, f"agent/{module} no longer uses {what}: remove it from ALLOWED_USES ({reason})"
        for o in uses:
            print(f"allowed use: {o} ({reason})")
    for module, reason in ALLOWED.items():
        assert (AGENT / module).is_file(), f"ALLOWED names agent/{module}, which does not exist"
        assert not per_os(module), f"agent/{module} says its OS in its name: it needs no entry"
        assert module in found, f"agent/{module} has no POSIX-only call left: remove it from ALLOWED ({reason})"
        assert reason.strip()
    for module in ALLOWED:
        for o in found[module]:
            print(f"allowed ({module}): {o}")


def test_the_lint_catches_each_rule() -> None:
    """Each rule on a sample, and the ways out (O_BINARY, a per-OS module name)."""
    sample = """
import fcntl, resource
import pwd
from grp import getgrnam
import termios
import getpass, os, signal, socket
loop.add_signal_handler(signal.SIGTERM, stop.set)
loop.add_reader(fd, cb)
loop.add_writer(fd, cb)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
fd = os.open(path, os.O_WRONLY | os.O_CREAT)
user = getpass.getuser()
uid = os.getuid() + os.geteuid()
os.kill(pid, signal.SIGKILL); os.kill(pid, signal.SIGHUP)
pid = os.fork()
ok = os.open(path, os.O_WRONLY | getattr(os, "O_BINARY", 0))
ok2 = os.open(path, flags=os.O_RDONLY | os.O_BINARY)
"""
    offs = offences_in(sample, "sample.py")
    lines = sorted({o.line for o in offs})
    assert lines == [2, 3, 4, 5] + list(range(7, 16)), [str(o) for o in offs]  # line 6: plain imports
    assert len([o for o in offs if o.line == 2]) == 2  # fcntl and resource
    assert len([o for o in offs if o.line == 13]) == 2  # getuid and geteuid
    assert per_os("wifi/windows.py") and per_os("path/trace_macos.py") and per_os("stop_signals_posix.py")
    assert not per_os("probes/icmp.py") and not per_os("windowsish/thing.py")


def test_the_agent_package_is_what_is_scanned() -> None:
    modules = agent_modules()
    assert "runner.py" in modules and "spool.py" in modules and "probes/voice.py" in modules
    assert len(modules) > 30
