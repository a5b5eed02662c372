"""Metadata extraction: real FITS/HDF5 files in, typed columns and JSON-safe meta out, and every
kind of damaged file refused with an IntegrityFailure before it can reach the archive."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from astropy.io import fits

from dpps.bdms.metadata import (
    INDEXED_KEYS,
    ExtractedMetadata,
    convert_indexed,
    extract_metadata,
    validate_meta_key,
)
from dpps.bdms.samples import corrupt_bytes, truncate, write_fits_product, write_hdf5_product
from dpps.core.errors import IntegrityFailure, InvalidInput, NotFound

NIGHT = dt.date(2026, 11, 21)
START = dt.datetime(2026, 11, 21, 22, 15, 30)
STRUCTURAL = {"simple", "bitpix", "naxis", "extend", "checksum", "datasum", "pcount", "gcount"}
USECASE = "UC-110-1.1.3"


def _fits(path: Path, **kwargs: Any) -> Path:
    args: dict[str, Any] = {"obs_id": 42, "tel_id": 3, "night": NIGHT, "start": START}
    return write_fits_product(path, **(args | kwargs))


def _plain_fits(
    path: Path, cards: dict[str, Any], ext_cards: dict[str, Any] | None = None
) -> Path:
    """A FITS file with exactly the given keywords (write_fits_product always sets them all)."""
    primary = fits.PrimaryHDU()
    for key, value in cards.items():
        primary.header[key] = value
    hdus: list[Any] = [primary]
    if ext_cards is not None:
        ext = fits.BinTableHDU.from_columns([fits.Column("X", "J", array=np.arange(10))])
        for key, value in ext_cards.items():
            ext.header[key] = value
        hdus.append(ext)
    fits.HDUList(hdus).writeto(path, checksum=True)
    return path


def _assert_json_safe(meta: dict[str, Any]) -> None:
    json.dumps(meta, allow_nan=False)
    assert not set(meta) & set(INDEXED_KEYS)


def _data_offset(path: Path, extname: str) -> int:
    with fits.open(path, disable_image_compression=True) as hdul:
        return int(hdul[extname].fileinfo()["datLoc"])


@pytest.mark.verifies_usecase(USECASE)
def test_fits_round_trip_gives_the_written_columns(tmp_path: Path) -> None:
    path = _fits(tmp_path / "tel_003.fits", category="A", extra_header={"RUNTYPE": "DATA"})
    got = extract_metadata(path)
    assert isinstance(got, ExtractedMetadata)
    assert got.format == "fits"
    assert got.warnings == ()
    assert got.columns == {
        "data_level": "DL0",
        "category": "A",
        "obs_id": 42,
        "tel_id": 3,
        "observing_night": NIGHT,
        "time_start": START,
        "time_end": START + dt.timedelta(seconds=1200),
        "product_type": "event list",
    }
    assert type(got.columns["observing_night"]) is dt.date
    assert type(got.columns["time_start"]) is dt.datetime
    assert got.columns["time_start"].tzinfo is None
    assert type(got.columns["obs_id"]) is int
    assert got.meta["origin"] == "CTAO"
    assert got.meta["creator"] == "dpps"
    assert got.meta["runtype"] == "DATA"
    assert not STRUCTURAL & set(got.meta)
    assert not {"datalevl", "datacat", "obsnight", "date_obs", "date_end", "datatype"} & set(
        got.meta
    )
    assert [(h["name"], h["type"]) for h in got.meta["hdus"]] == [
        ("PRIMARY", "PrimaryHDU"),
        ("EVENTS", "BinTableHDU"),
    ]
    assert got.meta["hdus"][1]["rows"] == 1000
    _assert_json_safe(got.meta)


@pytest.mark.verifies_usecase(USECASE)
def test_compressed_fits_round_trip(tmp_path: Path) -> None:
    path = _fits(tmp_path / "tel_003.fits.fz", compress=True, data_level="DL1", category="B")
    got = extract_metadata(path)
    assert got.format == "fits"
    assert got.columns["data_level"] == "DL1"
    assert got.columns["category"] == "B"
    assert got.columns["time_start"] == START
    waves = got.meta["hdus"][2]
    assert waves == {
        "index": 2,
        "name": "WAVEFORMS",
        "compressed": True,
        "type": "CompImageHDU",
        "shape": [64, 128],
    }
    assert not any(k.startswith(("ztile", "zcmptype", "zname")) for k in got.meta)
    _assert_json_safe(got.meta)


@pytest.mark.verifies_usecase(USECASE)
def test_hdf5_round_trip(tmp_path: Path) -> None:
    path = write_hdf5_product(tmp_path / "dl1.h5", obs_id=7, tel_id=2, night=NIGHT, n_rows=50)
    got = extract_metadata(path)
    assert got.format == "hdf5"
    assert got.columns == {
        "data_level": "DL1",
        "category": "B",
        "obs_id": 7,
        "tel_id": 2,
        "observing_night": NIGHT,
        "product_type": "image parameters",
    }
    assert got.meta["origin"] == "CTAO"
    items = got.meta["hdf5_items"]
    assert items[0]["name"] == "image_parameters"
    assert items[0]["shape"] == [50]
    _assert_json_safe(got.meta)


@pytest.mark.verifies_usecase(USECASE)
def test_hdf5_attributes_in_other_spellings_and_types(tmp_path: Path) -> None:
    path = tmp_path / "ctapipe_like.h5"
    with h5py.File(path, "w") as f:
        f.attrs["CTA PRODUCT DATA LEVELS"] = "DL1_IMAGES,DL1_PARAMETERS"
        f.attrs["OBS_ID"] = np.uint32(99)
        f.attrs["AE_ID"] = b"TEL004"
        f.attrs["DATE-OBS"] = "2026-11-22T02:00:00+00:00"
        f.attrs["threshold"] = np.float32(np.nan)
        f.attrs["gains"] = np.arange(3, dtype=np.int16)
        f.attrs["big"] = np.zeros(1000)
        f.create_group("dl1")
    got = extract_metadata(path)
    assert got.columns == {
        "data_level": "DL1",
        "obs_id": 99,
        "tel_id": 4,
        "observing_night": NIGHT,  # 02:00 UTC belongs to the night that began the day before
        "time_start": dt.datetime(2026, 11, 22, 2, 0),
    }
    assert got.meta["threshold"] == "nan"
    assert got.meta["gains"] == [0, 1, 2]
    assert got.meta["big"].startswith("<array")
    assert got.meta["hdf5_items"] == [{"name": "dl1", "type": "group", "members": 0}]
    _assert_json_safe(got.meta)


@pytest.mark.verifies_usecase(USECASE)
def test_implicit_sidecar_overrides_the_header(tmp_path: Path) -> None:
    path = _fits(tmp_path / "f.fits")
    sidecar = {"obs_id": "7", "product_type": "calibration", "tel_id": None, "run_quality": "ok"}
    (tmp_path / "f.fits.json").write_text(json.dumps(sidecar))
    got = extract_metadata(path)
    assert got.columns["obs_id"] == 7
    assert got.columns["product_type"] == "calibration"
    assert "tel_id" not in got.columns
    assert got.meta["run_quality"] == "ok"


def test_explicit_sidecar_and_other_format(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a data product")
    side = tmp_path / "meta.json"
    side.write_text(json.dumps({"data_level": "qual", "time_start": "2026-11-21T23:00:00Z"}))
    got = extract_metadata(path, sidecar=side)
    assert got.format == "other"
    assert got.columns == {
        "data_level": "QUAL",
        "observing_night": NIGHT,
        "time_start": dt.datetime(2026, 11, 21, 23, 0),
    }
    assert got.meta == {}


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"obs_id": "abc"}', "obs_id"),
        ('{"Bad-Key": 1}', "Bad-Key"),
    ],
)
def test_bad_sidecar_is_invalid_input(tmp_path: Path, content: str, match: str) -> None:
    path = _fits(tmp_path / "f.fits")
    (tmp_path / "f.fits.json").write_text(content)
    with pytest.raises(InvalidInput, match=match):
        extract_metadata(path)


def test_missing_explicit_sidecar_is_invalid_input(tmp_path: Path) -> None:
    path = _fits(tmp_path / "f.fits")
    with pytest.raises(InvalidInput, match="cannot read"):
        extract_metadata(path, sidecar=tmp_path / "absent.json")


def test_corrupt_events_data_fails_datasum(tmp_path: Path) -> None:
    path = _fits(tmp_path / "f.fits")
    size = path.stat().st_size
    corrupt_bytes(path, offset_from_end=size - (_data_offset(path, "EVENTS") + 100))
    assert path.stat().st_size == size
    with pytest.raises(IntegrityFailure, match=r"DATASUM mismatch in HDU 1 'EVENTS'"):
        extract_metadata(path)
    assert extract_metadata(path, verify_checksums=False).columns["obs_id"] == 42


def test_corrupt_compressed_data_fails_datasum(tmp_path: Path) -> None:
    """The checksums of a tile-compressed HDU belong to its raw table, which is what we sum
    (astropy's ``verify_datasum()`` on the decompressed CompImageHDU answers "no keyword")."""
    path = _fits(tmp_path / "f.fits.fz", compress=True)
    size = path.stat().st_size
    corrupt_bytes(path, offset_from_end=size - (_data_offset(path, "WAVEFORMS") + 10))
    with pytest.raises(IntegrityFailure, match=r"DATASUM mismatch in HDU 2 'WAVEFORMS'"):
        extract_metadata(path)


def test_edited_header_fails_checksum(tmp_path: Path) -> None:
    path = _fits(tmp_path / "f.fits")
    raw = path.read_bytes()
    assert raw.count(b"'dpps    '") == 1
    path.write_bytes(raw.replace(b"'dpps    '", b"'dppz    '"))  # still a valid header
    with pytest.raises(IntegrityFailure, match=r"CHECKSUM mismatch in HDU 0 'PRIMARY'"):
        extract_metadata(path)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.75, 0.999])
