"""Property-based tests over the served OpenAPI document: no request, however odd, gets a 5xx.

Schemathesis generates requests for every operation from the schema the app serves (valid
ones and deliberately invalid ones), sent in-process through the ASGI app with an admin token.
Its pytest plugin cannot take a per-backend fixture here, so the operations are driven with
Hypothesis directly. The run is bounded: a few examples per operation, no deadline.

The second test sends its requests over HTTP to the real server (uvicorn in a thread, as
``dpps serve`` runs it) on each catalog, where the ASGI shortcut could hide a server error of
the HTTP layer; it prints how many distinct requests it sent.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from dpps.oms.accounts import AccountService
from dpps.oms.api import create_app
from dpps.oms.server import BackgroundServer
from tests.oms.conftest import Seeded

EXAMPLES = int(os.environ.get("DPPS_FUZZ_EXAMPLES", "8"))
LIVE_EXAMPLES = int(os.environ.get("DPPS_FUZZ_LIVE_EXAMPLES", "3"))


@pytest.mark.verifies_usecase("UC-160-1.2")
def test_no_request_gets_a_server_error(seeded: Seeded) -> None:
    service = AccountService(seeded.archive.sessions)
    service.add_account("fuzzer", ["admin"], ["*"])
    headers = {"Authorization": f"Bearer {service.create_token('fuzzer', days=1).token}"}
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(seeded.archive))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    seen: list[int] = []

    for operation in operations:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            # a slow answer on a loaded machine is not a server error: wait for it
            response = case.call(headers=headers, timeout=120)
            seen.append(response.status_code)
            case.validate_response(response, checks=[not_a_server_error])

        check()
    assert seen
    assert max(seen) < 500
    assert len(seen) >= len(operations)


@pytest.mark.verifies_usecase("UC-160-1.2")
def test_no_request_to_the_real_server_gets_a_server_error(
    seeded: Seeded, live: BackgroundServer
) -> None:
    service = AccountService(seeded.archive.sessions)
    service.add_account("fuzzer", ["admin"], ["*"])
    headers = {"Authorization": f"Bearer {service.create_token('fuzzer', days=1).token}"}
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    seen: list[int] = []
    distinct: set[str] = set()

    for operation in operations:

        @settings(
            max_examples=LIVE_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            distinct.add(repr((case.method, case.formatted_path, case.query, case.body)))
            response = case.call(base_url=live.url, headers=headers, timeout=120)
            seen.append(response.status_code)
            case.validate_response(response, checks=[not_a_server_error])

        check()
    print(f"schemathesis, real server: {len(distinct)} distinct requests, {len(seen)} sent")
    assert max(seen) < 500
    assert len(seen) >= len(operations)
