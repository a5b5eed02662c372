"""The rule evaluator: locks, transfers, destination choice and rule states (UC-110-1.6)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select, update

from dpps.bdms.archive import Archive
from dpps.bdms.replication.placement import distance_km
from dpps.catalog import attachments as attachment_repo
from dpps.catalog import dids as did_repo
from dpps.catalog.engine import transaction
from dpps.catalog.models import DIDRow, ReplicaRow, RSERow, RuleRow, TransferRow
from dpps.catalog.replication import bump_rules
from dpps.core.states import DIDType
from tests.bdms.replication_helpers import (
    FAST,
    drive,
    evaluate,
    ingest_dataset,
    locks,
    replicas,
    rule_row,
    transfer,
    tuned,
    verify_on_disk,
)

pytestmark = pytest.mark.verifies_usecase("UC-110-1.6")

OFFSITE_DISK = {"CSCS", "DESY", "FRASCATI", "PIC"}


def _queued(archive: Archive) -> list[tuple[str, str, int | None]]:
    """(file name, destination RSE, rule id) of every open transfer."""
    with archive.sessions() as session:
        return [
            (name, rse, rule_id)
            for name, rse, rule_id in session.execute(
                select(DIDRow.name, RSERow.name, TransferRow.rule_id)
                .join(DIDRow, DIDRow.id == TransferRow.did_id)
                .join(RSERow, RSERow.id == TransferRow.dest_rse_id)
                .where(TransferRow.state.in_(("QUEUED", "ACTIVE")))
            )
        ]


def _set_available(archive: Archive, rse: str, available: bool) -> None:
    with transaction(archive.sessions) as session:
        session.execute(update(RSERow).where(RSERow.name == rse).values(available=available))


def test_rule_on_a_dataset_queues_copies_on_distinct_sites_evenly(
    archive: Archive, tmp_path: Path
) -> None:
    arch = tuned(archive, {**FAST, "rules": {"chunk_size": 5}})  # several chunks
    ingest_dataset(arch, tmp_path / "in", 12)
    rule_id = arch.add_rule("/ctao/dl0/run1", copies=2, rses="offsite&type=disk")
    assert evaluate(arch) == 1
    assert rule_row(arch, rule_id).state == "REPLICATING"
    queued = _queued(arch)
    assert len(queued) == 24
    per_file: dict[str, set[str]] = {}
    for name, rse, rid in queued:
        assert rid == rule_id
        per_file.setdefault(name, set()).add(rse)
    assert all(len(rses) == 2 and rses <= OFFSITE_DISK for rses in per_file.values())
    assert Counter(rse for _, rse, _ in queued) == dict.fromkeys(OFFSITE_DISK, 6)  # balanced
    assert locks(arch, rule_id) == {"REPLICATING": 24}
    # evaluating again changes nothing: the open transfers count toward the copies
    with transaction(arch.sessions) as session:
        bump_rules(session, [rule_row(arch, rule_id).did_id])
    assert evaluate(arch) == 1
    assert sorted(_queued(arch)) == sorted(queued)
    assert evaluate(arch) == 0  # not due any more


def test_a_satisfied_rule_is_ok_at_once_and_locks_what_it_counts(
    archive: Archive, tmp_path: Path
) -> None:
    ingest_dataset(archive, tmp_path / "in", 3)
    first = archive.add_rule("/ctao/dl0/run1", copies=1, rses="CTAO-N")
    second = archive.add_rule("/ctao/dl0/run1", copies=1, rses="onsite")
    assert evaluate(archive) == 2
    assert rule_row(archive, first).state == "OK"
    assert rule_row(archive, second).state == "OK"
    assert rule_row(archive, first).next_evaluation_at is None
    assert _queued(archive) == []
    assert locks(archive, first) == {"OK": 3}
    with archive.sessions() as session:
        assert set(session.scalars(select(ReplicaRow.lock_count))) == {2}
    archive.replication.delete_rule(first, reason="test")
    with archive.sessions() as session:
        assert set(session.scalars(select(ReplicaRow.lock_count))) == {1}


def test_too_few_usable_rses_is_stuck_with_the_reason_and_recovers(
    archive: Archive, tmp_path: Path
) -> None:
    arch = tuned(archive)
    ingest_dataset(arch, tmp_path / "in", 4)
    _set_available(arch, "CSCS", False)
    rule_id = arch.add_rule("/ctao/dl0/run1", copies=2, rses="PIC|CSCS")
    evaluate(arch)
    row = rule_row(arch, rule_id)
    assert row.state == "STUCK"
    assert row.error is not None
    assert "only 1 of 2 copies possible" in row.error
    assert "'PIC|CSCS'" in row.error
    assert {rse for _, rse, _ in _queued(arch)} == {"PIC"}  # what can be done is done
    _set_available(arch, "CSCS", True)
    drive(arch)
    assert rule_row(arch, rule_id).state == "OK"
    assert rule_row(arch, rule_id).error is None
    assert all(rses >= {"PIC", "CSCS"} for rses in replicas(arch).values())


def test_no_replica_on_the_source_rses_is_stuck(archive: Archive, tmp_path: Path) -> None:
    ingest_dataset(archive, tmp_path / "in", 2)
    rule_id = archive.add_rule("/ctao/dl0/run1", copies=1, rses="PIC", source="CTAO-S")
    evaluate(archive)
    row = rule_row(archive, rule_id)
    assert row.state == "STUCK"
    assert "no AVAILABLE replica on a source RSE ('CTAO-S')" in (row.error or "")
    assert _queued(archive) == []
    assert row.next_evaluation_at is not None  # looked at again later


def test_acada_policy_tape_copy_waits_for_the_offsite_disk_copy(
    archive: Archive, tmp_path: Path
) -> None:
    arch = tuned(archive)
    ingest_dataset(arch, tmp_path / "in", 6)
    disk_rule, tape_rule = arch.apply_policy("/ctao/dl0/run1", "acada")
    evaluate(arch)
    assert rule_row(arch, disk_rule).state == "REPLICATING"
    assert rule_row(arch, tape_rule).state == "REPLICATING"  # waiting, not stuck
    drive(arch)
    assert rule_row(arch, disk_rule).state == "OK"
    assert rule_row(arch, tape_rule).state == "OK"
    rses = arch.config.rses
    for name, held in replicas(arch).items():
        disk = [r for r in held if r in OFFSITE_DISK]
        tape = [r for r in held if r in ("DESY-TAPE", "PIC-TAPE")]
        assert (len(disk), len(tape)) == (1, 1), (name, held)
        assert rses[disk[0]].site != rses[tape[0]].site  # two data centers, not one
    with arch.sessions() as session:
        sources = session.execute(
            select(RSERow.name)
            .join(TransferRow, TransferRow.source_rse_id == RSERow.id)
            .join(RuleRow, RuleRow.id == TransferRow.rule_id)
            .where(RuleRow.id == tape_rule, TransferRow.state == "DONE")
        ).scalars()
        assert set(sources) <= OFFSITE_DISK  # the site link carried each file once
    assert verify_on_disk(arch) == 18


def test_two_rules_share_one_open_transfer(archive: Archive, tmp_path: Path) -> None:
    ingest_dataset(archive, tmp_path / "in", 3)
    first = archive.add_rule("/ctao/dl0/run1", copies=1, rses="PIC")
    evaluate(archive)
    second = archive.add_rule("/ctao/dl0/run1", copies=1, rses="PIC|CSCS")
    evaluate(archive)
    assert len(_queued(archive)) == 3  # the second rule counts the first one's transfers
    assert locks(archive, second) == {"REPLICATING": 3}
    transfer(archive)
    assert rule_row(archive, first).state == "OK"
    assert rule_row(archive, second).state == "OK"
    assert all(rses == {"CTAO-N", "PIC"} for rses in replicas(archive).values())


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_a_bad_replica_does_not_count_and_is_repaired_from_a_good_copy(
    archive: Archive, tmp_path: Path, damage: str
) -> None:
    arch = tuned(archive)
    dids = ingest_dataset(arch, tmp_path / "in", 3)
    rule_id = arch.add_rule("/ctao/dl0/run1", copies=1, rses="PIC")
    drive(arch)
    assert rule_row(arch, rule_id).state == "OK"
    victim = arch.show(dids[1]).file
    pic = arch.storage("PIC")
    path = pic.resolve(f"{victim.scope}{victim.name}")
    if damage == "corrupt":
        data = bytearray(Path(path).read_bytes())
        data[100] ^= 0xFF
        Path(path).write_bytes(bytes(data))
    else:
        Path(path).unlink()
    with transaction(arch.sessions) as session:  # what the auditor does when it finds it
        did_id = session.scalars(select(DIDRow.id).where(DIDRow.name == victim.name)).one()
        pic_id = session.scalars(select(RSERow.id).where(RSERow.name == "PIC")).one()
        session.execute(
            update(ReplicaRow)
            .where(ReplicaRow.did_id == did_id, ReplicaRow.rse_id == pic_id)
            .values(state="BAD")
        )
        assert bump_rules(session, [did_id]) == 1
    evaluate(arch)
    assert rule_row(arch, rule_id).state == "REPLICATING"
    assert [(n, r) for n, r, _ in _queued(arch)] == [(victim.name, "PIC")]  # repair in place
    drive(arch)
    assert rule_row(arch, rule_id).state == "OK"
    assert verify_on_disk(arch) == 6


def test_files_attached_later_are_covered(archive: Archive, tmp_path: Path) -> None:
    arch = tuned(archive)
    ingest_dataset(arch, tmp_path / "in", 2)
    rule_id = arch.add_rule("/ctao/dl0/run1", copies=1, rses="FRASCATI")
    drive(arch)
    assert rule_row(arch, rule_id).state == "OK"
    assert rule_row(arch, rule_id).next_evaluation_at is None
    ingest_dataset(arch, tmp_path / "more", 3, seed=1)  # attached to the same dataset
    assert rule_row(arch, rule_id).next_evaluation_at is not None  # due again
    drive(arch)
    assert rule_row(arch, rule_id).state == "OK"
    assert locks(arch, rule_id) == {"OK": 5}
    assert sum("FRASCATI" in r for r in replicas(arch).values()) == 5


def test_suspended_rules_are_left_alone(archive: Archive, tmp_path: Path) -> None:
    ingest_dataset(archive, tmp_path / "in", 2)
    rule_id = archive.add_rule("/ctao/dl0/run1", copies=1, rses="PIC")
    with transaction(archive.sessions) as session:
        session.execute(update(RuleRow).where(RuleRow.id == rule_id).values(state="SUSPENDED"))
    assert evaluate(archive) == 0
    assert _queued(archive) == []
    assert rule_row(archive, rule_id).state == "SUSPENDED"


def test_copies_prefer_sites_far_apart(archive: Archive, tmp_path: Path) -> None:
    """Two sites 111 km apart and one far away: a file's two copies are never on both
    near ones, whatever the load."""
    arch = tuned(
        archive,
        {
            **FAST,
            "sites": {
                "NEAR1": {"latitude": 45.0, "longitude": 7.0},
                "NEAR2": {"latitude": 46.0, "longitude": 7.0},
                "FAR": {"latitude": 60.0, "longitude": 25.0},
            },
            "rses": {
                name: {"url": f"rse/{name}", "site": name, "attributes": {"pool": "x"}}
                for name in ("NEAR1", "NEAR2", "FAR")
            },
        },
    )
    assert distance_km((45.0, 7.0), (46.0, 7.0)) < 300 < distance_km((45.0, 7.0), (60.0, 25.0))
    ingest_dataset(arch, tmp_path / "in", 8)
    rule_id = arch.add_rule("/ctao/dl0/run1", copies=2, rses="pool=x")
    evaluate(arch)
    per_file: dict[str, set[str]] = {}
    for name, rse, _ in _queued(arch):
        per_file.setdefault(name, set()).add(rse)
    assert len(per_file) == 8
    assert all(len(r) == 2 and "FAR" in r for r in per_file.values())
    drive(arch)
    assert rule_row(arch, rule_id).state == "OK"


def test_a_rule_stuck_for_want_of_a_source_is_looked_at_soon_after_one_appears(
    archive: Archive, tmp_path: Path
) -> None:
    ingest_dataset(archive, tmp_path / "in", 2)
    tape = archive.add_rule(
        "/ctao/dl0/run1", copies=1, rses="offsite&tape", source="offsite", priority=5
    )
    disk = archive.add_rule("/ctao/dl0/run1", copies=1, rses="offsite&disk", priority=1)
    evaluate(archive)  # the tape rule first (priority): no off-site copy exists yet
    assert rule_row(archive, tape).state == "STUCK"
    retry_at = rule_row(archive, tape).next_evaluation_at
    assert retry_at is not None
    transfer(archive)
    assert rule_row(archive, disk).state == "OK"
    soon = rule_row(archive, tape).next_evaluation_at
    assert soon is not None
    assert soon < retry_at - dt.timedelta(seconds=300)  # not stuck_retry_s (600 s) later


def test_a_rule_on_a_container_covers_its_datasets_files_attached_later(
    archive: Archive, tmp_path: Path
) -> None:
    arch = tuned(archive)
    ingest_dataset(arch, tmp_path / "in", 2)
    with transaction(arch.sessions) as session:
        container = attachment_repo.get_or_create_collection(
            session, "ctao", "/ctao/dl0", DIDType.CONTAINER, account="test"
        )
        dataset = did_repo.get_did(session, arch.did("/ctao/dl0/run1"))
        attachment_repo.attach(session, container.id, [dataset.id])
    rule_id = arch.add_rule("/ctao/dl0", copies=1, rses="CSCS")
    drive(arch)
    assert locks(arch, rule_id) == {"OK": 2}
    assert rule_row(arch, rule_id).next_evaluation_at is None
    ingest_dataset(arch, tmp_path / "more", 2, seed=7)  # into the dataset, not the container
    assert rule_row(arch, rule_id).next_evaluation_at is not None
    drive(arch)
    assert rule_row(arch, rule_id).state == "OK"
    assert locks(arch, rule_id) == {"OK": 4}
