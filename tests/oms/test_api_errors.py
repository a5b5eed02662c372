"""Bad requests are refused cleanly (problem+json, 4xx) and change nothing."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from dpps.core.config import ApiConfig
from dpps.oms.api import create_app
from dpps.oms.server import BackgroundServer
from tests.bdms.helpers import snapshot
from tests.oms.conftest import Seeded

PROBLEM = "application/problem+json"


def _is_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, object] = response.json()
    assert body["status"] == status
    assert body["title"]
    return body


def test_malformed_json_unknown_fields_and_wrong_types(seeded: Seeded, client: TestClient) -> None:
    h = {**seeded.headers("admin"), "content-type": "application/json"}
    before = snapshot(seeded.archive)
    body = _is_problem(client.post("/api/v1/rules", content=b'{"did": ', headers=h), 400)
    assert body["detail"] == "malformed JSON in the request body"
    assert body["type"] == "urn:dpps:problem:InvalidInput"
    extra = {"did": "/ctao/dl0/obs_42", "copies": 1, "rses": "PIC", "copys": 2}
    body = _is_problem(client.post("/api/v1/rules", json=extra, headers=h), 400)
    assert "copys" in str(body["detail"])
    assert "Extra inputs" in str(body["detail"])
    wrong = {"did": "/ctao/dl0/obs_42", "copies": "two", "rses": "PIC"}
    _is_problem(client.post("/api/v1/rules", json=wrong, headers=h), 400)
    nan = client.post(
        "/api/v1/accounts/acct-admin/tokens", content=b'{"expires_days": NaN}', headers=h
    )
    _is_problem(nan, 400)
    nul = {"name": "a\u0000b", "roles": ["reader"]}
    _is_problem(client.post("/api/v1/accounts", json=nul, headers=h), 400)
    _is_problem(client.get("/api/v1/dids", params={"filter": "obs_id=\x00"}, headers=h), 400)
    body = _is_problem(client.get("/api/v1/dids", params={"filter": "obs_id=="}, headers=h), 400)
    assert "position" in str(body["detail"])
    _is_problem(client.get("/api/v1/dids", params={"limit": 0}, headers=h), 400)
    _is_problem(client.get("/api/v1/nowhere", headers=h), 404)
    _is_problem(client.put("/api/v1/dids", headers=h), 405)
    assert snapshot(seeded.archive) == before


@pytest.fixture
def small_limit_client(seeded: Seeded) -> Iterator[TestClient]:
    app = create_app(
        seeded.archive, settings=ApiConfig(max_body_bytes=1000, max_upload_bytes=5000)
    )
    with TestClient(app) as test_client:
        yield test_client


def test_oversized_bodies_are_refused(seeded: Seeded, small_limit_client: TestClient) -> None:
    c = small_limit_client
    h = {**seeded.headers("admin"), "content-type": "application/json"}
    before = snapshot(seeded.archive)
    big = b'{"did": "' + b"x" * 2000 + b'", "copies": 1, "rses": "PIC"}'
    body = _is_problem(c.post("/api/v1/rules", content=big, headers=h), 413)
    assert "1000 bytes" in str(body["detail"])

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams
        yield b'{"did": "'
        for _ in range(10):
            yield b"y" * 200
        yield b'", "copies": 1, "rses": "PIC"}'

    _is_problem(c.post("/api/v1/rules", content=chunks(), headers=h), 413)
    params = {"rse": "CTAO-N", "lfn": "/ctao/big.fits", "filename": "big.fits"}
    upload = c.post("/api/v1/ingest", params=params, content=b"z" * 6000, headers=h)
    _is_problem(upload, 413)
    assert snapshot(seeded.archive) == before
    assert not any((seeded.archive.config.workspace / "spool").glob("up-*"))


def _raw_get(url: str, path: str, token: str) -> tuple[int, str]:
    """An HTTP request with the path exactly as written (clients normalise '..' away)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode("utf-8", "replace")


def test_path_traversal_in_dids_is_refused(seeded: Seeded) -> None:
    token = seeded.tokens["admin"]
    before = snapshot(seeded.archive)
    with BackgroundServer(seeded.archive) as server:
        for path in (
            "/api/v1/dids/ctao:/ctao/dl0/../../../etc/passwd",
            "/api/v1/dids/ctao:/ctao/dl0/%2e%2e/%2e%2e/etc/passwd",
            "/api/v1/content/ctao:/ctao/dl0/obs_42/../../../../etc/passwd",
            "/api/v1/replicas/ctao:/ctao/./dl0",
            "/api/v1/content/ctao:..%2f..%2fetc%2fpasswd",
        ):
            status, body = _raw_get(server.url, path, token)
            assert status == 400, (path, status, body)
            assert "invalid" in body.lower()
        h = seeded.headers("admin")
        with httpx.Client(base_url=server.url, headers=h, timeout=30) as c:
            files = [
                {
                    "name": "/ctao/t.fits",
                    "bytes": 1,
                    "adler32": "00000001",
                    "rse": "CTAO-N",
                    "path": "../../../etc/passwd",
                }
            ]
            refused = c.post("/api/v1/dids/register", json={"files": files})
            _is_problem(refused, 403)
            params = {"rse": "CTAO-N", "lfn": "/ctao/u.fits", "filename": "../../evil.fits"}
            _is_problem(c.post("/api/v1/ingest", params=params, content=b"SIMPLE"), 400)
            params = {"rse": "CTAO-N", "lfn": "/ctao/../u.fits", "filename": "u.fits"}
            upload = c.post("/api/v1/ingest", params=params, content=b"SIMPLE")
            assert "'..'" in str(_is_problem(upload, 400)["detail"])
    assert snapshot(seeded.archive) == before


def test_pagination_and_totals_match_the_catalog(seeded: Seeded, client: TestClient) -> None:
    h = seeded.headers("reader")
    everything = client.get("/api/v1/dids", params={"limit": 1000}, headers=h).json()
    assert everything["total"] == seeded.archive.count("") == 4
    names = [f["did"] for f in everything["items"]]
    paged = []
    for offset in range(0, 4, 3):
        page = client.get("/api/v1/dids", params={"limit": 3, "offset": offset}, headers=h).json()
        assert page["total"] == 4
        assert page["limit"] == 3
        assert page["offset"] == offset
        paged += [f["did"] for f in page["items"]]
    assert paged == names
    datasets = client.get("/api/v1/dids", params={"type": "DATASET"}, headers=h).json()
    assert [d["did"] for d in datasets["items"]] == ["ctao:/ctao/dl0/obs_42"]
    assert datasets["total"] == 1
    count = client.get(
        "/api/v1/dids/count", params={"filter": "obs_id=42 and data_level=DL0"}, headers=h
    )
    assert count.json() == {"count": 3}
    events = client.get("/api/v1/events", params={"limit": 2}, headers=h).json()
    assert len(events["items"]) == 2
    assert events["total"] > 2
    assert events["items"][0]["id"] > events["items"][1]["id"]


def test_workload_views_page_and_refuse_unknown_ids(seeded: Seeded, client: TestClient) -> None:
    h = seeded.headers("reader")
    for resource in ("jobs", "workflows", "transformations"):
        page = client.get(f"/api/v1/{resource}", params={"state": "DONE"}, headers=h)
        assert page.status_code == 200
        assert page.json() == {"items": [], "total": 0, "limit": 100, "offset": 0}
        body = _is_problem(client.get(f"/api/v1/{resource}/7", headers=h), 404)
        assert "7" in str(body["detail"])
