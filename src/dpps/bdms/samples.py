"""Realistic, small sample data products for the demo, the tutorials and the tests.

The archive must be exercised with real FITS and HDF5 files (checksums, tile compression,
CTAO header keywords), not with random bytes, otherwise metadata extraction and integrity
checks are never tested on what the telescopes actually produce. Every writer is
deterministic for a given seed so that tests can compare bytes and checksums across runs.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from astropy.io import fits

__all__ = [
    "corrupt_bytes",
    "generate_sample_night",
    "truncate",
    "write_fits_product",
    "write_hdf5_product",
]

#: First hour (UTC) of the first observation of a generated night: after dusk at both sites.
_NIGHT_START_HOUR = 21
#: Duration of one DL0 chunk in a generated night, seconds.
_CHUNK_SECONDS = 600.0


def _naive_utc(value: dt.datetime) -> dt.datetime:
    """The catalog stores naive UTC: convert aware datetimes, keep naive ones as they are."""
    if value.tzinfo is None:
        return value
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def _rng(seed: int, *identity: int) -> np.random.Generator:
    """One generator per product: the caller's seed mixed with the product's identity, so two
    products of the same night differ but each is reproducible on its own."""
    return np.random.default_rng([seed, *identity])


def _set_card(header: fits.Header, key: str, value: Any) -> None:
    """Long or lower-case keys become HIERARCH cards explicitly (astropy would warn)."""
    if len(key) > 8 or " " in key or key != key.upper():
        header[f"HIERARCH {key}"] = value
    else:
        header[key] = value


def write_fits_product(
    path: Path,
    *,
    obs_id: int,
    tel_id: int | None,
    data_level: str = "DL0",
    category: str | None = None,
    night: dt.date,
    start: dt.datetime,
    duration_s: float = 1200.0,
    n_events: int = 1000,
    product_type: str = "event list",
    extra_header: Mapping[str, Any] | None = None,
    checksum: bool = True,
    compress: bool = False,
    seed: int = 0,
) -> Path:
    """Write a FITS product shaped like a CTAO one: CTAO keywords in the primary header, an
    ``EVENTS`` binary table and, with ``compress``, a tile-compressed ``WAVEFORMS`` image (the
    ``.fits.fz`` case). With ``checksum`` every HDU carries CHECKSUM and DATASUM."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    begin = _naive_utc(start)
    end = begin + dt.timedelta(seconds=duration_s)
    rng = _rng(seed, obs_id, tel_id or 0, int(begin.timestamp()))

    primary = fits.PrimaryHDU()
    header = primary.header
    header["DATALEVL"] = (data_level, "CTAO data level")
    if category is not None:
        header["DATACAT"] = (category, "processing category")
    header["OBS_ID"] = (obs_id, "observation id")
    if tel_id is not None:
        header["TEL_ID"] = (tel_id, "telescope id")
    header["OBSNIGHT"] = (night.isoformat(), "observing night (date of the evening)")
    header["TIMESYS"] = "UTC"
    header["DATE-OBS"] = (begin.isoformat(), "start of the observation, UTC")
    header["DATE-END"] = (end.isoformat(), "end of the observation, UTC")
    header["DATATYPE"] = (product_type, "product type")
    header["ORIGIN"] = "CTAO"
    header["CREATOR"] = "dpps"
    header["TELESCOP"] = "CTAO"
    for key, value in (extra_header or {}).items():
        _set_card(header, key, value)

    times = np.sort(rng.uniform(0.0, duration_s, n_events))
    events = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="EVENT_ID", format="K", array=np.arange(1, n_events + 1)),
            fits.Column(name="TIME", format="D", unit="s", array=times),
            fits.Column(
                name="IMAGE_SUM",
                format="E",
                unit="p.e.",
                array=rng.lognormal(5.0, 1.2, n_events).astype(np.float32),
            ),
            fits.Column(
                name="N_PIXELS", format="J", array=rng.integers(3, 400, n_events, dtype=np.int32)
            ),
            fits.Column(
                name="TRIGGER_TYPE", format="B", array=rng.integers(0, 4, n_events, dtype=np.uint8)
            ),
        ],
        name="EVENTS",
    )
    events.header["OBS_ID"] = obs_id
    events.header["HDUCLAS1"] = "EVENTS"
    hdus: list[Any] = [primary, events]
    if compress:
        # A pedestal-like int16 waveform block: realistic for RICE, which needs integers.
        waves = (400 + rng.normal(0.0, 5.0, (64, 128))).astype(np.int16)
        hdus.append(fits.CompImageHDU(data=waves, name="WAVEFORMS", compression_type="RICE_1"))
    fits.HDUList(hdus).writeto(path, overwrite=True)
    if checksum:
        _add_checksums(path)
    return path


def _add_checksums(path: Path) -> None:
    """CHECKSUM/DATASUM on every HDU as stored (raw compressed tables included), with a fixed
    card comment: ``writeto(checksum=True)`` puts the wall-clock time there, which would make
    two runs with the same seed differ in a few bytes."""
    with fits.open(path, mode="update", disable_image_compression=True, memmap=False) as hdul:
        for hdu in hdul:
            hdu.add_checksum(when="dpps sample product")


