"""Files listings read from columns, not ORM rows (issue 13): for each filter shape of
benchmarks/bench_catalog_scale.py, and for versions, datasets, orders and pages, the same
``FileInfo``s as the ORM rows gave, on both catalogs; a page and its total agree, past the end
too."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import update

from dpps.bdms.archive import Archive, file_info
from dpps.bdms.types import FileInfo, PageRequest
from dpps.catalog.dids import NewFile
from dpps.catalog.engine import transaction
from dpps.catalog.models import DIDRow
from dpps.catalog.query import select_dids
from dpps.core.errors import InvalidInput, NotFound

BY_METADATA = pytest.mark.verifies_usecase("UC-110-1.2.2")
NIGHT = dt.date(2026, 1, 1)
STREAMS = ("SHOWER", "CAL", "MUON")

#: bench_catalog_scale's SHAPES, with values of the catalog below.
SHAPES = [
    "obs_id>=1 and obs_id<3 and data_level=DL0",
    "observing_night=2026-01-01",
    "data_level=DL1 and tel_id=2",
    "name like /ctao/north/dl0/2026/01/01/obs_00000001/TEL0%",
    "observing_night=2026-01-02 and tel_id=1 and meta.datadiv=CAL",
]


def _obs_dir(obs: int, level: str) -> str:
    night = NIGHT + dt.timedelta(days=(obs - 1) // 2)
    site = "north" if obs % 2 else "south"
    return f"/ctao/{site}/{level.lower()}/{night:%Y/%m/%d}/obs_{obs:08d}"


def _files(archive: Archive) -> list[NewFile]:
    """Four observations over two nights, three telescopes: DL0 per stream and chunk, DL1 per
    telescope, with the observatory's columns and ``meta`` keys (the benchmark's, smaller)."""
    rse = archive.rse_id("CTAO-N")
    out = []
    for obs in range(1, 5):
        night = NIGHT + dt.timedelta(days=(obs - 1) // 2)
        start = dt.datetime(night.year, night.month, night.day, 21, obs)
        for tel in range(1, 4):
            leaves: list[tuple[str, str, dict[str, Any]]] = [
                (
                    "DL0",
                    f"TEL{tel:03d}_OBSID{obs:010d}_TEL_{stream}_CHUNK{chunk:03d}.fits.fz",
                    {"datadiv": stream, "chunk_id": chunk, "sb_id": obs // 2},
                )
                for stream in STREAMS
                for chunk in range(2)
            ]
            leaves.append(("DL1", f"TEL{tel:03d}_OBSID{obs:010d}_DL1.h5", {"format": "hdf5"}))
            for level, leaf, meta in leaves:
                name = f"{_obs_dir(obs, level)}/{leaf}"
                out.append(
                    NewFile(
                        "ctao",
                        name,
                        1000 + len(out),
                        {"adler32": f"{len(out):08x}"},
                        rse,
                        f"ctao{name}",
                        {
                            "data_level": level,
                            "category": "A",
                            "obs_id": obs,
                            "tel_id": tel,
                            "observing_night": night,
                            "time_start": start,
                            "time_end": start + dt.timedelta(minutes=20),
                            "product_type": "EVENTS" if level == "DL0" else "DL1_IMAGES",
                        },
                        meta,
                    )
                )
    return out


@pytest.fixture
def catalog(archive: Archive) -> Archive:
    """The files above; one of them in a second version, one deleted, a dataset of some."""
    files = _files(archive)
    assert {o.status for o in archive.register(files)} == {"registered"}
    newer = replace(files[0], bytes=7, checksums={"adler32": "0000000f"}, new_version=True)
    assert archive.register([newer])[0].version == 2
    archive.datasets.add_dataset("/ctao/sets/cal")
    archive.datasets.attach("/ctao/sets/cal", [f.name for f in files[:7]])
    with transaction(archive.sessions) as session:  # deleted once attached (rows stay)
        session.execute(
            update(DIDRow)
            .where(DIDRow.name == files[1].name)
            .values(deleted_at=dt.datetime(2026, 2, 1))
        )
    return archive


def _before(archive: Archive, text: str, **options: Any) -> list[FileInfo]:
    """What ``list_files`` returned when it built ORM rows (``file_info`` of each)."""
    with archive.sessions() as session:
        return [file_info(row) for row in session.scalars(select_dids(text, **options))]


@BY_METADATA
@pytest.mark.parametrize("text", SHAPES)
def test_each_benchmark_shape_lists_the_same_files(catalog: Archive, text: str) -> None:
    before = _before(catalog, text, limit=100)
    assert before, "the shape must match files here, or the comparison proves nothing"
    assert catalog.list_files(text, limit=100) == before
    assert catalog.list_files(text, limit=3, offset=2) == before[2:5]
    page = catalog.views.files(text, PageRequest(offset=1, limit=4))
    assert (page.items, page.total) == (before[1:5], len(before))


@BY_METADATA
def test_versions_types_datasets_and_orders_list_as_before(catalog: Archive) -> None:
    name = "name like /ctao/north/dl0/2026/01/01/obs_00000001/%"
    versions = catalog.list_files(name, all_versions=True)
    assert versions == _before(catalog, name, include_all_versions=True)
    first = f"{_obs_dir(1, 'DL0')}/TEL001_OBSID0000000001_TEL_SHOWER_CHUNK000.fits.fz"
    twice = [f for f in versions if f.name == first]  # the file registered again
    assert [(f.version, f.did[-3:], f.bytes) for f in twice] == [(1, "@v1", 1000), (2, ".fz", 7)]
    assert len(versions) == len(catalog.list_files(name)) + 1  # and the deleted one is out
    everything = catalog.list_files("", did_type=None, limit=None)
    assert everything == _before(catalog, "", did_type=None, limit=None)
    [dataset] = [f for f in everything if f.did_type == "DATASET"]
    assert dataset.is_open is True  # files carry None, collections their state
    assert all(f.is_open is None for f in everything if f.did_type == "FILE")
    members = catalog.list_files("", dataset="/ctao/sets/cal")
    assert [f.name for f in members] == sorted(f.name for f in members)
    assert len(members) == 6  # seven attached, one of them deleted
    newest = catalog.views.files("data_level=DL1", order_by="-obs_id").items
    assert newest == _before(catalog, "data_level=DL1", order_by="-obs_id", limit=100)


def test_pages_and_totals_agree_to_the_end_and_past_it(catalog: Archive) -> None:
    text = "data_level=DL0"
    every = _before(catalog, text, limit=None)
    last = catalog.views.files(text, PageRequest(offset=len(every) - 2, limit=10))
    assert (last.items, last.total) == (every[-2:], len(every))
    past = catalog.views.files(text, PageRequest(offset=len(every) + 5, limit=10))
    assert (past.items, past.total) == ([], len(every))  # counted again: no row carried it
    none = catalog.views.files("tel_id=99")
    assert (none.items, none.total) == ([], 0)


def test_bad_listing_input_is_refused(catalog: Archive) -> None:
    with pytest.raises(InvalidInput, match="cannot order by 'colour'"):
        catalog.views.files("", order_by="colour")
    with pytest.raises(InvalidInput):
        catalog.list_files("obs_id >>= 3")
    with pytest.raises(NotFound):
        catalog.list_files("", dataset="/ctao/sets/none")
