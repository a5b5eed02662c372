"""A campaign with a record: queued for the campaign daemon, watched through its record, given
back when its runner is told to stop and finished by the next one without duplicated work."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from dpps.bdms.archive import Archive
from dpps.catalog.models_wms import JobRow
from dpps.core.daemon import DaemonContext, new_instance_id
from dpps.pipelines.campaign import record
from dpps.wms.api import WMS
from tests.pipelines.campaign.test_campaign import spec

UC = "UC-130-3.1.1"
STEPS = ("camera", "atmosphere", "dl1", "dl2", "dl3", "quality")


@pytest.mark.verifies_usecase(UC)
@pytest.mark.verifies_usecase("UC-160-1.1")
# PostgreSQL only: on SQLite the daemon runs a queued campaign in test_remote (a campaign costs
# a minute; the stopped-runner test below runs on both).
@pytest.mark.parametrize(
    "catalog_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_the_daemon_runs_a_queued_campaign(tape_archive: Archive) -> None:
    archive = tape_archive
    queued = record.submit(archive.as_account("dpm"), spec())
    assert (queued.state, queued.account, queued.phase) == ("QUEUED", "dpm", "queued")
    daemon = record.CampaignDaemon(archive)
    try:
        assert daemon.run_once(DaemonContext(name="campaigns")) == 1
        daemon.drain()
        assert daemon.run_once(DaemonContext(name="campaigns")) == 0  # nothing else queued
    finally:
        daemon.close()
    info = WMS(archive).campaigns.get("reproc-2026")
    assert (info.state, info.attempts, info.owner, info.error) == ("DONE", 1, None, None)
    assert info.report is not None
    assert info.report["ok"] is True
    assert info.report["counts"] == {
        s: {"runs": 2, "ok": 2, "failed": 0, "submitted": 2} for s in STEPS
    }
    jobs = WMS(archive).list_jobs(limit=1000)
    assert len(jobs) == 12
    with archive.sessions() as session:  # run as the account that submitted it
        assert set(session.scalars(select(JobRow.account))) == {"dpm"}
    produced = archive.list_files("meta.campaign = 'reproc-2026'", limit=None)
    assert info.report["verification"]["products"] == len(produced) > 0


@pytest.mark.verifies_usecase(UC)
def test_a_stopped_runner_gives_the_campaign_back_and_the_next_finishes_it(
    tape_archive: Archive,
) -> None:
    archive = tape_archive
    record.submit(archive, spec())
    owner, stop = new_instance_id(), threading.Event()
    claimed = WMS(archive).campaigns.claim(owner, "reproc-2026")
    assert claimed is not None

    def phase(name: str) -> None:  # SIGTERM arrives once the jobs are submitted
        if name.startswith("processing"):
            stop.set()

    with pytest.raises(record.Interrupted):
        record.execute(archive, spec(), owner, phase=phase, stop=stop)
    back = WMS(archive).campaigns.get("reproc-2026")
    assert (back.state, back.owner) == ("QUEUED", None)
    assert back.phase.startswith("interrupted")
    submitted = WMS(archive).list_jobs(limit=1000)
    assert submitted  # the first runner got as far as submitting the blocks' jobs

    daemon = record.CampaignDaemon(archive)
    try:
        assert daemon.run_once(DaemonContext(name="campaigns")) == 1
        daemon.drain()
    finally:
        daemon.close()
    info = WMS(archive).campaigns.get("reproc-2026")
    stored = info.report or {}
    why = info.error or stored.get("failures") or stored.get("verification")
    assert (info.state, info.attempts) == ("DONE", 2), why
    assert info.report is not None
    assert info.report["ok"] is True
    jobs = WMS(archive).list_jobs(limit=1000)
    assert len(jobs) == 12  # the second runner waited for the first one's jobs: none twice
    assert {j.state for j in jobs} == {"DONE"}
    assert {s["how"] for s in info.report["steps"]} == {"waited"}
