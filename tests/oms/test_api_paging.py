"""Query pages report the true total whether it was counted or known from a short page."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.oms.conftest import Seeded


def test_totals_match_the_catalog_count_on_every_page(seeded: Seeded, client: TestClient) -> None:
    h = seeded.headers("reader")
    for filter_text in ("", "obs_id=42", "data_level=DL0", "obs_id=7"):
        expected = seeded.archive.count(filter_text)
        names = [f.name for f in seeded.archive.list_files(filter_text, limit=None)]
        for limit, offset in ((2, 0), (2, 2), (3, 2), (100, 0), (1, 3), (5, 10)):
            params = {"filter": filter_text, "limit": limit, "offset": offset}
            page = client.get("/api/v1/dids", params=params, headers=h)
            assert page.status_code == 200, page.text
            body = page.json()
            assert body["total"] == expected, (filter_text, limit, offset, body)
            assert [i["name"] for i in body["items"]] == names[offset : offset + limit]
    assert seeded.archive.count("") == 4
