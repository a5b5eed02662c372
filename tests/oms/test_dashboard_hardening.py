"""Dashboard hardening (issue 15, defect 11), with real requests to the app.

The adversarial run found no rate limit on sign-in (200 wrong tokens in 0.4 s), no CSRF or
Origin check on the sign-in and sign-out forms, no security headers, and a cookie carrying the
raw API token that signing out did not revoke.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from dpps.oms.api.app import create_app
from dpps.oms.dashboard.common import COOKIE
from dpps.oms.dashboard.signin import LIMIT
from tests.oms.conftest import Seeded

pytestmark = pytest.mark.verifies_usecase("UC-160-1.1")


@pytest.fixture
def client(seeded: Seeded) -> Iterator[TestClient]:
    with TestClient(create_app(seeded.archive)) as test_client:
        yield test_client


def sign_in(client: TestClient, token: str, **headers: str) -> int:
    answer = client.post(
        "/ui/login", data={"token": token}, headers=headers, follow_redirects=False
    )
    return answer.status_code


def test_pages_carry_security_headers(client: TestClient, seeded: Seeded) -> None:
    page = client.get("/ui/login")
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    assert sign_in(client, seeded.tokens["reader"]) == 303
    overview = client.get("/ui/")
    assert overview.status_code == 200
    assert overview.headers["cache-control"] == "no-store"
    api = client.get("/api/v1/rses", headers=seeded.headers("reader"))
    assert api.headers["x-content-type-options"] == "nosniff"


def test_wrong_tokens_are_throttled(client: TestClient, seeded: Seeded) -> None:
    codes = [sign_in(client, f"dpps_wrong{i}") for i in range(LIMIT + 5)]
    assert codes[:LIMIT] == [401] * LIMIT
    assert set(codes[LIMIT:]) == {429}
    refused = client.post("/ui/login", data={"token": seeded.tokens["reader"]})
    assert refused.status_code == 429  # even the right token waits: no oracle while throttled
    assert int(refused.headers["retry-after"]) > 0


def test_forms_refuse_posts_from_other_sites(client: TestClient, seeded: Seeded) -> None:
    token = seeded.tokens["reader"]
    assert sign_in(client, token, origin="https://evil.example") == 403
    assert sign_in(client, token, referer="https://evil.example/page") == 403
    assert sign_in(client, token, origin="null") == 403
    assert COOKIE not in client.cookies
    assert sign_in(client, token, origin="http://testserver") == 303
    out = client.post("/ui/logout", headers={"origin": "https://evil.example"})
    assert out.status_code == 403
    assert client.get("/ui/", follow_redirects=False).status_code == 200  # still signed in


def test_the_cookie_is_a_session_of_its_own_and_sign_out_revokes_it(
    client: TestClient, seeded: Seeded
) -> None:
    token = seeded.tokens["reader"]
    assert sign_in(client, token) == 303
    session = client.cookies[COOKIE]
    assert session != token
    assert token not in session
    # the session is no API credential ...
    assert (
        client.get("/api/v1/rses", headers={"Authorization": f"Bearer {session}"}).status_code
        == 401
    )
    # ... and a raw API token is no session
    with TestClient(create_app(seeded.archive)) as other:
        other.cookies.set(COOKIE, token, path="/ui")
        assert other.get("/ui/", follow_redirects=False).status_code == 303
    assert client.post("/ui/logout", follow_redirects=False).status_code == 303
    with TestClient(create_app(seeded.archive)) as replay:  # a copy of the old cookie
        replay.cookies.set(COOKIE, session, path="/ui")
        answer = replay.get("/ui/", follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/ui/login")
    assert client.get("/api/v1/rses", headers=seeded.headers("reader")).status_code == 200
