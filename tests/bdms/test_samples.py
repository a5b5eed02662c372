"""Sample products: the demo and the tests depend on them being real, laid out like a site's
archive, and byte-for-byte reproducible."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from astropy.io import fits

from dpps.bdms.metadata import extract_metadata
from dpps.bdms.samples import (
    corrupt_bytes,
    generate_sample_night,
    truncate,
    write_fits_product,
)

NIGHT = dt.date(2026, 11, 21)


def test_sample_night_layout(tmp_path: Path) -> None:
    paths = generate_sample_night(tmp_path)
    assert paths == sorted(paths)
    rel = [p.relative_to(tmp_path).as_posix() for p in paths]
    dl0 = [r for r in rel if r.startswith("dl0/")]
    dl1 = [r for r in rel if r.startswith("dl1/")]
    assert len(dl0) == 2 * 2 * 2
    assert len(dl1) == 2
    pattern = re.compile(r"^dl0/north/2026/11/21/obs_\d{6}/tel_\d{3}_chunk_\d{3}\.fits$")
    assert all(pattern.match(r) for r in dl0), dl0
    assert all(r.startswith("dl1/north/2026/11/21/obs_") and r.endswith(".h5") for r in dl1)


def test_sample_night_metadata_matches_the_layout(tmp_path: Path) -> None:
    for path in generate_sample_night(tmp_path, n_obs=1, n_tel=2, n_chunks=1):
        got = extract_metadata(path)
        assert got.warnings == ()
        assert got.columns["observing_night"] == NIGHT
        assert f"obs_{got.columns['obs_id']:06d}" in path.parts
        if got.format == "fits":
            assert got.columns["data_level"] == "DL0"
            assert path.name.startswith(f"tel_{got.columns['tel_id']:03d}_")
            assert got.meta["site"] == "north"
        else:
            assert got.columns["data_level"] == "DL1"


def test_sample_night_is_deterministic(tmp_path: Path) -> None:
    first = generate_sample_night(tmp_path / "a", n_obs=1)
    again = generate_sample_night(tmp_path / "b", n_obs=1)
    other_seed = generate_sample_night(tmp_path / "c", n_obs=1, seed=1)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    assert first[0].read_bytes() != other_seed[0].read_bytes()


def test_other_site_and_night_get_other_ids(tmp_path: Path) -> None:
    north = generate_sample_night(tmp_path, n_obs=1, n_tel=1, n_chunks=1)
    south = generate_sample_night(
        tmp_path, night=dt.date(2026, 11, 22), site="south", n_obs=1, n_tel=1, n_chunks=1
    )
    assert "south" in south[0].parts
    ids = {extract_metadata(p).columns["obs_id"] for p in north + south}
    assert len(ids) == 2


def test_written_fits_verifies_with_astropy(tmp_path: Path) -> None:
    path = write_fits_product(
        tmp_path / "x.fits.fz",
        obs_id=1,
        tel_id=None,
        night=NIGHT,
        start=dt.datetime(2026, 11, 21, 21, tzinfo=dt.UTC),
        compress=True,
        n_events=10,
    )
    with fits.open(path, checksum=True, disable_image_compression=True) as hdul:
        assert [h.verify_datasum() for h in hdul] == [1, 1, 1]
        assert [h.verify_checksum() for h in hdul] == [1, 1, 1]
        assert hdul[0].header.comments["CHECKSUM"] == "dpps sample product"
        assert hdul[0].header["DATE-OBS"] == "2026-11-21T21:00:00"
        assert "TEL_ID" not in hdul[0].header
        assert len(hdul["EVENTS"].data) == 10


def test_corrupt_bytes_keeps_the_size(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(200)))
    corrupt_bytes(path, offset_from_end=100)
    raw = path.read_bytes()
    assert len(raw) == 200
    assert raw[100] == 100 ^ 0xFF
    assert raw[:100] + raw[101:] == bytes(range(100)) + bytes(range(101, 200))
    with pytest.raises(ValueError, match="offset_from_end"):
        corrupt_bytes(path, offset_from_end=201)


def test_truncate(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 1000)
    truncate(path, 0.25)
    assert path.stat().st_size == 250
    with pytest.raises(ValueError, match="keep_fraction"):
        truncate(path, 1.0)
