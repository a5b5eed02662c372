"""A block that cannot be processed: its failing step is retried, then reported (UC-000-4).

Runs on SQLite and PostgreSQL (the ``archive`` fixture). The block's calibration stream holds
too few events for CalibPipe: a real, permanent failure. Each job gets ``wms.max_attempts``
attempts, the task ``max_task_attempts`` tasks; then the block's files are PROBLEMATIC with
the step and the reason, the night's report lists the failed jobs, and nothing downstream of
the failed step ran.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from dpps.acada.simulate import SimulationConfig, simulate
from dpps.bdms.archive import Archive
from dpps.bdms.types import FileInfo
from dpps.core.daemon import DaemonContext
from dpps.pipelines.night.models import NightModels
from dpps.pipelines.night.transformation import ensure_transformation, pending
from dpps.scenarios.night import report
from dpps.wms.api import WMS

pytestmark = pytest.mark.verifies_usecase("UC-000-4")


def _placeholder(archive: Archive, tmp_path: Path, name: str) -> FileInfo:
    path = tmp_path / name
    path.write_bytes(f"{name}: not used, the block fails before DL2\n".encode())
    report = archive.ingest([path], "PIC", lfn=f"/ctao/test/{name}")
    assert not report.failed, report.failed
    return archive.list_files(f'name="/ctao/test/{name}"')[0]


def test_a_failing_step_is_retried_then_reported(archive: Archive, tmp_path: Path) -> None:
    wms = WMS(archive)
    models = NightModels(
        _placeholder(archive, tmp_path, "models.joblib"),
        _placeholder(archive, tmp_path, "irf.dat"),
        produced=False,
    )
    tf = ensure_transformation(wms, models, settle_s=0.0, max_task_attempts=2)
    assert ensure_transformation(wms, models).id == tf.id  # found, not created twice
    queue = archive.acada.queue(executor="inline")
    try:
        files = simulate(
            queue.settings.landing,
            SimulationConfig(
                telescopes=(1,),
                duration_s=2.0,
                event_rate_hz=5.0,
                calibration_fraction=0.2,
                muon_fraction=0.0,
                start=dt.datetime(2026, 11, 21, 23, 0),
                first_obs_id=7,
            ),
        )
        queue.run_once(DaemonContext("ingest"))
    finally:
        queue.close()

    def settled() -> bool:
        return sum(wms.transformation(tf.name).files.values()) == len(files) and not pending(
            wms, tf.name
        )

    wms.run_until(settled, with_transformations=True, timeout_s=600)
    info = wms.transformation(tf.name)
    assert info.files["PROBLEMATIC"] == len(files)
    assert info.files["PROCESSED"] == 0
    reasons = {p.reason for p in info.problematic}
    assert all("after 2 attempt(s)" in r and "step camera" in r for r in reasons if r), reasons
    workflows = sorted({j.workflow_id for j in wms.list_jobs(limit=1000) if j.workflow_id})
    assert len(workflows) == 2  # the task and its one retry
    summary = report.jobs(wms, workflows)
    camera = summary["by_step"]["camera"]
    assert camera == {"FAILED": 2}
    failed = [j for j in summary["retried_or_failed"] if j["step"] == "camera"]
    assert [j["attempts"] for j in failed] == [archive.config.wms.max_attempts] * 2
    assert "dl1" not in summary["by_step"]
    assert "dl3" not in summary["by_step"]
    log = wms.logs(failed[0]["job"])
    assert "calibration" in log or "events" in log, log
    lfn = "/ctao/" + files[0].relative_to(queue.settings.landing).as_posix()
    events = archive.show(f"ctao:{lfn}").events
    assert any(e.action == "wms.problematic" for e in events)
