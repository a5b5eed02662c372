"""Readable replicas, one definition for every reader, and staging requests in the caller's
transaction (``dpps.bdms.availability``: what ``dpps get`` and the WMS's matching share)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Integer, literal, select, union_all, update

from dpps.bdms import availability, resolve
from dpps.bdms.archive import Archive
from dpps.bdms.types import ReplicaSite
from dpps.catalog.engine import transaction
from dpps.catalog.models import ReplicaRow, RSERow
from dpps.core.errors import Unavailable
from tests.bdms.preservation_helpers import (
    drop_tape_only,
    ingest_files,
    open_workspace,
    put_replica,
)


@pytest.fixture
def archive(tmp_path: Path, catalog_url: str) -> Iterator[Archive]:
    with open_workspace(tmp_path, catalog_url) as arch:
        yield arch


@pytest.fixture
def files(archive: Archive, tmp_path: Path) -> dict[str, int]:
    """disk: on CTAO-N only; both: on CTAO-N and PIC-TAPE; tape: on PIC-TAPE only."""
    disk, both, tape = ingest_files(archive, tmp_path / "src", 3)
    for did in (both, tape):
        put_replica(archive, did, "PIC-TAPE")
    drop_tape_only(archive, tape)
    with archive.sessions() as s:
        return {
            k: resolve.file_ref(s, d).id
            for k, d in (("disk", disk), ("both", both), ("tape", tape))
        }


def _set_replica(archive: Archive, did_id: int, rse: str, state: str) -> None:
    with transaction(archive.sessions) as s:
        rse_id = s.scalar(select(RSERow.id).where(RSERow.name == rse))
        s.execute(
            update(ReplicaRow)
            .where(ReplicaRow.did_id == did_id, ReplicaRow.rse_id == rse_id)
            .values(state=state)
        )


def test_readable_replicas_disk_first_and_only_available(
    archive: Archive, files: dict[str, int]
) -> None:
    with archive.sessions() as s:
        both = availability.readable_replicas(s, archive.config, files["both"])
        tape = availability.readable_replicas(s, archive.config, files["tape"])
        unknown = availability.readable_replicas(s, archive.config, 999_999)
    assert [(r.rse, r.kind) for r in both] == [("CTAO-N", "disk"), ("PIC-TAPE", "tape")]
    assert both[0].estimated_seconds is not None
    assert [r.rse for r in tape] == ["PIC-TAPE"]
    assert unknown == []
    _set_replica(archive, files["both"], "CTAO-N", "BAD")
    with archive.sessions() as s:
        after = availability.readable_replicas(s, archive.config, files["both"])
    assert [r.rse for r in after] == ["PIC-TAPE"]


def test_an_unavailable_or_unconfigured_rse_is_not_readable(
    archive: Archive, files: dict[str, int]
) -> None:
    config = archive.config
    assert availability.is_readable(config, "AVAILABLE", "CTAO-N", True)
    assert not availability.is_readable(config, "BAD", "CTAO-N", True)
    assert not availability.is_readable(config, "AVAILABLE", "CTAO-N", False)
    assert not availability.is_readable(config, "AVAILABLE", "NOT-CONFIGURED", True)
    assert not availability.is_readable(config, None, None, None)  # no replica at all
    with transaction(archive.sessions) as s:
        s.execute(update(RSERow).where(RSERow.name == "CTAO-N").values(available=False))
    with archive.sessions() as s:
        assert availability.readable_replicas(s, config, files["disk"]) == []


def test_with_readable_replicas_one_statement_for_a_batch(
    archive: Archive, files: dict[str, int]
) -> None:
    pairs = [(1, files["disk"]), (1, files["tape"]), (2, files["both"]), (3, 424_242)]
    rows = union_all(
        *(
            select(literal(job, Integer).label("job"), literal(i, Integer).label("did_id"))
            for job, i in pairs
        )
    ).subquery("inputs")
    _set_replica(archive, files["disk"], "CTAO-N", "UNAVAILABLE")
    with archive.sessions() as s:
        found = availability.with_readable_replicas(
            s, archive.config, select(rows.c.job), rows.c.did_id
        )
    seen: dict[tuple[int, int], set[ReplicaSite | None]] = {}
    for (job,), ref, where in found:
        seen.setdefault((job, ref.id), set()).add(where)
    # the unknown id is left out; an unreadable replica is None, so its file is still seen
    assert seen == {
        (1, files["disk"]): {None},
        (1, files["tape"]): {ReplicaSite("PIC-TAPE", "PIC", "tape")},
        (2, files["both"]): {
            ReplicaSite("CTAO-N", "CTAO-North", "disk"),
            ReplicaSite("PIC-TAPE", "PIC", "tape"),
        },
    }


def test_request_staging_joins_the_open_request_and_staged_sees_it_ready(
    archive: Archive, files: dict[str, int]
) -> None:
    with transaction(archive.sessions) as s:
        first = availability.request_staging(
            s, archive.config, [files["tape"], 999_999], account="wms"
        )
        again = availability.request_staging(s, archive.config, [files["tape"]], account="wms")
        assert availability.request_staging(s, archive.config, [], account="wms") == []
    assert len(first) == 1
    assert again == first
    with archive.sessions() as s:
        assert availability.staged(s, [files["tape"]]) == set()
        label = resolve.file_refs(s, [files["tape"]])[files["tape"]].label
    (info,) = archive.preservation.stage([label], wait=True)  # joins ours; READY
    assert info.id == first[0]
    assert info.state == "READY"
    with archive.sessions() as s:
        assert availability.staged(s, [files["tape"], files["disk"]]) == {files["tape"]}
        assert availability.staged(s, []) == set()


def test_staging_a_file_with_no_tape_replica_is_unavailable(
    archive: Archive, files: dict[str, int]
) -> None:
    with transaction(archive.sessions) as s, pytest.raises(Unavailable, match="tape"):
        availability.request_staging(s, archive.config, [files["disk"]], account="wms")
