"""The role matrix, proven end to end: each role x each write endpoint, exactly the allowed
ones succeed; scopes bound every write; every write names its account in the event log.

The expected table is written out here by hand, independently of ``dpps.core.authz.MATRIX``,
so a change of the matrix that nobody meant shows up as a failing test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from dpps.catalog.models import EventRow
from dpps.core.authz import Role
from dpps.oms.accounts import AccountService
from tests.bdms.helpers import make_fits
from tests.oms.conftest import DL0, DL1_FILE, Seeded, account_for
from tests.oms.staging_cases import CASES as STAGING_CASES
from tests.oms.staging_cases import NOT_WRITES as STAGING_READS
from tests.oms.write_cases import CASES as WRITE_CASES

ALL = {r.value for r in Role}
ADMIN = {"admin"}
AM = {"admin", "archive-manager"}
WRITERS = {"admin", "archive-manager", "data-processing-manager"}
META = WRITERS | {"operator"}

Call = Callable[[TestClient, Seeded, str, dict[str, str]], httpx.Response]


def _register(c: TestClient, s: Seeded, role: str, h: dict[str, str]) -> httpx.Response:
    body = {
        "files": [
            {
                "name": f"/ctao/reg/{role}.fits",
                "bytes": 10,
                "adler32": "0000000a",
                "rse": "CTAO-N",
                "meta": {"data_level": "DL1"},
            }
        ]
    }
    return c.post("/api/v1/dids/register", json=body, headers=h)


def _ingest(c: TestClient, s: Seeded, role: str, h: dict[str, str]) -> httpx.Response:
    path = make_fits(s.archive.config.workspace.parent / "up", f"{role}.fits", obs_id=7)
    params = {"rse": "CTAO-N", "lfn": f"/ctao/up/{role}.fits", "filename": path.name}
    return c.post("/api/v1/ingest", params=params, content=path.read_bytes(), headers=h)


def _rule(did: str) -> Call:
    def call(c: TestClient, s: Seeded, role: str, h: dict[str, str]) -> httpx.Response:
        body = {"did": did, "copies": 1, "rses": "PIC", "comment": role}
        return c.post("/api/v1/rules", json=body, headers=h)

    return call


def _attach(c: TestClient, s: Seeded, role: str, h: dict[str, str]) -> httpx.Response:
    s.archive.datasets.add_dataset(f"/ctao/att/{role}")
    body = {"parent": f"/ctao/att/{role}", "dids": [DL1_FILE]}
    return c.post("/api/v1/datasets/attach", json=body, headers=h)


def _target_token(s: Seeded) -> int:
    return AccountService(s.archive.sessions).create_token("target").id


#: endpoint -> (request, roles that may do it)
CASES: dict[str, tuple[Call, set[str]]] = {
    "read": (lambda c, s, r, h: c.get("/api/v1/dids", headers=h), ALL),
    "register": (_register, WRITERS),
    "ingest": (_ingest, WRITERS),
    "set-meta": (
        lambda c, s, r, h: c.patch(
            f"/api/v1/dids/{s.dl0_files[0]}", json={"meta": {"quality": r}}, headers=h
        ),
        META,
    ),
    "refresh-meta": (
        lambda c, s, r, h: c.post(
            "/api/v1/dids/refresh-meta", json={"filter": "obs_id=42", "dry_run": True}, headers=h
        ),
        META,
    ),
    "dataset-add": (
        lambda c, s, r, h: c.post("/api/v1/datasets", json={"did": f"/ctao/ds/{r}"}, headers=h),
        WRITERS,
    ),
    "dataset-attach": (_attach, WRITERS),
    "rule-on-dl0-dataset": (_rule(DL0), AM),
    "rule-on-dl0-file": (_rule("ctao:/ctao/dl0/obs_42/tel_002.fits"), AM),
    "rule-on-dl1": (_rule(DL1_FILE), WRITERS),
    "policy-on-dl0": (
        lambda c, s, r, h: c.post(
            "/api/v1/rules/policy", json={"did": DL0, "policy": "acada"}, headers=h
        ),
        AM,
    ),
    "account-add": (
        lambda c, s, r, h: c.post(
            "/api/v1/accounts", json={"name": f"new-{r}", "roles": ["reader"]}, headers=h
        ),
        ADMIN,
    ),
    "role-grant": (
        lambda c, s, r, h: c.post(
            "/api/v1/accounts/target/roles", json={"role": "operator"}, headers=h
        ),
        ADMIN,
    ),
    "scope-grant": (
        lambda c, s, r, h: c.post(
            "/api/v1/accounts/target/scopes", json={"scope": "sim"}, headers=h
        ),
        ADMIN,
    ),
    "account-list": (lambda c, s, r, h: c.get("/api/v1/accounts", headers=h), ADMIN),
    "token-for-other": (
        lambda c, s, r, h: c.post("/api/v1/accounts/target/tokens", json={}, headers=h),
        ADMIN,
    ),
    "token-for-self": (
        lambda c, s, r, h: c.post(
            f"/api/v1/accounts/{account_for(r)}/tokens", json={"expires_days": 1}, headers=h
        ),
        ALL,
    ),
    "revoke-other-token": (
        lambda c, s, r, h: c.delete(f"/api/v1/tokens/{_target_token(s)}", headers=h),
        ADMIN,
    ),
    "disable-account": (
        lambda c, s, r, h: c.post("/api/v1/accounts/target/disable", headers=h),
        ADMIN,
    ),
    "agent-claim": (
        lambda c, s, r, h: c.post(
            "/api/v1/agents/transfers/claim",
            json={"instance": "host:1:x", "limit": 1, "rses": ["PIC"]},
            headers=h,
        ),
        {"admin", "site-agent"},
    ),
    **WRITE_CASES,
    **STAGING_CASES,
}
WRITES = {
    name
    for name in CASES
    if name not in ("read", "account-list", "refresh-meta", "agent-claim")
    and name not in STAGING_READS
}


def _events_by(s: Seeded, account: str) -> int:
    with s.archive.sessions() as session:
        stmt = select(func.count()).select_from(EventRow).where(EventRow.account == account)
        return int(session.scalar(stmt) or 0)


@pytest.mark.verifies_usecase("UC-160-1.2")
@pytest.mark.parametrize("endpoint", sorted(CASES))
def test_each_role_can_do_exactly_what_the_matrix_allows(
    endpoint: str, seeded: Seeded, client: TestClient
) -> None:
    AccountService(seeded.archive.sessions).add_account("target", ["reader"], ["ctao"])
    call, allowed = CASES[endpoint]
    outcome: dict[str, int] = {}
    for role in Role:
        before = _events_by(seeded, account_for(role))
        response = call(client, seeded, role.value, seeded.headers(role.value))
        outcome[role.value] = response.status_code
        if role.value in allowed:
            assert response.status_code < 300, (role, response.text)
            if endpoint in WRITES:
                assert _events_by(seeded, account_for(role)) > before, (
                    f"{endpoint} by {role} left no event naming the account"
                )
        else:
            assert response.headers["content-type"] == "application/problem+json"
            # Another account's token is "not found" to non-admins: existence is not revealed.
            expected = 404 if endpoint == "revoke-other-token" else 403
            assert response.status_code == expected, (role, response.text)
            assert _events_by(seeded, account_for(role)) == before
    assert {r for r, code in outcome.items() if code < 300} == allowed


@pytest.mark.verifies_usecase("UC-160-1.2")
def test_nobody_writes_outside_their_scopes(seeded: Seeded, client: TestClient) -> None:
    service = AccountService(seeded.archive.sessions)
    service.add_account("simmer", ["admin"], ["sim"])
    headers = {"Authorization": f"Bearer {service.create_token('simmer').token}"}
    body: dict[str, Any] = {
        "files": [{"name": "/ctao/x.fits", "bytes": 5, "adler32": "00000005", "rse": "CTAO-N"}]
    }
    refused = client.post("/api/v1/dids/register", json=body, headers=headers)
    assert refused.status_code == 403
    assert "scope" in refused.json()["detail"]
    body["files"][0]["scope"] = "sim"
    ok = client.post("/api/v1/dids/register", json=body, headers=headers)
    assert ok.status_code == 200, ok.text
    assert ok.json()["outcomes"][0]["did"] == "sim:/ctao/x.fits"
    meta = client.patch(
        f"/api/v1/dids/{seeded.dl0_files[0]}", json={"meta": {"q": 1}}, headers=headers
    )
    assert meta.status_code == 403
    refresh = client.post(
        "/api/v1/dids/refresh-meta", json={"filter": "", "dry_run": True}, headers=headers
    )
    assert refresh.status_code == 403, refresh.text
    scoped = client.post(
        "/api/v1/dids/refresh-meta",
        json={"filter": "scope=sim", "dry_run": True},
        headers=headers,
    )
    assert scoped.status_code == 200, scoped.text
    rule = client.post(
        "/api/v1/rules", json={"did": DL1_FILE, "copies": 1, "rses": "PIC"}, headers=headers
    )
    assert rule.status_code == 403
    # Work registers its outputs in the archive's default scope: outside "sim", so refused.
    work = {
        "/api/v1/jobs": {"job": {"name": "noop", "command": ["true"]}},
        "/api/v1/campaigns": {"query": "obs_id = 42", "software_version": "2"},
    }
    for path, payload in work.items():
        refused = client.post(path, json=payload, headers=headers)
        assert refused.status_code == 403, (path, refused.text)
        assert "scope" in refused.json()["detail"]


@pytest.mark.verifies_usecase("UC-160-1.2")
def test_every_endpoint_but_health_and_metrics_needs_a_token(client: TestClient) -> None:
    assert client.get("/health").status_code == 200
    assert client.get("/metrics").status_code == 200
    schema = client.get("/openapi.json").json()
    checked = 0
    for path, operations in schema["paths"].items():
        if path == "/health":
            continue
        url = path.replace("{did}", "ctao:/ctao/x.fits").replace("{name}", "x")
        for key in (
            "{rule_id}",
            "{transfer_id}",
            "{token_id}",
            "{role}",
            "{scope}",
            "{job_id}",
            "{workflow_id}",
        ):
            url = url.replace(key, "1")
        for method in operations:
            response = client.request(method.upper(), url)
            assert response.status_code == 401, (method, url, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            checked += 1
    assert checked >= 25