def write_hdf5_product(
    path: Path,
    *,
    obs_id: int,
    tel_id: int | None,
    data_level: str = "DL1",
    category: str | None = "B",
    night: dt.date,
    n_rows: int = 1000,
    seed: int = 0,
) -> Path:
    """Write an HDF5 product shaped like a DL1 file: metadata as root attributes (lower-case
    names, as ctapipe-like tools write them) and a table of image parameters. Timestamps of
    HDF5 objects are disabled so that the bytes depend on the inputs only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = _rng(seed, obs_id, tel_id or 0, night.toordinal())
    params = np.zeros(
        n_rows,
        dtype=[
            ("event_id", "<i8"),
            ("tel_id", "<i2"),
            ("hillas_intensity", "<f4"),
            ("hillas_length", "<f4"),
            ("hillas_width", "<f4"),
            ("hillas_psi", "<f4"),
        ],
    )
    params["event_id"] = np.arange(1, n_rows + 1)
    params["tel_id"] = tel_id or rng.integers(1, 5, n_rows)
    params["hillas_intensity"] = rng.lognormal(5.0, 1.2, n_rows)
    params["hillas_length"] = rng.gamma(2.0, 0.05, n_rows)
    params["hillas_width"] = params["hillas_length"] * rng.uniform(0.1, 0.9, n_rows)
    params["hillas_psi"] = rng.uniform(-90.0, 90.0, n_rows)
    with h5py.File(path, "w", track_order=False) as f:
        f.attrs["data_level"] = data_level
        if category is not None:
            f.attrs["category"] = category
        f.attrs["obs_id"] = np.int64(obs_id)
        if tel_id is not None:
            f.attrs["tel_id"] = np.int32(tel_id)
        f.attrs["observing_night"] = night.isoformat()
        f.attrs["product_type"] = "image parameters"
        f.attrs["origin"] = "CTAO"
        f.attrs["creator"] = "dpps"
        f.create_dataset(
            "image_parameters", data=params, chunks=True, fletcher32=True, track_times=False
        )
    return path


def generate_sample_night(
    dest: Path,
    *,
    night: dt.date = dt.date(2026, 11, 21),
    site: str = "north",
    n_obs: int = 2,
    n_tel: int = 2,
    n_chunks: int = 2,
    seed: int = 0,
) -> list[Path]:
    """Write one small observing night the way the on-site data center lays it out:
    ``dl0/<site>/<YYYY>/<MM>/<DD>/obs_<obs>/tel_<tel>_chunk_<n>.fits`` plus one DL1 HDF5 file
    per observation under ``dl1/``. Observation ids derive from the night, so two generated
    nights never share an id. Returns the written paths, sorted."""
    dest = Path(dest)
    day = f"{night:%Y}/{night:%m}/{night:%d}"
    first_obs = (night - dt.date(2020, 1, 1)).days * 100 + 1
    obs_seconds = _CHUNK_SECONDS * n_chunks
    night_start = dt.datetime.combine(night, dt.time(_NIGHT_START_HOUR))
    written: list[Path] = []
    for i in range(n_obs):
        obs_id = first_obs + i
        obs_dir = f"obs_{obs_id:06d}"
        obs_start = night_start + dt.timedelta(seconds=i * (obs_seconds + 300.0))
        for tel in range(1, n_tel + 1):
            for chunk in range(n_chunks):
                target = (
                    dest / "dl0" / site / day / obs_dir / f"tel_{tel:03d}_chunk_{chunk:03d}.fits"
                )
                written.append(
                    write_fits_product(
                        target,
                        obs_id=obs_id,
                        tel_id=tel,
                        data_level="DL0",
                        night=night,
                        start=obs_start + dt.timedelta(seconds=chunk * _CHUNK_SECONDS),
                        duration_s=_CHUNK_SECONDS,
                        n_events=200,
                        product_type="event list",
                        extra_header={"SITE": site, "CHUNK": chunk},
                        seed=seed,
                    )
                )
        dl1 = dest / "dl1" / site / day / obs_dir / f"{obs_dir}_dl1.h5"
        written.append(
            write_hdf5_product(
                dl1,
                obs_id=obs_id,
                tel_id=None,
                night=night,
                n_rows=200 * n_tel,
                seed=seed,
            )
        )
    return sorted(written)


def corrupt_bytes(path: Path, offset_from_end: int = 100) -> None:
    """Flip every bit of one byte, ``offset_from_end`` bytes before the end; the size stays the
    same, so only a checksum can notice (the case bit rot on a disk produces)."""
    size = os.path.getsize(path)
    if not 0 < offset_from_end <= size:
        raise ValueError(f"offset_from_end must be in 1..{size}, got {offset_from_end}")
    with open(path, "r+b") as fh:
        fh.seek(size - offset_from_end)
        byte = fh.read(1)
        fh.seek(size - offset_from_end)
        fh.write(bytes([byte[0] ^ 0xFF]))


def truncate(path: Path, keep_fraction: float = 0.5) -> None:
    """Cut a file to a fraction of its size (the case an interrupted copy produces)."""
    if not 0.0 <= keep_fraction < 1.0:
        raise ValueError(f"keep_fraction must be in [0, 1), got {keep_fraction}")
    size = os.path.getsize(path)
    os.truncate(path, int(size * keep_fraction))