def test_truncated_fits_is_an_integrity_failure(tmp_path: Path, keep: float) -> None:
    path = _fits(tmp_path / "f.fits", compress=True)
    truncate(path, keep)
    with pytest.raises(IntegrityFailure, match="truncated FITS file"):
        extract_metadata(path, verify_checksums=False)


def test_fits_cut_inside_an_extension_header(tmp_path: Path) -> None:
    path = _fits(tmp_path / "f.fits")
    raw = path.read_bytes()
    path.write_bytes(raw[: 2880 + 1000])
    with pytest.raises(IntegrityFailure, match="truncated FITS file"):
        extract_metadata(path)


def test_bytes_after_the_last_hdu_are_refused(tmp_path: Path) -> None:
    path = _fits(tmp_path / "f.fits")
    with path.open("ab") as fh:
        fh.write(b"X" * 2880)
    with pytest.raises(IntegrityFailure, match="corrupt FITS file"):
        extract_metadata(path)


def test_truncated_hdf5_is_an_integrity_failure(tmp_path: Path) -> None:
    path = write_hdf5_product(tmp_path / "f.h5", obs_id=1, tel_id=1, night=NIGHT)
    truncate(path, 0.5)
    with pytest.raises(IntegrityFailure, match="HDF5"):
        extract_metadata(path)


