"""A command that needs a missing extra says which, in one line, exit 2, never a traceback (issue 20).

The extra is made missing in a fresh interpreter (``sys.modules[name] = None`` makes its import
fail as an uninstalled package's does), so the dev venv, which has every extra, can test it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cxpulse.extras import EXTRAS, MissingExtra, require

PG_URL = "postgresql://postgres@127.0.0.1:9/none"  # never reached: the missing module stops it first


def run_without(module: str, code: str, *argv: str) -> subprocess.CompletedProcess:
    prelude = f"import sys; sys.modules[{module!r}] = None\n"
    return subprocess.run([sys.executable, "-c", prelude + code, *argv], capture_output=True, text=True, timeout=60)


CLI = "from cxpulse.cli import main; sys.exit(main(sys.argv[1:]))"
ONE_LINE = "cxpulse: PostgreSQL needs the 'postgres' extra: pip install 'cxpulse[postgres]'\n"


def test_require_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "scapy", None)
    with pytest.raises(MissingExtra) as exc:
        require("scapy.layers.inet")
    assert str(exc.value) == "Linux path tracing needs the 'trace' extra: pip install 'cxpulse[trace]'"
    assert exc.value.extra == "trace" and isinstance(exc.value, ImportError) and isinstance(exc.value, ValueError)
    with pytest.raises(KeyError):
        require("json")  # not optional: asking is a bug
    assert set(EXTRAS) == {"psycopg", "scapy", "PyInstaller"}


def test_a_broken_dependency_inside_an_installed_extra_is_not_called_missing(tmp_path, monkeypatch):
    """Installing the extra would not fix an ImportError raised from inside it: that propagates."""
    pkg = tmp_path / "psycopg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import cxpulse_no_such_module_x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "psycopg", raising=False)
    with pytest.raises(ModuleNotFoundError) as exc:
        require("psycopg")
    assert not isinstance(exc.value, MissingExtra) and exc.value.name == "cxpulse_no_such_module_x"


@pytest.mark.parametrize(
    "argv",
    [
        ["collector", "serve", "--insecure", "--listen", "127.0.0.1:0", "--db", PG_URL],
        ["collector", "tokens", "list", "--db", PG_URL],
        ["collector", "config", "show", "--db", PG_URL],
    ],
)
def test_postgres_without_psycopg_is_one_line_exit_2(argv):
    r = run_without("psycopg", CLI, *argv)
    assert (r.returncode, r.stderr) == (2, ONE_LINE), r.stderr


def test_lookup_without_psycopg_names_the_extra():
    r = run_without("psycopg", CLI, "lookup", "--db", PG_URL, "someone")
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "needs the 'postgres' extra: pip install 'cxpulse[postgres]'" in r.stderr and "Traceback" not in r.stderr


def test_trace_child_without_scapy_answers_with_the_extra_in_its_error():
    code = (
        "from cxpulse.agent.path import trace_child\n"
        "trace_child._raw_sockets_error = lambda: None  # as if privileged: the scapy import comes next\n"
        "sys.exit(trace_child.main(['--target', '127.0.0.1']))\n"
    )
    r = run_without("scapy", code)
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert doc["error"] == "Linux path tracing needs the 'trace' extra: pip install 'cxpulse[trace]'"
    assert r.returncode != 0 and "Traceback" not in r.stderr


def test_freeze_without_pyinstaller_is_one_line_exit_2():
    code = "sys.argv = ['freeze.py']; sys.path.insert(0, 'packaging'); import freeze; sys.exit(freeze.main())\n"
    r = run_without("PyInstaller", code)
    assert r.returncode == 2, r.stderr
    assert r.stderr == "freeze: the installer build needs the 'packaging' extra: pip install 'cxpulse[packaging]'\n"
