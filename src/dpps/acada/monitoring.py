"""Plain-FITS monitoring tables ACADA writes beside the events: weather and pointing.

Written with astropy: the CTAO product keywords in the primary header, one binary table, and
CHECKSUM/DATASUM on every HDU. The checksum cards get a fixed comment rather than astropy's
wall-clock one, so the same inputs give the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from astropy.io import fits
from numpy.typing import NDArray

from dpps.core.errors import Conflict
from dpps.instrument.dl0 import HeaderValue


def _write(
    path: Path, header: Mapping[str, tuple[HeaderValue, str]], table: fits.BinTableHDU
) -> None:
    if path.exists():
        raise Conflict(f"{path} exists already: ACADA never overwrites a file")
    path.parent.mkdir(parents=True, exist_ok=True)
    primary = fits.PrimaryHDU()
    for key, (value, comment) in header.items():
        card_key = f"HIERARCH {key}" if len(key) > 8 else key
        primary.header[card_key] = (value, comment)
    temp = path.with_name(f".{path.name}.part")
    fits.HDUList([primary, table]).writeto(temp, overwrite=True)
    with fits.open(temp, mode="update", memmap=False) as hdul:
        for hdu in hdul:
            hdu.add_checksum(when="ACADA simulator")
    temp.rename(path)  # a reader never sees a half-written table


def write_weather(
    path: Path,
    *,
    header: Mapping[str, tuple[HeaderValue, str]],
    start_unix: float,
    duration_s: float,
    rng: np.random.Generator,
    period_s: float = 10.0,
) -> int:
    """Weather station samples every ``period_s``: temperature, humidity, pressure, wind."""
    n = max(1, int(duration_s // period_s) + 1)
    t = start_unix + np.arange(n) * period_s
    drift = np.cumsum(rng.normal(0.0, 0.05, n))
    columns = [
        fits.Column(name="TIME", format="D", unit="s", array=t),
        fits.Column(name="TEMPERATURE", format="E", unit="deg_C", array=8.0 + drift),
        fits.Column(name="HUMIDITY", format="E", unit="%", array=np.clip(30 + 5 * drift, 0, 100)),
        fits.Column(name="PRESSURE", format="E", unit="hPa", array=780.0 + 0.2 * drift),
        fits.Column(
            name="WIND_SPEED", format="E", unit="m/s", array=np.abs(rng.normal(5.0, 1.5, n))
        ),
        fits.Column(
            name="WIND_DIRECTION", format="E", unit="deg", array=rng.uniform(0.0, 360.0, n)
        ),
    ]
    _write(path, header, fits.BinTableHDU.from_columns(columns, name="WEATHER"))
    return n


def write_pointing(
    path: Path,
    *,
    header: Mapping[str, tuple[HeaderValue, str]],
    start_unix: float,
    duration_s: float,
    alt_deg: float,
    az_deg: float,
    rng: np.random.Generator,
    period_s: float = 1.0,
    altaz: tuple[NDArray[np.float64], NDArray[np.float64]] | None = None,
) -> int:
    """Telescope drive positions every ``period_s``: tracking jitter of a few arcseconds.

    ``altaz``: the tracked positions, one per sample (then ``alt_deg``/``az_deg`` are unused)."""
    n = max(1, int(duration_s // period_s) + 1)
    t = start_unix + np.arange(n) * period_s
    jitter = 2.0 / 3600.0
    # Earth rotation moves a tracked source by up to 15 deg/h in azimuth near the zenith:
    # a gentle, realistic drift rather than a fixed position.
    az = (az_deg + 15.0 / 3600.0 * (t - t[0]) * math.cos(math.radians(alt_deg))) % 360.0
    alt = np.full(n, alt_deg)
    if altaz is not None:
        if len(altaz[0]) != n or len(altaz[1]) != n:
            raise ValueError(f"altaz holds {len(altaz[0])} samples, the table {n}")
        alt, az = np.asarray(altaz[0]), np.asarray(altaz[1]) % 360.0
    columns = [
        fits.Column(name="TIME", format="D", unit="s", array=t),
        fits.Column(name="ALT", format="D", unit="deg", array=alt + rng.normal(0, jitter, n)),
        fits.Column(name="AZ", format="D", unit="deg", array=az + rng.normal(0, jitter, n)),
        fits.Column(name="TRACKING", format="L", array=np.ones(n, dtype=bool)),
    ]
    _write(path, header, fits.BinTableHDU.from_columns(columns, name="POINTING"))
    return n
