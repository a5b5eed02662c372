"""A bundle's DONE jobs are settled by one statement, still guarded job by job: a job whose
lease another attempt took meanwhile is neither marked DONE nor accounted, and the others are."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, update

from dpps.bdms.archive import Archive
from dpps.catalog.engine import transaction
from dpps.catalog.models_wms import JobEventRow, JobRow
from dpps.wms import settlement, worker_context
from dpps.wms.api import WMS
from dpps.wms.builder import tool_command
from dpps.wms.executors.base import Task
from dpps.wms.process import ProcessResult
from dpps.wms.runner import JobView
from dpps.wms.types import SubmitOptions


def _running(wms: WMS, archive: Archive, n: int) -> list[int]:
    """n jobs RUNNING under tokens t<id>, with an earlier attempt's use already recorded."""
    opts = SubmitOptions(executor="dask", site="PIC")
    ids = [wms.submit_job(tool_command("noop", ["true"]), {}, opts=opts).id for _ in range(n)]
    with transaction(archive.sessions) as s:
        for job_id in ids:
            s.execute(
                update(JobRow)
                .where(JobRow.id == job_id)
                .values(
                    state="RUNNING",
                    attempts=1,
                    lease_owner=f"t{job_id}",
                    cpu_s=1.0,
                    wall_s=2.0,
                    max_rss_mb=500.0,
                    bytes_read=10,
                )
            )
    return ids


def _done(workspace: str, job_id: int, rss: float) -> settlement.Done:
    view = JobView(job_id, "root", "true", {}, {}, None, "", None, None, None, 1, 100, None)
    task = Task(job_id, f"t{job_id}", 1, workspace, "PIC", "dask")
    result = ProcessResult(exit_code=0, stopped=False, cpu_s=0.25, max_rss_mb=rss, wall_s=0.5)
    base = {"sandbox": f"/sandbox/{job_id}", "log_tail": "tail"}
    return settlement.Done(task, view, Path(base["sandbox"]), base, result, 5, 0, [], [], {})


@pytest.mark.verifies_usecase("UC-100-2")
def test_a_bundle_settles_the_jobs_it_owns_and_not_one_another_attempt_took(
    wms: WMS, wms_archive: Archive
) -> None:
    first, taken, third = _running(wms, wms_archive, 3)
    with transaction(wms_archive.sessions) as s:  # the manager requeued it: another attempt
        s.execute(update(JobRow).where(JobRow.id == taken).values(lease_owner="other"))
    workspace = str(wms_archive.config.workspace)
    ctx = worker_context.context(workspace)
    done = [_done(workspace, first, 900.0), _done(workspace, taken, 900.0)]
    done.append(_done(workspace, third, 20.0))

    try:
        status = settlement.settle(ctx, done)
    finally:
        worker_context._CONTEXTS.pop(workspace).engine.dispose()

    assert status == {first: "DONE", taken: "lost", third: "DONE"}
    with wms_archive.sessions() as s:
        rows = {r.id: r for r in s.scalars(select(JobRow))}
        events = s.execute(select(JobEventRow.job_id, JobEventRow.state)).all()
    assert (rows[taken].state, rows[taken].lease_owner, rows[taken].cpu_s) == (
        "RUNNING",
        "other",
        1.0,
    )
    for job_id, peak in ((first, 900.0), (third, 500.0)):  # the peak is the larger one
        row = rows[job_id]
        assert (row.state, row.exit_code, row.sandbox, row.log_tail) == (
            "DONE",
            0,
            f"/sandbox/{job_id}",
            "tail",
        )
        assert (row.cpu_s, row.wall_s, row.max_rss_mb, row.bytes_read) == (1.25, 2.5, peak, 15)
        assert row.finished_at is not None
    assert sorted(j for j, state in events if state == "DONE") == [first, third]