def test_format_comes_from_magic_bytes(tmp_path: Path) -> None:
    fits_named_dat = _fits(tmp_path / "product.dat")
    assert extract_metadata(fits_named_dat).format == "fits"
    hdf5_with_userblock = tmp_path / "ub.bin"
    with h5py.File(hdf5_with_userblock, "w", userblock_size=512) as f:
        f.attrs["obs_id"] = 5
    assert extract_metadata(hdf5_with_userblock).columns == {"obs_id": 5}
    liar = tmp_path / "liar.fits"
    liar.write_bytes(b"\x89HDF not really" * 10)
    with pytest.raises(IntegrityFailure, match="named like FITS"):
        extract_metadata(liar)


def test_empty_file_directory_and_missing_path(tmp_path: Path) -> None:
    empty = tmp_path / "empty.fits"
    empty.touch()
    got = extract_metadata(empty)
    assert (got.format, got.columns, got.meta) == ("other", {}, {})
    assert "empty" in got.warnings[0]
    with pytest.raises(InvalidInput, match="directory"):
        extract_metadata(tmp_path)
    with pytest.raises(NotFound):
        extract_metadata(tmp_path / "absent.fits")


def test_unusable_header_values_become_warnings(tmp_path: Path) -> None:
    """A file header is not user input: a bad value must not block ingest of the bytes."""
    path = _fits(tmp_path / "f.fits", extra_header={"OBS_ID": "abc", "DATALEVL": "DL9"})
    got = extract_metadata(path)
    assert "obs_id" not in got.columns
    assert "data_level" not in got.columns
    assert got.meta["obs_id_raw"] == "abc"
    assert got.meta["data_level_raw"] == "DL9"
    assert any("OBS_ID" in w for w in got.warnings)
    assert any("DATALEVL" in w for w in got.warnings)
    _assert_json_safe(got.meta)


