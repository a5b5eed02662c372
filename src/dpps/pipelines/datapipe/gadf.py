"""The community DL3 format (GADF 0.3): HDU headers, files and the index tables.

Science tools find data through two index tables: ``obs-index`` (one row per observation:
pointing, times, target) and ``hdu-index`` (where each HDU of each observation lives). They are
rebuilt from the headers of the DL3 files themselves (:func:`write_index_tables`), so the same
function indexes what a tool just wrote and what a user retrieved from the archive into any
directory: the index can never disagree with the files it points to.

Times: ``TIMESYS = TAI`` with the reference epoch ``MJDREF = 51910.0`` (2001-01-01T00:00:00
TAI); ``TIME``, ``TSTART`` and ``TSTOP`` are seconds since then.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time

from dpps.core.errors import InvalidInput

HDUDOC = "https://github.com/open-gamma-ray-astro/gamma-astro-data-formats"
MJDREF = 51910.0
TIME_REF = Time(MJDREF, format="mjd", scale="tai")
HDU_INDEX_NAME = "hdu-index.fits.gz"
OBS_INDEX_NAME = "obs-index.fits.gz"

#: HDUCLAS2/HDUCLAS4 of response HDUs -> (HDU_TYPE, HDU_CLASS) of the hdu-index.
_RESPONSES = {
    "EFF_AREA": ("aeff", "aeff_2d"),
    "EDISP": ("edisp", "edisp_2d"),
    "RAD_MAX": ("rad_max", "rad_max_2d"),
    "BKG": ("bkg", "bkg_2d"),
    "PSF": ("psf", "psf_table"),
}
_DATA = {
    "EVENTS": ("events", "events"),
    "GTI": ("gti", "gti"),
    "POINTING": ("pointing", "pointing"),
}
_OBS_KEYS = {  # obs-index column -> EVENTS header keyword
    "RA_PNT": "RA_PNT",
    "DEC_PNT": "DEC_PNT",
    "ALT_PNT": "ALT_PNT",
    "AZ_PNT": "AZ_PNT",
    "ONTIME": "ONTIME",
    "LIVETIME": "LIVETIME",
    "DEADC": "DEADC",
    "TSTART": "TSTART",
    "TSTOP": "TSTOP",
    "N_TELS": "N_TELS",
    "OBJECT": "OBJECT",
    "RA_OBJ": "RA_OBJ",
    "DEC_OBJ": "DEC_OBJ",
    "EVENT_COUNT": "NAXIS2",
    "DATE-OBS": "DATE-OBS",
    "TIME-OBS": "TIME-OBS",
    "DATE-END": "DATE-END",
    "TIME-END": "TIME-END",
}


def base_header(hduclas1: str, **more: Any) -> dict[str, Any]:
    return {"HDUCLASS": "GADF", "HDUDOC": HDUDOC, "HDUVERS": "0.3", "HDUCLAS1": hduclas1, **more}


def time_header() -> dict[str, Any]:
    return {
        "MJDREFI": int(MJDREF),
        "MJDREFF": MJDREF % 1,
        "TIMEUNIT": "s",
        "TIMESYS": "TAI",
        "TIMEREF": "LOCAL",
    }


def seconds(time: Time) -> np.ndarray:
    """Seconds since the DL3 reference epoch (TAI)."""
    return np.asarray((time.tai - TIME_REF).to_value("s"), dtype=np.float64)


def set_cards(header: fits.Header, cards: Mapping[str, Any]) -> None:
    for key, value in cards.items():
        header[f"HIERARCH {key}" if len(key) > 8 else key] = value


def write_fits(
    path: Path, hdus: Sequence[fits.hdu.base.ExtensionHDU], primary: Mapping[str, Any]
) -> Path:
    """Write atomically (temporary name, then rename) with CHECKSUM/DATASUM on every HDU, so
    the archive can verify the bytes at ingest and a reader never sees half a file."""
    head = fits.PrimaryHDU()
    set_cards(head.header, primary)
    temp = path.with_name(f".{path.name}.part")
    fits.HDUList([head, *hdus]).writeto(temp, overwrite=True, checksum=True)
    os.replace(temp, path)
    return path


def _hdu_kind(header: fits.Header) -> tuple[str, str] | None:
    if str(header.get("HDUCLASS", "")).strip().upper() != "GADF":
        return None
    clas1 = str(header.get("HDUCLAS1", "")).strip().upper()
    if clas1 in _DATA:
        return _DATA[clas1]
    if clas1 == "RESPONSE":
        return _RESPONSES.get(str(header.get("HDUCLAS2", "")).strip().upper())
    return None


def write_index_tables(directory: Path, files: Sequence[Path]) -> tuple[Path, Path]:
    """hdu-index and obs-index in ``directory`` for the GADF HDUs of ``files`` (which must lie
    under it); observations are keyed by the ``OBS_ID`` of each HDU or of its primary header."""
    directory = Path(directory).resolve()
    hdu_rows: list[dict[str, Any]] = []
    obs_rows: dict[int, dict[str, Any]] = {}
    event_header: fits.Header | None = None
    for path in sorted(Path(f).resolve() for f in files):
        try:
            rel = path.relative_to(directory)
        except ValueError:
            raise InvalidInput(f"{path} is not under the index directory {directory}") from None
        try:
            with fits.open(path, memmap=False) as hdul:
                primary_obs = hdul[0].header.get("OBS_ID")
                for hdu in hdul[1:]:
                    kind = _hdu_kind(hdu.header)
                    obs_id = hdu.header.get("OBS_ID", primary_obs)
                    if kind is None or obs_id is None:
                        continue
                    hdu_rows.append(
                        {
                            "OBS_ID": int(obs_id),
                            "HDU_TYPE": kind[0],
                            "HDU_CLASS": kind[1],
                            "FILE_DIR": str(rel.parent) if str(rel.parent) != "." else "",
                            "FILE_NAME": rel.name,
                            "HDU_NAME": hdu.name,
                            "SIZE": path.stat().st_size,
                        }
                    )
                    if kind[0] == "events":
                        event_header = hdu.header
                        obs_rows[int(obs_id)] = _obs_row(int(obs_id), hdu.header)
        except OSError as exc:
            raise InvalidInput(f"{path.name}: not a readable FITS file: {exc}") from None
    if not obs_rows or event_header is None:
        raise InvalidInput("no GADF event list among the files: nothing to index")
    missing = sorted({r["OBS_ID"] for r in hdu_rows} - set(obs_rows))
    if missing:
        raise InvalidInput(f"IRFs without an event list for observations {missing}")
    hdu_table = Table(rows=hdu_rows)
    hdu_table.meta.update(base_header("INDEX", HDUCLAS2="HDU"))
    rows = [obs_rows[k] for k in sorted(obs_rows)]
    common = [c for c in rows[0] if all(c in r for r in rows)]  # a column must fit every row
    obs_table = Table(rows=[{c: r[c] for c in common} for r in rows])
    obs_table.meta.update(base_header("INDEX", HDUCLAS2="OBS"))
    obs_table.meta.update(time_header())
    for key in ("GEOLON", "GEOLAT", "ALTITUDE", "TELESCOP", "INSTRUME", "OBSERVAT"):
        if key in event_header:
            obs_table.meta[key] = event_header[key]
    hdu_path, obs_path = directory / HDU_INDEX_NAME, directory / OBS_INDEX_NAME
    for table, target, name in (
        (hdu_table, hdu_path, "HDU_INDEX"),
        (obs_table, obs_path, "OBS_INDEX"),
    ):
        hdu = fits.table_to_hdu(table)
        hdu.name = name
        temp = target.with_name(f".{target.name}.part.gz")
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(temp, overwrite=True)
        os.replace(temp, target)
    return hdu_path, obs_path


def _obs_row(obs_id: int, header: fits.Header) -> dict[str, Any]:
    row: dict[str, Any] = {"OBS_ID": obs_id}
    for column, key in _OBS_KEYS.items():
        value = header.get(key)
        if value is not None:
            row[column] = value
    if "ALT_PNT" in row:
        row["ZEN_PNT"] = 90.0 - float(row["ALT_PNT"])
    return row
