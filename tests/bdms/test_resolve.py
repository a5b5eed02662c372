"""Archive files by identifier and by filter for callers in their own transaction
(``dpps.bdms.resolve``: what the WMS binds job inputs and feeds transformations with)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import ColumnElement, Integer, String, exists, literal, select, union_all

from dpps.bdms import resolve
from dpps.bdms.archive import Archive
from dpps.bdms.types import FileRef
from dpps.catalog.models import EventRow
from dpps.core.errors import InvalidInput, NotFound
from dpps.core.identifiers import DID
from tests.bdms.preservation_helpers import ingest_files, open_workspace


@pytest.fixture
def archive(tmp_path: Path, catalog_url: str) -> Iterator[Archive]:
    with open_workspace(tmp_path, catalog_url) as arch:
        yield arch


@pytest.fixture
def dids(archive: Archive, tmp_path: Path) -> list[str]:
    """Three files of obs_id 1, tel_id 0..2, in dataset /ctao/dl0/run1."""
    return ingest_files(archive, tmp_path / "src", 3)


def _id(archive: Archive, did: str) -> int:
    with archive.sessions() as s:
        return resolve.file_ref(s, did).id


def test_a_did_resolves_to_its_file_record(archive: Archive, dids: list[str]) -> None:
    with archive.sessions() as s:
        ref = resolve.file_ref(s, dids[0])
        bare = resolve.file_ref(s, "/ctao/dl0/run1/tel_000.fits", default_scope="ctao")
        typed = resolve.file_ref(s, DID("ctao", "/ctao/dl0/run1/tel_000.fits", 1))
    assert isinstance(ref, FileRef)
    assert ref == bare == typed
    assert (ref.scope, ref.name, ref.version, ref.is_latest) == (
        "ctao",
        "/ctao/dl0/run1/tel_000.fits",
        1,
        True,
    )
    assert ref.bytes is not None
    assert ref.bytes > 0
    assert ref.label == dids[0]


@pytest.mark.parametrize(
    "text",
    [
        "ctao:/ctao/dl0/run1/nothing.fits",  # no such name
        "ctao:/ctao/dl0/run1/tel_000.fits@v2",  # no such version
        "sim:/ctao/dl0/run1/tel_000.fits",  # another scope
        "ctao:/ctao/dl0/run1",  # a dataset, not a file
    ],
)
def test_an_unknown_file_is_not_found(archive: Archive, dids: list[str], text: str) -> None:
    with archive.sessions() as s, pytest.raises(NotFound):
        resolve.file_ref(s, text)


@pytest.mark.parametrize(
    "text",
    [
        "/ctao/x.fits",  # no scope and no default
        "ctao:relative/x.fits",  # an LFN starts with /
        "ctao:/a//b.fits",  # empty component
        "ctao:/a/../b.fits",  # parent reference
        "ctao:/a b.fits",  # a space
        "BAD SCOPE:/x.fits",
    ],
)
def test_a_malformed_did_is_refused_before_any_lookup(
    archive: Archive, dids: list[str], text: str
) -> None:
    with archive.sessions() as s, pytest.raises(InvalidInput):
        resolve.file_ref(s, text)


def test_file_refs_by_id_leave_unknown_ids_out(archive: Archive, dids: list[str]) -> None:
    ids = [_id(archive, d) for d in dids]
    with archive.sessions() as s:
        found = resolve.file_refs(s, [ids[2], 999_999, ids[0], ids[0]])
        assert resolve.file_refs(s, []) == {}
    assert sorted(found) == sorted([ids[0], ids[2]])
    assert found[ids[2]].label == dids[2]


def _wanted(pairs: list[tuple[int, str]]) -> tuple[ColumnElement[str], ColumnElement[int]]:
    """A caller's own rows (tag, did_id), as a table of literals."""
    rows = union_all(
        *(
            select(literal(tag, String).label("tag"), literal(i, Integer).label("did_id"))
            for i, tag in pairs
        )
    ).subquery("wanted")
    return rows.c.tag, rows.c.did_id


def test_with_files_keeps_the_callers_rows_and_order(archive: Archive, dids: list[str]) -> None:
    ids = [_id(archive, d) for d in dids]
    tag, did_id = _wanted([(ids[1], "b"), (ids[0], "c"), (424_242, "a"), (ids[2], "d")])
    with archive.sessions() as s:
        by_tag = resolve.with_files(s, select(tag).order_by(tag.desc()), did_id)
        by_name = resolve.with_files(s, select(tag), did_id, order_by_name=True)
    # the unknown id (tag "a") is left out, as an inner join does
    assert [(row, ref.label) for row, ref in by_tag] == [
        (("d",), dids[2]),
        (("c",), dids[0]),
        (("b",), dids[1]),
    ]
    assert [row for row, _ref in by_name] == [("c",), ("b",), ("d",)]


def test_matching_files_by_filter_with_fields_and_limit(archive: Archive, dids: list[str]) -> None:
    ids = [_id(archive, d) for d in dids]
    with archive.sessions() as s:
        every = resolve.matching_files(s, "obs_id=1", limit=10)
        two = resolve.matching_files(s, "obs_id=1", limit=2)
        keyed = resolve.matching_files(
            s, "tel_id>=1", fields=("tel_id", "meta.nothing", "data_level"), limit=10
        )
        none = resolve.matching_files(s, "obs_id=2", limit=10)
    assert [f.id for f in every] == ids  # oldest first, files only (not the dataset)
    assert all(f.values == () for f in every)
    assert [f.id for f in two] == ids[:2]
    assert [f.values for f in keyed] == [(1, None, "DL0"), (2, None, "DL0")]
    assert none == []


def test_matching_files_leaves_out_a_second_filter_and_the_callers_own(
    archive: Archive, dids: list[str]
) -> None:
    ids = [_id(archive, d) for d in dids]

    def recorded(did_id: resolve.IdColumn) -> ColumnElement[bool]:
        # the caller's condition on its own table: here "has an ingest event", true of all
        return exists().where(EventRow.did_id == did_id, EventRow.action == "nothing.such")

    def ingested(did_id: resolve.IdColumn) -> ColumnElement[bool]:
        return exists().where(EventRow.did_id == did_id)

    with archive.sessions() as s:
        not_tel_0 = resolve.matching_files(s, "obs_id=1", excluding="tel_id=0", limit=10)
        # a meta key no file has is NULL in SQL: it excludes nothing
        unknown_key = resolve.matching_files(s, "obs_id=1", excluding='meta.x="y"', limit=10)
        kept = resolve.matching_files(s, "obs_id=1", unless=recorded, limit=10)
        dropped = resolve.matching_files(s, "obs_id=1", unless=ingested, limit=10)
    assert [f.id for f in not_tel_0] == ids[1:]
    assert [f.id for f in unknown_key] == ids
    assert [f.id for f in kept] == ids
    assert dropped == []


@pytest.mark.parametrize("text", ["obs_id=", "nosuchfield=1", "obs_id=one", "(tel_id=1"])
def test_a_bad_filter_is_refused(archive: Archive, text: str) -> None:
    with pytest.raises(InvalidInput):
        resolve.check_filter(text)
    with archive.sessions() as s, pytest.raises(InvalidInput):
        resolve.matching_files(s, text, limit=1)


def test_fields_are_checked(archive: Archive) -> None:
    assert resolve.is_field("obs_id")
    assert resolve.is_field("meta.site")
    assert not resolve.is_field("nosuchfield")
    with archive.sessions() as s, pytest.raises(InvalidInput, match="nosuchfield"):
        resolve.matching_files(s, "obs_id=1", fields=("nosuchfield",), limit=1)
