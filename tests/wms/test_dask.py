"""The dask executor on a real loopback cluster: two sites, jobs routed to their data."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from dpps.bdms.archive import Archive
from dpps.catalog.models_wms import JobFileRow
from dpps.core.daemon import DaemonContext
from dpps.testing.dask_cluster import DaskCluster
from dpps.wms.api import WMS
from dpps.wms.states import JobState
from dpps.wms.types import SubmitOptions
from tests.wms.conftest import PY, TIMEOUT_S, ingest, make_workspace, write


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    with DaskCluster(tmp_path_factory.mktemp("dask"), {"PIC": 1, "DESY": 1}) as c:
        yield c


@pytest.fixture
def short_leases(tmp_path: Path, catalog_url: str) -> Iterator[Archive]:
    """A workspace whose leases expire fast: a killed worker's jobs come back in seconds."""
    archive = make_workspace(tmp_path / "ws", catalog_url, lease_s=4.0)
    try:
        yield archive
    finally:
        archive.close()


SLOW_COPY = (
    "import sys,time,shutil; open(sys.argv[2],'a').write('x'); time.sleep(2); "
    "shutil.copy(sys.argv[1], 'out.fits')"
)


def _worker_pid(wms: WMS, job_id: int) -> int:
    running = [e for e in wms.job(job_id).events if e.state == "RUNNING"]
    return int(running[-1].details["pid"])


@pytest.mark.verifies_usecase("UC-180-2.3")
@pytest.mark.verifies_usecase("UC-000-1")
def test_scatter_runs_each_job_at_the_site_holding_its_input(
    wms: WMS, wms_archive: Archive, scatter_cwl: Path, cluster: DaskCluster
) -> None:
    files = [
        ingest(wms_archive, "PIC", "/ctao/dl0/obs_2/tel_001.fits", obs_id=2, tel_id=1, seed=1),
        ingest(wms_archive, "DESY", "/ctao/dl0/obs_2/tel_002.fits", obs_id=2, tel_id=2, seed=2),
        ingest(wms_archive, "DESY", "/ctao/dl0/obs_2/tel_003.fits", obs_id=2, tel_id=3, seed=3),
    ]
    sub = wms.submit(
        scatter_cwl, {"files": files, "tag": "dask"}, opts=SubmitOptions(executor="dask")
    )
    state = wms.wait(sub, executor="dask", scheduler=cluster.address, timeout_s=TIMEOUT_S)
    assert state == "DONE", wms.workflow(sub.id)
    info = wms.workflow(sub.id)
    pids = cluster.live_workers()
    site_of_pid = {pid: name.split("-")[0] for name, pid in pids.items()}
    for job in info.jobs:
        if job.step == "summarize":
            detail = wms.job(job.id)
            source_site = wms_archive.show(detail.inputs[0].split(":", 1)[1]).replicas[0].site
            assert job.run_site == source_site
            assert site_of_pid[_worker_pid(wms, job.id)] == source_site
            # Processed in place: the output stays at the site that holds the input.
            out = wms_archive.show(detail.outputs[0].split(":", 1)[1])
            assert [r.site for r in out.replicas] == [source_site]
    merge = next(j for j in info.jobs if j.step == "merge")
    assert merge.run_site == "DESY"  # two of the three summaries are there
    assert merge.executor == "dask"
    assert merge.state == JobState.DONE


def test_a_job_asking_for_a_site_without_workers_waits_with_the_reason(
    wms: WMS, wms_archive: Archive, tmp_path: Path, cluster: DaskCluster
) -> None:
    job = write(
        tmp_path / "job.yaml",
        f"""\
        name: nowhere
        command: ["{PY}", "-c", "open('x.txt','w').write('x')"]
        site: CSCS
        outputs: [{{glob: x.txt}}]
    """,
    )
    sub = wms.submit(job, opts=SubmitOptions(executor="dask"))
    manager = wms.manager("dask", scheduler=cluster.address)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while wms.job(sub.id).reason is None and time.monotonic() < deadline:
            manager.run_once(DaemonContext("wms-manager"))
    finally:
        manager.close()
    info = wms.job(sub.id)
    assert info.state == JobState.SUBMITTED
    assert info.reason == "no worker serves the requested site CSCS"


def test_worker_killed_mid_job_is_rescheduled_and_outputs_registered_once(
    tmp_path: Path, short_leases: Archive, cluster: DaskCluster
) -> None:
    archive = short_leases
    wms = WMS(archive)
    marker = tmp_path / "started"
    lfn = ingest(archive, "PIC", "/ctao/dl0/obs_3/tel_001.fits", obs_id=3)
    job = write(
        tmp_path / "job.yaml",
        f"""\
        name: slow
        command: {json.dumps([PY, "-c", SLOW_COPY, "$(inputs.raw.path)", str(marker)])}
        inputs: {{raw: "{lfn}"}}
        outputs: [{{glob: out.fits, lfn: /ctao/dl1/obs_3/out.fits}}]
    """,
    )
    sub = wms.submit(job, opts=SubmitOptions(executor="dask"))
    manager = wms.manager("dask", scheduler=cluster.address)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not marker.exists() and time.monotonic() < deadline:
            manager.run_once(DaemonContext("wms-manager"))
        first = _worker_pid(wms, sub.id)
        cluster.kill_worker(first)  # mid-job, no goodbye; the site has no worker left
        cluster.start_worker("PIC")  # until this one joins
        wms.run_until(
            lambda: wms.job(sub.id).state == "DONE", manager=manager, timeout_s=TIMEOUT_S
        )
    finally:
        manager.close()
    info = wms.job(sub.id)
    assert info.attempts >= 2  # more if the loaded machine made a lease expire too
    assert "stalled" in " ".join(e.reason or "" for e in info.events)
    assert _worker_pid(wms, sub.id) != first
    assert info.outputs == ["ctao:/ctao/dl1/obs_3/out.fits"]
    with archive.sessions() as s:
        outputs = s.scalars(select(JobFileRow).where(JobFileRow.role == "output")).all()
    assert len(outputs) == 1
    assert len(archive.show("/ctao/dl1/obs_3/out.fits").replicas) == 1


