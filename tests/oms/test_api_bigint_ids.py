"""Ids past 2^31 (migration 0008) are served: the REST API and the dashboard take a job's or
a transfer's 64-bit id as such, and refuse only what no id can be."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select, text

from dpps.catalog.models import DIDRow, RSERow, TransferRow
from dpps.catalog.models_wms import JobRow
from dpps.core.identifiers import MAX_ACTIVITY_ID
from tests.oms.conftest import Seeded

#: Past the last 32-bit id.
BIG = 2**31 + 5


def _rows_past_32_bits(s: Seeded) -> None:
    """A job and a transfer with the id ``BIG`` (as the sequences will hand out one day)."""
    with s.archive.sessions() as session:
        did_id = session.scalars(select(DIDRow.id).where(DIDRow.did_type == "FILE")).first()
        rse_id = session.scalars(select(RSERow.id)).first()
        assert did_id is not None
        assert rse_id is not None
        session.add(
            JobRow(
                id=BIG,
                name="far-future",
                state="DONE",
                account="root",
                tool="ctapipe-process",
                spec={},
                config_hash="0",
                activity="processing",
                executor="local",
            )
        )
        session.add(TransferRow(id=BIG, did_id=did_id, dest_rse_id=rse_id, state="DONE"))
        session.commit()
        assert session.scalar(text("SELECT max(id) FROM jobs")) == BIG


def test_jobs_and_transfers_past_32_bits_are_served(seeded: Seeded, client: TestClient) -> None:
    _rows_past_32_bits(seeded)
    h = seeded.headers("reader")
    job = client.get(f"/api/v1/jobs/{BIG}", headers=h)
    assert job.status_code == 200, job.text
    assert job.json()["id"] == BIG
    transfer = client.get(f"/api/v1/transfers/{BIG}", headers=h)
    assert transfer.status_code == 200, transfer.text
    assert transfer.json()["id"] == BIG
    # An id no row has yet is "not found"; one no 64-bit key can hold is refused as input.
    assert client.get(f"/api/v1/jobs/{BIG + 1}", headers=h).status_code == 404
    for path in (f"/api/v1/jobs/{MAX_ACTIVITY_ID + 1}", f"/api/v1/transfers/{2**64}"):
        refused = client.get(path, headers=h)
        assert refused.status_code == 400, (path, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"


def test_the_dashboard_shows_a_job_past_32_bits(seeded: Seeded, signed_in: TestClient) -> None:
    _rows_past_32_bits(seeded)
    page = signed_in.get(f"/ui/jobs/{BIG}")
    assert page.status_code == 200, page.text
    assert "far-future" in page.text
    assert signed_in.get(f"/ui/jobs/{MAX_ACTIVITY_ID + 1}").status_code == 404
