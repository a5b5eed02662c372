"""Ids past 2^31 (migration 0008) are served: the REST API and the dashboard take a job's or
a transfer's 64-bit id as such, and refuse only what no id can be."""

from __future__ import annotations

from dataclasses import replace

import pytest
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


def test_jobs_and_transfers_past_32_bits_are_served(seeded: Seeded, signed_in: TestClient) -> None:
    """Over REST and on the dashboard (one app: the reader's session and a bearer token)."""
    _rows_past_32_bits(seeded)
    client, h = signed_in, seeded.headers("reader")
    job = client.get(f"/api/v1/jobs/{BIG}", headers=h)
    assert job.status_code == 200, job.text
    assert job.json()["id"] == BIG
    transfer = client.get(f"/api/v1/transfers/{BIG}", headers=h)
    assert transfer.status_code == 200, transfer.text
    assert transfer.json()["id"] == BIG
    page = client.get(f"/ui/jobs/{BIG}")
    assert page.status_code == 200, page.text
    assert "far-future" in page.text
    # An id no row has yet is "not found"; one no 64-bit key can hold is refused as input.
    assert client.get(f"/api/v1/jobs/{BIG + 1}", headers=h).status_code == 404
    assert client.get(f"/ui/jobs/{MAX_ACTIVITY_ID + 1}").status_code == 404
    for path in (f"/api/v1/jobs/{MAX_ACTIVITY_ID + 1}", f"/api/v1/transfers/{2**64}"):
        refused = client.get(path, headers=h)
        assert refused.status_code == 400, (path, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"


def test_agent_records_take_64_bit_ids_of_transfers_and_stage_requests() -> None:
    """A site agent's report names transfers and stage requests by 64-bit ids; the DIDs,
    replicas and RSEs in the same records stay 32-bit keys, and bigger is refused there."""
    from dpps.bdms.staging.records import StageOutcome
    from dpps.bdms.transfer.records import Job
    from dpps.oms.api.routers.agents import _in_range

    job = Job(BIG, 1, "f", "A", 1, "/a", "B", 2, "/b", 3, {}, 10, 0, 5, False)
    _in_range(job)
    _in_range(StageOutcome(BIG, "READY"))
    for refused, name in (
        (replace(job, transfer_id=MAX_ACTIVITY_ID + 1), "transfer_id"),
        (replace(job, did_id=BIG), "did_id"),
        (replace(job, replica_id=BIG), "replica_id"),
    ):
        with pytest.raises(ValueError, match=f"{name} .* is out of range"):
            _in_range(refused)
