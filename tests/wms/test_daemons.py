"""One daemon command for the archive and the WMS, and how the job manager batches its work.

``dpps daemon list`` shows the daemons of both packages, ``dpps daemon wms-manager --once``
runs what is queued to the end (more jobs than one dispatch round takes, and the workflow
steps they make ready), and the old ``dpps wms daemon NAME`` still works.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from dpps.bdms.archive import Archive
from dpps.cli.main import app
from dpps.core.daemon import REGISTRY, spec
from dpps.wms.api import WMS
from dpps.wms.builder import tool_command
from dpps.wms.executors.base import Task
from dpps.wms.manager import MAX_PREFETCH, PREFETCH, JobManager
from dpps.wms.types import SubmitOptions
from tests.wms.conftest import PY, ingest, write

runner = CliRunner()


def test_daemon_list_shows_the_archive_and_the_wms_daemons() -> None:
    result = runner.invoke(app, ["daemon", "list", "--json"])
    assert result.exit_code == 0, result.stderr
    package = {row["name"]: row["package"] for row in json.loads(result.stdout)["items"]}
    assert package["wms-manager"] == "wms"
    assert package["wms-transformer"] == "wms"
    assert package["evaluator"] == "bdms"
    assert package["transfer"] == "bdms"
    result = runner.invoke(app, ["daemon", "list"])
    assert "wms-transformer" in result.stdout


def test_serve_runs_the_wms_daemons_too() -> None:
    """``dpps serve`` (and ``health``) read the one registry: the CLI imported the WMS's and
    the pipelines' declarations beside the archive's."""
    assert {"wms-manager", "wms-transformer", "evaluator", "campaigns"} <= set(REGISTRY)
    assert spec("wms-manager").target == "dpps.wms.daemons:ManagerDaemon"
    assert (spec("wms-manager").package, spec("campaigns").package) == ("wms", "pipelines")
    result = runner.invoke(app, ["serve", "--only", "wms-nothing", "--no-api"])
    assert result.exit_code == 5


def test_manager_once_runs_the_queue_and_the_steps_it_makes_ready(
    wms: WMS, wms_archive: Archive, tmp_path: Path, scatter_cwl: Path
) -> None:
    ws = wms_archive.config.workspace
    noop = tool_command("noop", [PY, "-c", "pass"])
    # More jobs than one round dispatches (2 workers x PREFETCH), then a two-step workflow
    # whose second step only exists once the first is DONE.
    jobs = [wms.submit_job(noop, {}, opts=SubmitOptions()).id for _ in range(7)]
    lfn = ingest(wms_archive, "PIC", "/ctao/dl0/obs_1/tel_1.fits")
    inputs = write(tmp_path / "inputs.yaml", f"files: [{lfn}]\ntag: once\n")
    flow = wms.submit(scatter_cwl, inputs)
    result = runner.invoke(app, ["-w", str(ws), "daemon", "wms-manager", "--once", "--json"])
    assert result.exit_code == 0, result.stderr
    assert "wms-manager" in json.loads(result.stdout)
    assert {wms.job(j).state for j in jobs} == {"DONE"}
    assert wms.workflow(flow.id).state == "DONE"
    # Every transition is in the job's history, batched dispatch or not.
    events = [e.state for e in wms.job(jobs[-1]).events]
    assert events == ["SUBMITTED", "MATCHED", "RUNNING", "DONE"]


def test_the_old_wms_daemon_command_still_runs_a_daemon(wms: WMS, wms_archive: Archive) -> None:
    ws = wms_archive.config.workspace
    job = wms.submit_job(tool_command("noop", [PY, "-c", "pass"]), {}, opts=SubmitOptions())
    result = runner.invoke(app, ["-w", str(ws), "wms", "daemon", "wms-manager", "--once"])
    assert result.exit_code == 0, result.stderr
    assert wms.job(job.id).state == "DONE"


class _Slots:
    """An executor that only counts: the manager's queue arithmetic without processes."""

    name = "local"

    def __init__(self, slots: int) -> None:
        self.slots = slots

    def capacity(self) -> dict[str | None, int]:
        return {None: self.slots}

    def submit(self, task: Task) -> Future[dict[str, Any]]:
        return Future()

    def submit_many(
        self, tasks: Sequence[Task], *, bundle: int = 1
    ) -> list[Future[dict[str, Any]]]:
        return [Future() for _ in tasks]

    def shutdown(self, *, cancel: bool = True) -> None:
        return None


def test_queue_depth_follows_the_job_length(wms_archive: Archive) -> None:
    manager = JobManager(wms_archive.config, wms_archive.sessions, _Slots(2))
    assert manager.depth() == PREFETCH  # nothing finished yet: the cautious default
    now = time.monotonic()
    manager._finished.extend(now - 10.0 + i * 5.0 for i in range(3))  # long jobs
    assert manager.depth() == PREFETCH
    manager._finished.clear()
    manager._finished.extend(now - 0.5 + i * 0.005 for i in range(64))  # trivial jobs
    assert manager.depth() == MAX_PREFETCH


def test_short_jobs_are_bundled_long_ones_run_alone(wms_archive: Archive) -> None:
    manager = JobManager(wms_archive.config, wms_archive.sessions, _Slots(2))
    assert manager.bundle() == 1  # nothing finished yet
    now = time.monotonic()
    manager._finished.extend(now - 10.0 + i * 5.0 for i in range(3))  # long jobs
    assert manager.bundle() == 1
    manager._finished.clear()
    manager._finished.extend(now - 0.5 + i * 0.005 for i in range(64))  # trivial jobs
    # As many as about BUNDLE_S of work, but two bundles still fit in a slot's queue.
    assert manager.bundle() == MAX_PREFETCH // PREFETCH


def test_refill_waits_for_half_empty_queues_unless_a_slot_may_run_dry(
    wms_archive: Archive,
) -> None:
    manager = JobManager(wms_archive.config, wms_archive.sessions, _Slots(2))
    futures: list[Future[dict[str, Any]]] = [Future() for _ in range(4)]
    assert manager._refill_due(manager._free())  # idle: dispatch at once
    manager.inflight = {i: (f, None, f"t{i}") for i, f in enumerate(futures[:1])}
    assert manager._refill_due(manager._free())  # one slot may be idle
    manager.inflight = {i: (f, None, f"t{i}") for i, f in enumerate(futures[:3])}
    assert not manager._refill_due(manager._free())  # both busy, 1 of 4 places free
    manager.inflight = {i: (f, None, f"t{i}") for i, f in enumerate(futures[:2])}
    assert manager._refill_due(manager._free())  # half the queue is free
