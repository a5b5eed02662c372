"""Clearing the staging buffer touches only what the campaign staged itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpps.bdms.archive import Archive
from dpps.bdms.staging.stager import buffer_storage
from dpps.pipelines.campaign import staging
from tests.pipelines.campaign.conftest import DL0_PREFIX

UC = "UC-130-3.1.1"


@pytest.mark.verifies_usecase(UC)
def test_release_only_the_campaigns_own_requests(archive: Archive, landing: list[Path]) -> None:
    files = [p for p in landing if p.name.endswith("_POINTING.fits")][:3]
    assert not archive.ingest(files, "PIC-TAPE", lfn_prefix=DL0_PREFIX).failed
    dids = [f"{DL0_PREFIX}/{p.name}" for p in files]
    # someone else staged the first file before the campaign, and asked for the third
    other = archive.as_account("analyst").preservation
    (theirs,) = other.stage(dids[:1], wait=True, timeout_s=60)
    assert theirs.state == "READY"
    (queued,) = other.stage(dids[2:], wait=False)
    sizes = [p.stat().st_size for p in files[:2]]
    report = staging.stage(archive, dids[:2], sizes, timeout_s=60)
    assert report.ready == 2
    assert report.joined_requests == [theirs.id]
    assert len(report.own_requests) == 1
    buffer = buffer_storage(archive.config)
    mine = archive.preservation.stage_requests(ids=report.own_requests)[0]
    assert mine.buffer_path
    assert buffer.exists(mine.buffer_path)
    assert staging.release(archive, report, "test") == report.own_requests
    after = {i.id: i for i in archive.preservation.stage_requests(limit=100)}
    assert after[mine.id].state == "EXPIRED"
    assert not buffer.exists(mine.buffer_path)
    assert after[theirs.id].state == "READY"  # the other reader's copy stays
    assert theirs.buffer_path
    assert buffer.exists(theirs.buffer_path)
    assert after[queued.id].state in ("QUEUED", "READY")  # never released by the campaign
    events = [e.action for e in archive.show(dids[1]).events]
    assert "stage.release" in events
    assert "stage.release" not in [e.action for e in archive.show(dids[0]).events]
    assert staging.release(archive, staging.StagingReport(), "test") == []