def test_keyword_variants(tmp_path: Path) -> None:
    cards = {
        "AE_ID": "TEL012",
        "OBSNIGHT": "20261121",
        "DATE-OBS": "2026-11-21",
        "TIME-OBS": "23:59:00",
        "TIMESYS": "TT",
        "CATEGORY": "simulation",
        "HIERARCH CTA LONG KEYWORD": 1.5,
    }
    path = _plain_fits(tmp_path / "v.fits", cards, ext_cards={"HDUCLAS1": "EVENTS", "OBS_ID": 8})
    got = extract_metadata(path)
    assert got.columns == {
        "category": "SIM",
        "obs_id": 8,  # from the first extension that has it
        "tel_id": 12,
        "observing_night": NIGHT,
        "time_start": dt.datetime(2026, 11, 21, 23, 57, 50, 816000),  # TT -> UTC
        "product_type": "EVENTS",  # HDUCLAS1 only because nothing better is there
    }
    assert got.meta["cta_long_keyword"] == 1.5
    assert "time_obs" not in got.meta


def test_night_derived_with_noon_cutoff(tmp_path: Path) -> None:
    morning = _plain_fits(tmp_path / "a.fits", {"DATE-OBS": "2026-11-22T11:59:59"})
    afternoon = _plain_fits(tmp_path / "b.fits", {"DATE-OBS": "2026-11-22T12:00:00"})
    assert extract_metadata(morning).columns["observing_night"] == NIGHT
    assert extract_metadata(afternoon).columns["observing_night"] == dt.date(2026, 11, 22)


def test_long_header_strings_are_capped(tmp_path: Path) -> None:
    path = _fits(tmp_path / "f.fits", extra_header={"NOTES": "x" * 3000})
    assert len(extract_metadata(path).meta["notes"]) == 1024


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("obs_id", "42", 42),
        ("obs_id", " 000123 ", 123),
        ("obs_id", 42.0, 42),
        ("obs_id", np.int64(5), 5),
        ("tel_id", "TEL001", 1),
        ("tel_id", "7", 7),
        ("data_level", "dl1", "DL1"),
        ("data_level", "R1", "R1"),
        ("category", "sim", "SIM"),
        ("category", "Simulation", "SIM"),
        ("observing_night", "2026-11-21", NIGHT),
        ("observing_night", "20261121", NIGHT),
        ("observing_night", dt.datetime(2026, 11, 21, 20), NIGHT),
        ("time_start", "2026-11-21T22:00:00+01:00", dt.datetime(2026, 11, 21, 21)),
        ("time_start", "2026-11-21T22:00:00Z", dt.datetime(2026, 11, 21, 22)),
        ("time_end", NIGHT, dt.datetime(2026, 11, 21)),
        ("product_type", " event list ", "event list"),
        ("obs_id", None, None),
    ],
)
def test_convert_indexed_accepts(key: str, value: Any, expected: Any) -> None:
    got = convert_indexed(key, value)
    assert got == expected
    assert type(got) is type(expected)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("obs_id", "abc"),
        ("obs_id", "-1"),
        ("obs_id", True),
        ("obs_id", 1.5),
        ("obs_id", "1e3"),
        ("obs_id", ""),
        ("obs_id", 2**63),
        ("tel_id", "MST-12-A3"),
        ("tel_id", 2**31),
        ("data_level", "DL9"),
        ("data_level", 1),
        ("category", "D"),
        ("observing_night", "yesterday"),
        ("observing_night", 20261121),
        ("time_start", "noon"),
        ("time_start", 1_700_000_000),
        ("product_type", ""),
        ("product_type", "x" * 65),
    ],
)
def test_convert_indexed_rejects_with_the_key_name(key: str, value: Any) -> None:
    with pytest.raises(InvalidInput, match=key):
        convert_indexed(key, value)


def test_convert_indexed_rejects_unknown_keys() -> None:
    with pytest.raises(InvalidInput, match="not an indexed metadata key"):
        convert_indexed("color", "red")


@pytest.mark.parametrize("key", ["a", "run_quality", "x9", "a" * 64])
def test_validate_meta_key_accepts(key: str) -> None:
    assert validate_meta_key(key) == key


@pytest.mark.parametrize("key", ["", "A", "1abc", "a-b", "_x", "a" * 65, "é", "a b", "a\n"])
def test_validate_meta_key_rejects(key: str) -> None:
    with pytest.raises(InvalidInput, match="invalid metadata key"):
        validate_meta_key(key)
