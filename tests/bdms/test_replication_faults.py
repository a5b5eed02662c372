"""Replication under faults: killed daemons, unreachable and full storage, competing daemons.

Each test ends with nothing lost (every AVAILABLE replica re-read and matching the catalog, no
temporary file left) and every rule OK. The daemons run as real ``dpps`` processes where the
fault is about processes (SIGKILL, several instances), in-process through ``run_once`` where
it is about storage.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import select

from dpps.bdms.archive import Archive
from dpps.catalog.models import EventRow, HeartbeatRow, ReplicaRow, RSERow, RuleRow, TransferRow
from tests.bdms.replication_helpers import (
    FAST,
    drive,
    environ,
    evaluate,
    event_count,
    ingest_dataset,
    leftovers,
    replicas,
    rule_row,
    transfer,
    tuned,
    verify_on_disk,
)

pytestmark = pytest.mark.verifies_usecase("UC-110-1.6")

DPPS = str(Path(sys.executable).with_name("dpps"))
DEADLINE_S = 180.0  # generous: other test workers load the machine


def wait_for(
    what: str,
    check: Callable[[], bool],
    timeout: float = DEADLINE_S,
    procs: Sequence[subprocess.Popen[bytes]] = (),
) -> None:
    """Poll ``check`` until true; fail at the deadline, or at once if a daemon died."""
    deadline = time.monotonic() + timeout
    while not check():
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"a daemon exited ({proc.returncode}) {_log_of(proc)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _log_of(proc: subprocess.Popen[bytes]) -> str:
    path = LOGS.get(proc.pid)
    return f"; its log:\n{path.read_text(errors='replace')}" if path else ""


LOGS: dict[int, Path] = {}


@contextmanager
def daemons(
    workspace: Path, *names: str, log_dir: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start ``dpps daemon NAME`` processes; SIGTERM them at the end (SIGKILL as a last resort),
    each by its PID."""
    procs: list[subprocess.Popen[bytes]] = []
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        for i, name in enumerate(names):
            path = log_dir / f"{name}-{i}-{uuid.uuid4().hex[:6]}.log"
            with open(path, "wb") as log:
                procs.append(
                    subprocess.Popen(
                        [DPPS, "daemon", name, "--sleep", "0.2", "--log-level", "WARNING"],
                        env=environ(workspace),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            LOGS[procs[-1].pid] = path
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def stop_cleanly(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM and expect a clean exit (the daemons stop between items / abort copies)."""
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        assert proc.wait(timeout=60) == 0, _log_of(proc)


def all_rules_ok(archive: Archive) -> bool:
    with archive.sessions() as session:
        states = session.scalars(select(RuleRow.state)).all()
    return bool(states) and set(states) == {"OK"}


def done_per_copy(archive: Archive) -> Counter[tuple[int | None, int | None]]:
    with archive.sessions() as session:
        return Counter(
            (e.did_id, e.rse_id)
            for e in session.scalars(select(EventRow).where(EventRow.action == "transfer.done"))
        )


def nothing_lost(archive: Archive, expected_available: int) -> None:
    assert verify_on_disk(archive) == expected_available
    assert leftovers(archive) == []
    with archive.sessions() as session:
        states = set(session.scalars(select(ReplicaRow.state)))
        open_transfers = session.scalars(
            select(TransferRow.id).where(TransferRow.state.in_(("QUEUED", "ACTIVE")))
        ).all()
    assert states == {"AVAILABLE"}
    assert open_transfers == []


def test_sigkill_mid_copy_of_large_files_then_restart(archive: Archive, tmp_path: Path) -> None:
    arch = tuned(
        archive,
        {**FAST, "transfers": {**FAST["transfers"], "threads": 2, "lease_s": 3.0, "max_mb_s": 20}},
    )
    ingest_dataset(arch, tmp_path / "in", 4, size=24_000_000)
    rule_id = arch.add_rule("/ctao/dl0/run1", copies=1, rses="PIC")
    evaluate(arch)
    pic = Path(arch.storage("PIC").root)
    with daemons(arch.config.workspace, "transfer", log_dir=tmp_path / "logs") as [proc]:
        wait_for("a copy under way", lambda: any(pic.rglob(".*.part-*")), procs=[proc])
        proc.kill()  # SIGKILL: no cleanup of any kind
        proc.wait()
    assert leftovers(arch)  # debris of the killed copies ...
    with arch.sessions() as session:
        active = session.scalars(select(TransferRow).where(TransferRow.state == "ACTIVE")).all()
        assert active  # ... claimed transfers whose owner is gone ...
        copying = session.scalars(select(ReplicaRow).where(ReplicaRow.state == "COPYING")).all()
        assert copying  # ... and replicas that are not AVAILABLE
    assert rule_row(arch, rule_id).state == "REPLICATING"
    restarted = tuned(arch, {"transfers": {"max_mb_s": 0.0}})
    with daemons(arch.config.workspace, "transfer", log_dir=tmp_path / "logs") as procs:
        wait_for("the rule to be OK", lambda: all_rules_ok(restarted), procs=procs)
        stop_cleanly(procs)
    nothing_lost(restarted, expected_available=8)
    assert set(done_per_copy(restarted).values()) == {1}  # each copy finished exactly once
    assert event_count(restarted, "transfer.done") == 4


@pytest.mark.parametrize("which", ["destination", "source"])
def test_an_unreachable_rse_makes_rules_stuck_with_the_reason_then_they_recover(
    archive: Archive, tmp_path: Path, which: str
) -> None:
    arch = tuned(archive, {**FAST, "transfers": {**FAST["transfers"], "max_attempts": 2}})
    ingest_dataset(arch, tmp_path / "in", 3)
    rule_id = arch.add_rule("/ctao/dl0/run1", copies=1, rses="PIC")
    name = "PIC" if which == "destination" else "CTAO-N"
    root = Path(arch.storage(name).root)
    away = root.with_name(f"{name}.away")
    root.rename(away)
    root.write_text("not a directory: the storage is unreachable")
    evaluate(arch)
    transfer(arch)  # first attempts fail, immediate retry (no backoff in tests) fails too
    transfer(arch)
    rule = rule_row(arch, rule_id)
    assert rule.state == "STUCK"
    assert "failed" in (rule.error or "")
    assert f"RSE {name}" in (rule.error or "")
    drive(arch, rounds=2)  # still down: re-evaluated, retried, stuck again
    assert rule_row(arch, rule_id).state == "STUCK"
    root.unlink()
    away.rename(root)
    drive(arch)
    assert rule_row(arch, rule_id).state == "OK"
    assert rule_row(arch, rule_id).error is None
    nothing_lost(arch, expected_available=6)
    assert all(held == {"CTAO-N", "PIC"} for held in replicas(arch, state=None).values())


def test_two_transfer_daemons_and_two_evaluators_never_do_a_transfer_twice(
    archive: Archive, tmp_path: Path
) -> None:
    arch = tuned(archive)
    for i, dataset in enumerate(("/ctao/dl0/a", "/ctao/dl0/b", "/ctao/dl0/c")):
        ingest_dataset(arch, tmp_path / f"in{i}", 10, dataset=dataset, seed=i)

    def live() -> list[str]:
        with arch.sessions() as session:
            return sorted(session.scalars(select(HeartbeatRow.daemon)))

    names = ("evaluator", "transfer", "evaluator", "transfer")
    with daemons(arch.config.workspace, *names, log_dir=tmp_path / "logs") as procs:
        # all four running before there is any work
        wait_for("four daemons", lambda: len(live()) == 4, procs=procs)
        assert live() == ["evaluator", "evaluator", "transfer", "transfer"]
        arch.add_rule("/ctao/dl0/a", copies=2, rses="offsite&type=disk")
        arch.apply_policy("/ctao/dl0/b", "acada")
        arch.add_rule("/ctao/dl0/c", copies=1, rses="PIC")
        arch.add_rule("/ctao/dl0/c", copies=1, rses="PIC|CSCS")  # shares the PIC transfers
        wait_for("every rule to be OK", lambda: all_rules_ok(arch), procs=procs)
        assert len(live()) == 4
        stop_cleanly(procs)
    nothing_lost(arch, expected_available=30 + 20 + 20 + 10)
    done = done_per_copy(arch)
    assert len(done) == 20 + 20 + 10
    assert set(done.values()) == {1}  # no copy was made twice ...
    with arch.sessions() as session:
        started = Counter(
            (e.did_id, e.rse_id)
            for e in session.scalars(select(EventRow).where(EventRow.action == "replica.copying"))
        )
        finished = Counter(
            (t.did_id, t.dest_rse_id)
            for t in session.scalars(select(TransferRow).where(TransferRow.state == "DONE"))
        )
    assert started == done  # ... nor even started twice
    assert set(finished.values()) == {1}


def _mount_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    path.mkdir(parents=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def test_a_destination_that_fills_up_loses_nothing_and_the_copy_goes_elsewhere(
    archive: Archive, tmp_path: Path
) -> None:
    small = tmp_path / "small"
    if not _mount_tmpfs(small, "1m"):
        pytest.skip("cannot mount a small tmpfs here (needs root and mount permission)")
    try:
        arch = tuned(
            archive,
            {
                **FAST,
                "transfers": {**FAST["transfers"], "max_attempts": 2},
                "sites": {"SMALLDC": {}, "BIGDC": {}},
                "rses": {
                    "SMALL": {
                        "url": str(small / "rse"),
                        "site": "SMALLDC",
                        "attributes": {"p": 1},
                    },
                    "BIG": {"url": "rse/BIG", "site": "BIGDC", "attributes": {"p": 1}},
                },
            },
        )
        ingest_dataset(arch, tmp_path / "in", 8, size=300_000)
        rule_id = arch.add_rule("/ctao/dl0/run1", copies=1, rses="p=1")
        evaluate(arch)
        with arch.sessions() as session:
            targets = Counter(
                session.scalars(
                    select(RSERow.name).join(TransferRow, TransferRow.dest_rse_id == RSERow.id)
                )
            )
        assert targets == {"SMALL": 4, "BIG": 4}  # 4 x 300 kB do not fit in 1 MiB
        drive(arch, rounds=20)
        assert rule_row(arch, rule_id).state == "OK"
        with arch.sessions() as session:
            failed = session.scalars(
                select(EventRow.reason).where(EventRow.action == "transfer.failed")
            ).all()
        assert failed
        assert all("No space left on device" in (r or "") for r in failed)
        held = replicas(arch)
        assert all(len(rses & {"SMALL", "BIG"}) == 1 for rses in held.values())
        on_small = [p for p in (small / "rse").rglob("*") if p.is_file()]
        assert 0 < len(on_small) <= 3
        assert not [p for p in on_small if ".part-" in p.name]  # partial copies removed
        nothing_lost(arch, expected_available=16)
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_serve_runs_the_daemons_and_stops_on_sigterm(archive: Archive, tmp_path: Path) -> None:
    arch = tuned(archive)
    ingest_dataset(arch, tmp_path / "in", 3)
    rule_id = arch.add_rule("/ctao/dl0/run1", copies=2, rses="offsite&type=disk")
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [DPPS, "serve", "--no-api", "--sleep", "0.2", "--log-level", "WARNING"],
            env=environ(arch.config.workspace),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    LOGS[proc.pid] = log
    try:
        try:
            wait_for("the rule to be OK", lambda: rule_row(arch, rule_id).state == "OK")
        except AssertionError as exc:
            raise AssertionError(f"{exc} {_log_of(proc)}") from None
        with arch.sessions() as session:
            live = set(session.scalars(select(HeartbeatRow.daemon)))
        assert {"evaluator", "transfer"} <= live
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with arch.sessions() as session:
        assert session.scalars(select(HeartbeatRow)).all() == []  # each said goodbye
    nothing_lost(arch, expected_available=9)
