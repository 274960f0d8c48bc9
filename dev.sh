#!/usr/bin/env bash
# One entry point for a fresh clone: creates .venv, installs cxpulse into it, runs what you ask.
#   ./dev.sh demo [--duration 30] [--local-only]   collector + agent on this machine, then the lookup
#   ./dev.sh test [--fast] [pytest args]            the test suite: every tier, or the fast one
#   ./dev.sh lint [FILES...]                        ruff (lint + format check) and mypy: the tree or FILES
#   ./dev.sh cxpulse ARGS...                        any cxpulse command from the venv
set -euo pipefail
cd "$(dirname "$0")"

PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "dev.sh: cxpulse needs Python 3.11 or newer; found: $("$PY" --version 2>&1 || echo none). Set PYTHON=/path/to/python3.11" >&2
    exit 2
fi
if [ ! -x .venv/bin/python ]; then
    echo "dev.sh: creating .venv" >&2
    "$PY" -m venv .venv || { echo "dev.sh: 'python3 -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2; exit 2; }
fi
stamp=.venv/.cxpulse-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "dev.sh: installing cxpulse and its dependencies into .venv" >&2
    .venv/bin/python -m pip install -q --upgrade pip >&2
    .venv/bin/python -m pip install -q -e '.[dev,trace,http,postgres,web,packaging]' >&2
    touch "$stamp"
fi

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
    demo) exec .venv/bin/cxpulse demo "$@" ;;
    test)
        # Every tier (slow, root, lab, browser, packaging: the README's and CI's command); --fast: the
        # default tier of a plain pytest, a few minutes.
        if [ "${1:-}" = "--fast" ]; then shift; exec .venv/bin/python -m pytest "$@"; fi
        exec .venv/bin/python -m pytest --all-tiers "$@" ;;
    cxpulse) exec .venv/bin/cxpulse "$@" ;;
    lint)
        # mypy cannot see through the editable install's folder mapping (pyproject's package-dir):
        # link the three source folders into one cxpulse tree under build/mypy, which [tool.mypy] checks.
        tree=build/mypy/cxpulse
        mkdir -p "$tree"
        for f in proto/cxpulse/*; do ln -sfn "../../../$f" "$tree/"; done
        ln -sfn ../../../agent "$tree/agent"
        ln -sfn ../../../collector "$tree/collector"
        find build/mypy -xtype l -delete
        rc=0
        if [ $# -eq 0 ]; then
            .venv/bin/ruff check . || rc=1
            .venv/bin/ruff format --check . || rc=1
            .venv/bin/mypy || rc=1
        else
            typed=()
            for f in "$@"; do
                case "$f" in
                    agent/*|collector/*) typed+=("$tree/$f") ;;
                    proto/cxpulse/*) typed+=("$tree/${f#proto/cxpulse/}") ;;
                esac
            done
            .venv/bin/ruff check "$@" || rc=1
            .venv/bin/ruff format --check "$@" || rc=1
            if [ ${#typed[@]} -gt 0 ]; then .venv/bin/mypy "${typed[@]}" || rc=1; fi
        fi
        exit $rc ;;
    *) echo "usage: ./dev.sh demo|test|lint|cxpulse [args...]" >&2; exit 2 ;;
esac
