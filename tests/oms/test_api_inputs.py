"""The REST API with hostile input (issue 15, defects 2, 7 and 8): 400 with the reason, never a
500 or a 503 "retry later", and a 500's log is one short traceback."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from dpps.oms.api.problems import TRACEBACK_FRAMES, short_traceback
from tests.oms.conftest import Seeded

UPLOAD = "/api/v1/ingest"
REGISTER = "/api/v1/dids/register"


def _register(client: TestClient, headers: dict[str, str], meta_json: str) -> Any:
    """POST a registration whose metadata is raw JSON text (``Infinity`` is not JSON, so it
    cannot be built with ``json=``)."""
    item = {"name": "/ctao/r.fits", "bytes": 10, "adler32": "00000001", "rse": "CTAO-N"}
    body = json.dumps({"files": [{**item, "meta": "@META@"}]}).replace('"@META@"', meta_json)
    headers = {**headers, "Content-Type": "application/json"}
    return client.post(REGISTER, content=body, headers=headers)


def test_non_finite_and_reserved_metadata_are_refused(seeded: Seeded, client: TestClient) -> None:
    h = seeded.headers("admin")
    for raw in ("inf", "nan", "1e999"):
        params = {"rse": "CTAO-N", "lfn": "/ctao/u.fits", "filename": "u.fits", "meta": f"x={raw}"}
        answer = client.post(UPLOAD, params=params, content=b"SIMPLE", headers=h)
        assert answer.status_code == 400, answer.text
        assert "not a finite number" in answer.json()["detail"]
    for meta in ('{"x": Infinity}', '{"x": NaN}', '{"x": 1e999}', '{"x": [1, -Infinity]}'):
        answer = _register(client, h, meta)
        assert answer.status_code == 400, (meta, answer.text)
        assert "meta" in answer.json()["detail"]  # the schema or the metadata guard
    answer = _register(client, h, '{"adler32": "0"}')
    assert answer.status_code == 400
    assert "reserved" in answer.json()["detail"]
    listed = client.get("/api/v1/dids", params={"filter": "meta.x>0"}, headers=h)
    assert listed.status_code == 200
    assert listed.json()["total"] == 0


def test_unbounded_filters_are_400(seeded: Seeded, client: TestClient) -> None:
    h = seeded.headers("reader")
    for text in (
        "obs_id=99999999999999999999",
        "version>1e300",
        "(" * 200 + "obs_id=1" + ")" * 200,
        "not " * 300 + "obs_id=1",
        "name like '\U0010ffff%'",
    ):
        answer = client.get("/api/v1/dids", params={"filter": text}, headers=h)
        assert answer.status_code in (200, 400), (text, answer.text)
        if answer.status_code == 400:
            assert answer.json()["detail"]


def test_a_logged_internal_error_is_one_short_traceback() -> None:
    def deep(n: int) -> int:
        return deep(n + 1)

    try:
        deep(0)
    except RecursionError as exc:
        text = short_traceback(exc)
    assert text.startswith("Traceback")
    assert text.rstrip().endswith("maximum recursion depth exceeded")
    assert len(text.splitlines()) <= 4 * (2 * TRACEBACK_FRAMES + 2)
