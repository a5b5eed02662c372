"""Fault tests: failing and partial tools, missing replicas, killed workers and managers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from dpps.bdms.archive import Archive
from dpps.bdms.staging import stager
from dpps.catalog.models import DIDRow, ReplicaRow, StageRequestRow
from dpps.catalog.models_wms import JobFileRow
from dpps.core.daemon import DaemonContext
from dpps.wms.api import WMS
from dpps.wms.types import SubmitOptions
from tests.bdms.helpers import snapshot
from tests.wms.conftest import PY, TIMEOUT_S, ingest, make_workspace, write

BROKEN = (
    "import sys; print('reading calibration'); open('out.txt','w').write('x'); "
    "sys.exit('no calibration for tel 3')"
)
COPY = "import shutil,sys; shutil.copy(sys.argv[1], 'o.fits')"


def _stray_uploads(archive: Archive) -> list[Path]:
    rse = archive.config.workspace / "rse"
    return [p for p in rse.rglob("*") if p.is_file() and "_wms" in p.parts]


@pytest.mark.verifies_usecase("UC-100-2")
def test_a_failing_tool_is_retried_then_failed_with_its_logs(
    wms: WMS, wms_archive: Archive, tmp_path: Path
) -> None:
    job = write(
        tmp_path / "job.yaml",
        f"""\
        name: broken
        command: {json.dumps([PY, "-c", BROKEN])}
        outputs: [{{glob: out.txt, lfn: /ctao/user/out.txt}}]
    """,
    )
    before = snapshot(wms_archive)
    sub = wms.submit(job, opts=SubmitOptions(max_attempts=2))
    assert wms.wait(sub, timeout_s=TIMEOUT_S) == "FAILED"
    info = wms.job(sub.id)
    assert info.attempts == 2
    assert info.exit_code == 1
    assert info.reason == "tool failed: exit code 1"
    states = [e.state for e in info.events]
    assert states == [
        "SUBMITTED",
        "MATCHED",
        "RUNNING",
        "SUBMITTED",
        "MATCHED",
        "RUNNING",
        "FAILED",
    ]
    log = wms.logs(sub.id)
    assert "reading calibration" in log
    assert "no calibration for tel 3" in log
    after = snapshot(wms_archive)
    assert after["dids"] == before["dids"]
    assert after["replicas"] == before["replicas"]
    assert _stray_uploads(wms_archive) == []


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        ("open('a.txt','w').write('a'); import sys; sys.exit(2)", "tool failed: exit code 2"),
        ("open('a.txt','w').write('a')", "outputs: output b: nothing matches 'b.txt'"),
        ("open('a.txt','w').write('a'); open('b.txt','w')", "b.txt is empty"),
    ],
    ids=["exit-2", "missing", "empty"],
)
@pytest.mark.verifies_usecase("UC-100-2")
def test_partial_outputs_register_nothing(
    wms: WMS, wms_archive: Archive, tmp_path: Path, script: str, reason: str
) -> None:
    job = write(
        tmp_path / "job.yaml",
        f"""\
        name: partial
        command: ["{PY}", "-c", "{script}"]
        outputs:
          - {{name: a, glob: a.txt, lfn: /ctao/user/a.txt}}
          - {{name: b, glob: b.txt, lfn: /ctao/user/b.txt}}
    """,
    )
    before = snapshot(wms_archive)
    sub = wms.submit(job, opts=SubmitOptions(max_attempts=1))
    assert wms.wait(sub, timeout_s=TIMEOUT_S) == "FAILED"
    assert reason in (wms.job(sub.id).reason or "")
    after = snapshot(wms_archive)
    assert after["dids"] == before["dids"]
    assert after["replicas"] == before["replicas"]
    assert _stray_uploads(wms_archive) == []


@pytest.mark.verifies_usecase("UC-100-2")
def test_an_output_conflicting_with_the_archive_fails_without_retry_and_leaves_nothing(
    wms: WMS, wms_archive: Archive, tmp_path: Path
) -> None:
    ingest(wms_archive, "PIC", "/ctao/user/taken.fits", seed=1)
    job = write(
        tmp_path / "job.yaml",
        f"""\
        name: clash
        command: ["{PY}", "-c", "open('x.txt','w').write('other bytes')"]
        outputs: [{{glob: x.txt, lfn: /ctao/user/taken.fits}}]
    """,
    )
    sub = wms.submit(job)
    assert wms.wait(sub, timeout_s=TIMEOUT_S) == "FAILED"
    info = wms.job(sub.id)
    assert info.attempts == 1
    assert "already registered with other content" in (info.reason or "")
    assert _stray_uploads(wms_archive) == []


@pytest.mark.verifies_usecase("UC-100-2")
def test_an_input_without_available_replica_waits_and_one_on_tape_is_staged(
    wms: WMS, wms_archive: Archive, tmp_path: Path
) -> None:
    lfn = ingest(wms_archive, "PIC", "/ctao/dl0/obs_4/tel_1.fits", obs_id=4)
    tape = ingest(wms_archive, "PIC-TAPE", "/ctao/dl0/obs_4/tel_2.fits", obs_id=4, seed=2)
    with wms_archive.sessions.begin() as s:
        s.execute(
            update(ReplicaRow)
            .values(state="UNAVAILABLE")
            .where(
                ReplicaRow.did_id
                == select(DIDRow.id)
                .where(DIDRow.name == "/ctao/dl0/obs_4/tel_1.fits")
                .scalar_subquery()
            )
        )
    template = f"""\
        name: NAME
        command: {json.dumps([PY, "-c", COPY, "$(inputs.raw.path)"])}
        inputs: {{raw: "LFN"}}
        outputs: [{{glob: o.fits, lfn: /ctao/dl1/obs_4/NAME.fits}}]
    """
    disk = wms.submit(
        write(tmp_path / "a.yaml", template.replace("NAME", "a").replace("LFN", lfn))
    )
    nearline = wms.submit(
        write(tmp_path / "b.yaml", template.replace("NAME", "b").replace("LFN", tape))
    )
    manager = wms.manager()
    try:
        wms.run_until(
            lambda: (
                wms.job(disk.id).state == "WAITING" and wms.job(nearline.id).state == "WAITING"
            ),
            manager=manager,
            timeout_s=TIMEOUT_S,
        )
        assert wms.job(disk.id).reason == (
            "input ctao:/ctao/dl0/obs_4/tel_1.fits has no AVAILABLE replica"
        )
        assert wms.job(nearline.id).reason == (
            "input ctao:/ctao/dl0/obs_4/tel_2.fits is only on tape (PIC-TAPE): staging"
        )
        with wms_archive.sessions() as s:  # the manager asked the stager for a recall
            requests = s.scalars(select(StageRequestRow.state)).all()
        assert requests == ["QUEUED"]
        with wms_archive.sessions.begin() as s:  # the disk replica comes back
            s.execute(
                update(ReplicaRow)
                .values(state="AVAILABLE")
                .where(ReplicaRow.state == "UNAVAILABLE")
            )
        # The stager daemon (here: its unit of work) recalls the tape copy after its delay.
        ctx = DaemonContext(name="stager")

        def staged_and_done() -> bool:
            stager.one_pass(ctx, wms_archive.sessions, wms_archive.config)
            return wms.job(disk.id).state == "DONE" and wms.job(nearline.id).state == "DONE"

        wms.run_until(staged_and_done, manager=manager, timeout_s=TIMEOUT_S)
    finally:
        manager.close()
    assert [e.state for e in wms.job(disk.id).events][:3] == ["SUBMITTED", "WAITING", "SUBMITTED"]
    assert wms.job(nearline.id).bytes_read > 0
    copy = wms_archive.show("/ctao/dl1/obs_4/b.fits")
    assert copy.file.adler32 == wms_archive.show("/ctao/dl0/obs_4/tel_2.fits").file.adler32


@pytest.mark.verifies_usecase("UC-100-2")
def test_a_killed_pool_worker_is_replaced_and_its_job_registered_once(
    wms: WMS, wms_archive: Archive, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    victim = (
        f"import time; open({str(marker)!r},'a').write('x'); time.sleep(1); "
        "open('o.txt','w').write('done')"
    )
    job = write(
        tmp_path / "job.yaml",
        f"""\
        name: victim
        command: {json.dumps([PY, "-c", victim])}
        outputs: [{{glob: o.txt, lfn: /ctao/user/o.txt}}]
    """,
    )
    sub = wms.submit(job)
    manager = wms.manager()
    try:
        wms.run_until(marker.exists, manager=manager, timeout_s=TIMEOUT_S)
        running = [e for e in wms.job(sub.id).events if e.state == "RUNNING"]
        os.kill(int(running[-1].details["pid"]), signal.SIGKILL)  # the pool process, mid-job
        wms.run_until(
            lambda: wms.job(sub.id).state == "DONE", manager=manager, timeout_s=TIMEOUT_S
        )
    finally:
        manager.close()
    info = wms.job(sub.id)
    assert info.attempts >= 2
    assert info.outputs == ["ctao:/ctao/user/o.txt"]
    assert any(
        "executor error" in (e.reason or "") or "stalled" in (e.reason or "") for e in info.events
    )
    assert len(wms_archive.show("/ctao/user/o.txt").replicas) == 1


def _daemon(workspace: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [
                str(Path(sys.executable).parent / "dpps"),
                "-w",
                str(workspace),
                "wms",
                "daemon",
                "wms-manager",
                "--log-level",
                "WARNING",
            ],
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
        )


@pytest.mark.verifies_usecase("UC-100-2")
def test_the_manager_daemon_killed_and_restarted_loses_and_duplicates_nothing(
    tmp_path: Path, catalog_url: str
) -> None:
    archive = make_workspace(tmp_path / "ws", catalog_url, lease_s=4.0)
    wms = WMS(archive)
    pids = tmp_path / "pids"
    pids.mkdir()
    subs = []
    script = f"import os,time; open(os.path.join({str(pids)!r}, str(os.getpid())),'w'); "
    script += "time.sleep(2); "
    for i in range(3):
        job = write(
            tmp_path / f"j{i}.yaml",
            f"""\
            name: job{i}
            command: {json.dumps([PY, "-c", script + f"open('o.txt','w').write('{i}')"])}
            outputs: [{{glob: o.txt, lfn: /ctao/user/out_{i}.txt}}]
        """,
        )
        subs.append(wms.submit(job))
    first = _daemon(archive.config.workspace, tmp_path / "daemon.log")
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not any(pids.iterdir()) and time.monotonic() < deadline:
            assert first.poll() is None, (tmp_path / "daemon.log").read_text()
            time.sleep(0.1)
        first.send_signal(signal.SIGKILL)  # mid-job, no clean-up at all
        first.wait(timeout=30)
        second = _daemon(archive.config.workspace, tmp_path / "daemon.log")
        try:
            while time.monotonic() < deadline and not all(
                wms.job(s.id).state == "DONE" for s in subs
            ):
                assert second.poll() is None, (tmp_path / "daemon.log").read_text()
                time.sleep(0.2)
            second.send_signal(signal.SIGTERM)  # graceful this time
            assert second.wait(timeout=60) == 0, (tmp_path / "daemon.log").read_text()
        finally:
            if second.poll() is None:
                second.kill()
    finally:
        if first.poll() is None:
            first.kill()
    infos = [wms.job(s.id) for s in subs]
    assert all(i.state == "DONE" for i in infos), [
        (i.state, [(e.state, e.attempt, e.reason) for e in i.events]) for i in infos
    ]
    assert any(i.attempts > 1 for i in infos)  # some were running when the daemon died
    with archive.sessions() as s:
        outputs = s.scalar(
            select(func.count()).select_from(JobFileRow).where(JobFileRow.role == "output")
        )
    assert outputs == 3
    assert sorted(f.name for f in archive.list_files("name like /ctao/user/%")) == [
        f"/ctao/user/out_{i}.txt" for i in range(3)
    ]
    # The tools of the killed daemon's workers did not outlive it.
    for pid in (int(p.name) for p in pids.iterdir()):
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid)
    archive.close()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


@pytest.mark.verifies_usecase("UC-100-2")
def test_a_workspace_made_again_at_the_same_path_gets_its_own_catalog(tmp_path: Path) -> None:
    """Pool processes outlive a manager (they are kept warm for the next) and cache one catalog
    connection per workspace path. A workspace removed and made again at that path, with a new
    catalog, must be read afresh: a stale connection to the removed SQLite file found jobs 1-4
    already ended there, so the new ones were dispatched again and again and never ran (seen
    once pytest began removing passed tests' directories, whose names are then reused). Each
    wait stops its manager with the other jobs still in flight: they are requeued and run again
    as the same attempt (the next test)."""
    import shutil

    states = []
    for _round in range(2):
        case = tmp_path / "case"  # as pytest's tmp_path of a test: removed, then made again
        shutil.rmtree(case, ignore_errors=True)
        case.mkdir()
        with make_workspace(case / "ws", f"sqlite:///{case / 'catalog.db'}") as archive:
            wms = WMS(archive)
            subs = []
            for i in range(4):  # more jobs than pool processes: each caches the workspace
                job = write(
                    tmp_path / f"job{i}.yaml",
                    f"""\
                    name: again{i}
                    command: ["{{PY}}", "-c", "open('out.txt','w').write('x')"]
                    outputs:
                      - {{name: out, glob: out.txt, lfn: /ctao/user/again{i}.txt}}
                """,
                )
                subs.append(wms.submit(job, opts=SubmitOptions(max_attempts=1)))
            assert [sub.id for sub in subs] == [1, 2, 3, 4]  # the same ids in both catalogs
            states += [wms.wait(sub, timeout_s=60) for sub in subs]
    assert states == ["DONE"] * 8


@pytest.mark.verifies_usecase("UC-100-2")
def test_a_job_run_again_as_the_same_attempt_does_not_meet_its_earlier_upload(
    wms: WMS, wms_archive: Archive, tmp_path: Path
) -> None:
    """A manager that stops gives its jobs back with their attempt number, and the worker it
    stopped may already have uploaded outputs. The next run of that attempt must not fail on
    those bytes ('already exists; files are immutable'): each dispatch uploads under a path of
    its own."""
    rse = wms_archive.config.workspace / "rse"
    earlier = next(p for p in rse.iterdir() if p.is_dir()) / "_wms" / "job1.a1" / "ctao"
    for site in [p for p in rse.iterdir() if p.is_dir()]:
        stray = site / "_wms" / "job1.a1" / "ctao" / "ctao" / "user" / "again.txt"
        stray.parent.mkdir(parents=True)
        stray.write_text("an earlier dispatch's upload")
    job = write(
        tmp_path / "job.yaml",
        """\
        name: again
        command: ["{PY}", "-c", "open('out.txt','w').write('x')"]
        outputs:
          - {name: out, glob: out.txt, lfn: /ctao/user/again.txt}
    """,
    )
    sub = wms.submit(job, opts=SubmitOptions(max_attempts=1))
    assert wms.wait(sub, timeout_s=TIMEOUT_S) == "DONE", wms.job(sub.id).reason
    assert earlier.is_dir()  # not the new dispatch's to remove
