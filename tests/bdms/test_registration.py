"""The one registration path (dpps.bdms.registration): prepare without the catalog, register in
the caller's session - attach, make the covering rules due once, apply a policy, events."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from dpps.bdms import registration
from dpps.bdms.archive import Archive
from dpps.bdms.records import Registration
from dpps.catalog.engine import transaction
from dpps.catalog.models import AttachmentRow, EventRow, RuleRow
from dpps.core.errors import Conflict, InvalidInput, PermissionDenied
from dpps.core.identifiers import DID
from tests.bdms.helpers import make_fits
from tests.bdms.replication_helpers import rule_row

pytestmark = pytest.mark.verifies_usecase("UC-110-1.2.1")


def test_prepare_in_place_needs_no_catalog_and_refuses_files_outside_the_rse(
    archive: Archive, tmp_path: Path
) -> None:
    rse = archive.storage("CTAO-N")
    inside = make_fits(Path(rse.resolve("ctao/dl0/x")), "a.fits")
    new = registration.prepare_in_place(
        inside, "/dl0/x/a.fits", rse, scope="ctao", rse_id=7, algorithms=["adler32"]
    )
    assert (new.name, new.rse_id, new.path) == ("/dl0/x/a.fits", 7, "ctao/dl0/x/a.fits")
    assert new.bytes == inside.stat().st_size
    assert new.meta["format"] == "fits"
    outside = make_fits(tmp_path / "elsewhere", "b.fits")
    with pytest.raises(PermissionDenied):
        registration.prepare_in_place(
            outside, "/dl0/b.fits", rse, scope="ctao", rse_id=7, algorithms=["adler32"]
        )


def test_declared_batch_is_refused_whole_on_one_bad_record(archive: Archive) -> None:
    items = [
        Registration(name="/ok/a.dat", bytes=3, adler32="00000001", rse="CTAO-N"),
        Registration(name="/ok/b.dat", bytes=3, adler32="00000002", rse="NOWHERE"),
    ]
    with archive.sessions() as session:
        ids = registration.rse_ids(session)
    with pytest.raises(InvalidInput, match=r"files\[1\].*unknown RSE"):
        registration.prepare_declared(
            items, default_scope="ctao", rse_ids=ids, storage=archive.storage
        )


def test_register_attaches_and_makes_each_covering_rule_due_once(archive: Archive) -> None:
    """Two datasets in one container, a rule on the container: one batch of files into both
    datasets counts one request for the rule (the ACADA queue counted two per batch)."""
    with transaction(archive.sessions) as session:
        cache: dict[str, int] = {}
        first, second = (
            registration.ensure_dataset(
                session,
                DID("ctao", f"/dl0/night/{run}"),
                account="t",
                tree_root="/dl0",
                cache=cache,
            )
            for run in ("run1", "run2")
        )
    rule_id = archive.add_rule("ctao:/dl0/night", copies=1, rses="PIC")
    before = rule_row(archive, rule_id).generation
    files = [
        registration.NewFile(
            scope="ctao",
            name=f"/dl0/night/run{i % 2 + 1}/f{i}.dat",
            bytes=10 + i,
            checksums={"adler32": f"0000000{i}"},
            rse_id=1,
            path=f"ctao/f{i}.dat",
        )
        for i in range(4)
    ]
    with transaction(archive.sessions) as session:
        outcomes = registration.register(
            session, files, account="t", dataset=[second, first, second, first]
        )
    assert [o.status for o in outcomes] == ["registered"] * 4
    assert rule_row(archive, rule_id).generation == before + 1
    with archive.sessions() as session:
        members = session.scalar(
            select(func.count())
            .select_from(AttachmentRow)
            .where(AttachmentRow.parent_id.in_([first, second]))
        )
        assert members == 4
        registered = session.scalar(
            select(func.count()).select_from(EventRow).where(EventRow.action == "file.register")
        )
        assert registered == 4
    # the same files again: present, already attached, no new request for the rule
    with transaction(archive.sessions) as session:
        again = registration.register(session, files, account="t", dataset=first)
    assert [o.status for o in again] == ["present"] * 4
    assert rule_row(archive, rule_id).generation == before + 2  # two of them were new to first


def test_register_applies_a_policy_to_the_files(archive: Archive) -> None:
    policy = next(iter(archive.config.policies))
    new = registration.NewFile(
        scope="ctao",
        name="/out/p.dat",
        bytes=5,
        checksums={"adler32": "00000009"},
        rse_id=1,
        path="ctao/out/p.dat",
    )
    with transaction(archive.sessions) as session:
        [outcome] = registration.register(
            session, [new], account="t", policy=policy, config=archive.config
        )
    with archive.sessions() as session:
        rules = session.scalars(select(RuleRow.policy).where(RuleRow.did_id == outcome.did_id))
        assert set(rules) == {policy}


def _new(i: int, name: str | None = None) -> registration.NewFile:
    return registration.NewFile(
        scope="ctao",
        name=name or f"/deep/a/b/run/f{i}.dat",
        bytes=10 + i,
        checksums={"adler32": f"0000000{i}"},
        rse_id=1,
        path=f"ctao/deep/f{i}.dat",
    )


def test_register_makes_a_rule_three_levels_up_due_and_leaves_others_alone(
    archive: Archive,
) -> None:
    """Whether any rule covers the datasets that grew is one query over the whole container
    tree; the bookkeeping (the walk, ``UPDATE rules``) runs only when one does."""
    with transaction(archive.sessions) as session:
        cache: dict[str, int] = {}
        deep, plain = (
            registration.ensure_dataset(
                session, DID("ctao", name), account="t", tree_root="/deep", cache=cache
            )
            for name in ("/deep/a/b/run", "/plain/run")
        )
    above = archive.add_rule("ctao:/deep/a", copies=1, rses="PIC")
    elsewhere = archive.add_rule("ctao:/plain/run", copies=1, rses="PIC")
    before = rule_row(archive, above).generation, rule_row(archive, elsewhere).generation
    with transaction(archive.sessions) as session:
        registration.register(session, [_new(0), _new(1)], account="t", dataset=deep)
    assert rule_row(archive, above).generation == before[0] + 1
    assert rule_row(archive, elsewhere).generation == before[1]
    with transaction(archive.sessions) as session:
        registration.register(session, [_new(2, "/plain/run/g.dat")], account="t", dataset=plain)
    assert rule_row(archive, above).generation == before[0] + 1
    assert rule_row(archive, elsewhere).generation == before[1] + 1


def test_register_into_a_closed_dataset_takes_back_members_only(archive: Archive) -> None:
    """A closed dataset refuses the batch that would add a file to it (nothing of the batch
    stays); the files that are members already are reported present."""
    with transaction(archive.sessions) as session:
        target = registration.ensure_dataset(session, DID("ctao", "/deep/a/b/run"), account="t")
        registration.register(session, [_new(0), _new(1)], account="t", dataset=target)
    archive.datasets.close("ctao:/deep/a/b/run")

    def count() -> int:
        with archive.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(EventRow)) or 0)

    before = count()
    with (
        pytest.raises(Conflict, match="is closed"),
        transaction(archive.sessions) as session,
    ):
        registration.register(session, [_new(0), _new(2)], account="t", dataset=target)
    assert count() == before
    assert archive.count("name like '/deep/a/b/run/f2%'") == 0
    with transaction(archive.sessions) as session:
        again = registration.register(session, [_new(1), _new(0)], account="t", dataset=target)
    assert [o.status for o in again] == ["present", "present"]
