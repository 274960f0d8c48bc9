"""Schemathesis against the served OpenAPI document, on a real collector HTTP server on 127.0.0.1.

Three bounded runs over every documented operation: with a helpdesk key, with an admin key (no
500, no crash; answers match the documented status codes, content types and schemas), and with
no key (every protected route 401, whatever the input). Bounded by examples per operation and a
wall-clock budget per run, so the whole file stays well under 90 s on a loaded two-core machine.
Loopback only; the store is a fresh one in the test's tmp dir (the admin run creates keys and
tokens there).
"""

from __future__ import annotations

import os
import time

import pytest

from cxpulse.collector.lookup.openapi import openapi_document
from cxpulse.collector.store import open_store

from .conftest import ServerThread, auth
from .scenario import DAY_END, S, fill_day, fill_fleet

pytestmark = pytest.mark.slow  # schemathesis over every route: a minute or more

MAX_EXAMPLES = int(os.environ.get("CXPULSE_FUZZ_EXAMPLES", "40"))
# Every documented operation but the document itself (schemathesis leaves its own source out).
N_OPERATIONS = sum(len(ops) for ops in openapi_document()["paths"].values()) - 1
BUDGET_S = 20.0  # per run, shared equally by the operations; examples past an operation's share are not sent


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    db = tmp_path_factory.mktemp("fuzzapi") / "collector.sqlite"
    store = open_store(str(db))
    try:
        fill_fleet(store, DAY_END)
        fill_day(store, start_us=DAY_END - 3600 * S, seconds=3600)  # maria's last hour: the documented example id
    finally:
        store.close()
    s = ServerThread(str(db), now_us=lambda: DAY_END).start()
    yield s
    s.stop()


def _fuzz(base: str, headers: dict, check) -> tuple[int, dict]:
    """Every operation, up to MAX_EXAMPLES generated requests each; ``check(case, response)`` asserts."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings

    schema = schemathesis.openapi.from_url(base + "/api/v1/openapi.json")
    ops = [result.ok() for result in schema.get_all_operations()]
    sent, statuses = 0, {}
    for op in ops:  # an equal share of the budget each, so a slow operation cannot starve the rest
        deadline = time.monotonic() + BUDGET_S / len(ops)

        @given(case=op.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case):
            nonlocal sent
            # run() is called below, in this iteration: the loop's deadline is the one meant.
            if time.monotonic() > deadline and f"{case.method} {case.operation.path}" in statuses:  # noqa: B023
                return
            response = case.call(base_url=base, headers=headers, timeout=30)
            sent += 1
            statuses.setdefault(f"{case.method} {case.operation.path}", set()).add(response.status_code)
            check(case, response)

        run()
    return sent, statuses


def test_fuzz_with_keys_finds_no_server_error_and_answers_as_documented(fuzz_server):
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    def check(case, response):
        assert response.status_code < 500 or (response.status_code == 503 and "audit" in response.text), (
            case.as_curl_command(),
            response.status_code,
            response.text[:300],
        )
        case.validate_response(
            response,
            checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
        )

    t0 = time.monotonic()
    summary = []
    for role, key in (("helpdesk", fuzz_server.helpdesk_key), ("admin", fuzz_server.admin_key)):
        sent, statuses = _fuzz(fuzz_server.url, auth(key), check)
        summary.append((role, sent))
        print(f"\n{role}: " + "; ".join(f"{op} {sorted(c)}" for op, c in statuses.items()))
        assert sent >= 50 and len(statuses) == N_OPERATIONS, statuses
        # The runs reached past the key check: 2xx answers on most operations.
        mine = [op for op in statuses if role == "admin" or ("/admin/" not in op and "/alerts/" not in op)]
        ok = [op for op in mine if any(200 <= c < 300 for c in statuses[op])]
        assert len(ok) >= len(mine) // 2, statuses
        if role == "helpdesk":
            assert {403} == statuses["GET /api/v1/admin/audit"], "a helpdesk key never reads the audit log"
    print(
        f"\nschemathesis with keys: {summary} requests in {time.monotonic() - t0:.1f} s "
        f"(max {MAX_EXAMPLES} examples per operation, load {os.getloadavg()[0]:.1f})"
    )


def test_fuzz_without_a_key_gets_401_on_every_protected_route(fuzz_server):
    open_paths = {"/api/v1/health", "/api/v1/openapi.json"}

    def check(case, response):
        if case.operation.path in open_paths:
            assert response.status_code == 200, case.as_curl_command()
            return
        assert response.status_code == 401, (case.as_curl_command(), response.status_code, response.text[:300])
        assert set(response.json()) == {"error"}

    t0 = time.monotonic()
    sent, statuses = _fuzz(fuzz_server.url, {}, check)
    assert sent >= 50 and len(statuses) == N_OPERATIONS, statuses
    print(
        f"\nschemathesis without a key: {sent} requests in {time.monotonic() - t0:.1f} s, "
        f"all 401 outside {sorted(open_paths)}"
    )


STATEFUL_EXAMPLES = int(os.environ.get("CXPULSE_FUZZ_STATEFUL_EXAMPLES", "25"))
STATEFUL_STEPS = 6
STATEFUL_BUDGET_S = 25.0


def test_stateful_fuzz_follows_the_links_and_finds_no_server_error(fuzz_server):
    """Schemathesis follows the document's links (search -> that agent's view, timeline, ticket;
    fleet -> the worst agent; create key/token -> revoke it) with an admin key: no 5xx but the
    documented audit 503, at most STATEFUL_EXAMPLES scenarios of STATEFUL_STEPS calls, and calls
    stop being sent once the wall-clock budget is spent."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, settings
    from schemathesis.generation.stateful import run_state_machine_as_test

    schema = schemathesis.openapi.from_url(fuzz_server.url + "/api/v1/openapi.json")
    base, headers = fuzz_server.url, auth(fuzz_server.admin_key)
    deadline = time.monotonic() + STATEFUL_BUDGET_S
    seen: dict[str, set[int]] = {}
    linked: list[str] = []

    class Workflow(schema.as_state_machine()):
        def get_call_kwargs(self, case):
            return {"base_url": base, "headers": headers, "timeout": 30}

        def call(self, case, **kwargs):
            if time.monotonic() > deadline:  # over budget: the scenario ends without more traffic
                from hypothesis import reject

                reject()
            return super().call(case, **kwargs)

        def validate_response(self, response, case, additional_checks=(), **kwargs):
            op = f"{case.method} {case.operation.path}"
            seen.setdefault(op, set()).add(response.status_code)
            if "{" in case.operation.path and response.status_code in (200, 201):
                linked.append(op)
            assert response.status_code < 500 or (response.status_code == 503 and "audit" in response.text), (
                case.as_curl_command(),
                response.status_code,
                response.text[:300],
            )

    t0 = time.monotonic()
    run_state_machine_as_test(
        Workflow,
        settings=settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=STATEFUL_STEPS,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        ),
    )
    print(
        f"\nstateful schemathesis: {sum(1 for _ in linked)} linked 2xx calls, operations {sorted(seen)} "
        f"in {time.monotonic() - t0:.1f} s"
    )
    assert seen, "the state machine sent nothing"
    assert linked, f"no link was followed to a 2xx answer: {seen}"