BUNDLED = (
    "import sys,time; open(sys.argv[1],'a').write('x\\n'); time.sleep(0.5); "
    "open('out.txt','w').write(sys.argv[2])"
)


@pytest.mark.verifies_usecase("UC-100-2")
def test_worker_killed_mid_bundle_every_job_ends_once(
    tmp_path: Path, short_leases: Archive, cluster: DaskCluster
) -> None:
    archive = short_leases
    wms = WMS(archive)
    marker = tmp_path / "started"
    ids = []
    for i in range(4):
        job = write(
            tmp_path / f"job{i}.yaml",
            f"""\
            name: bundled{i}
            command: {json.dumps([PY, "-c", BUNDLED, str(marker), str(i)])}
            site: PIC
            outputs: [{{glob: out.txt}}]
        """,
        )
        ids.append(wms.submit(job, opts=SubmitOptions(executor="dask")).id)
    manager = wms.manager("dask", scheduler=cluster.address)
    manager.bundle = lambda: 4  # type: ignore[method-assign]  # as for short jobs
    try:
        deadline = time.monotonic() + TIMEOUT_S
        # Kill when the first job's tool has run (its outcome not yet settled: a bundle is
        # settled at its end) and the second one's is running.
        while len(marker.read_text().splitlines() if marker.exists() else []) < 2:
            assert time.monotonic() < deadline, "the bundle never started"
            manager.run_once(DaemonContext("wms-manager"))
        first = _worker_pid(wms, ids[0])
        cluster.kill_worker(first)
        cluster.start_worker("PIC")
        wms.run_until(
            lambda: all(wms.job(i).state == "DONE" for i in ids),
            manager=manager,
            timeout_s=TIMEOUT_S,
        )
    finally:
        manager.close()
    taken = {}
    for job_id in ids:
        info = wms.job(job_id)
        running = [e for e in info.events if e.state == "RUNNING"]
        taken[job_id] = (running[0].ts, running[0].details["pid"])
        assert [e.state for e in info.events].count("DONE") == 1
        assert info.attempts >= 2  # every job of the dead bundle was run again
        assert len(info.outputs) == 1
        assert len(archive.show(info.outputs[0].split(":", 1)[1]).replicas) == 1
    assert len(set(taken.values())) == 1  # the four were taken together, by one worker
    with archive.sessions() as s:
        outputs = s.scalars(select(JobFileRow).where(JobFileRow.role == "output")).all()
    assert sorted(o.job_id for o in outputs) == sorted(ids)


@pytest.mark.verifies_usecase("UC-100-2")
def test_a_failing_job_of_a_bundle_is_retried_alone_and_the_others_end_done(
    tmp_path: Path, wms: WMS, cluster: DaskCluster
) -> None:
    ids = []
    for i, code in enumerate(
        ["open('out.txt','w').write('0')", "raise SystemExit(3)", "open('out.txt','w').write('2')"]
    ):
        job = write(
            tmp_path / f"job{i}.yaml",
            f"""\
            name: bundled{i}
            command: {json.dumps([PY, "-c", code])}
            site: PIC
            outputs: [{{glob: out.txt}}]
        """,
        )
        ids.append(wms.submit(job, opts=SubmitOptions(executor="dask", max_attempts=2)).id)
    manager = wms.manager("dask", scheduler=cluster.address)
    manager.bundle = lambda: 3  # type: ignore[method-assign]  # as for short jobs
    final = {"DONE", "FAILED"}
    try:
        wms.run_until(
            lambda: all(wms.job(i).state in final for i in ids),
            manager=manager,
            timeout_s=TIMEOUT_S,
        )
    finally:
        manager.close()
    ok, failing, other = (wms.job(i) for i in ids)
    assert [ok.state, failing.state, other.state] == ["DONE", "FAILED", "DONE"]
    assert (ok.attempts, failing.attempts, other.attempts) == (1, 2, 1)
    assert failing.reason == "tool failed: exit code 3"
    assert failing.outputs == []
    for info in (ok, other):
        assert [e.state for e in info.events].count("DONE") == 1
        assert len(info.outputs) == 1
    first_take = {
        next(e.ts for e in info.events if e.state == "RUNNING") for info in (ok, failing, other)
    }
    assert len(first_take) == 1  # the three were one bundle
