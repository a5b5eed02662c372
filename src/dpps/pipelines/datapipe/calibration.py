"""Camera calibration coefficients: from a CalibPipe product or the DL0 digitisation defaults.

The calibration product (docs/data-formats.md, "Calibration product") holds per pixel the
pedestal (ADC counts per sample), the gain (ADC counts per photo-electron), a time shift (ns)
and an unusable flag; DataPipe turns stored samples into photo-electrons per sample as
``(stored - pedestal) / gain``. Without a product the DL0 ``DataStream`` scale and offset give
the same numbers for a perfect camera (gain = scale, pedestal = offset * scale).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from numpy.typing import NDArray

from dpps.core.errors import IntegrityFailure, InvalidInput

CALIBRATION_HDU = "CALIBRATION"
REQUIRED_COLUMNS = ("pixel_id", "pedestal", "gain", "time_shift")


@dataclass(frozen=True)
class Coefficients:
    """Per-pixel calibration of one camera, ordered by pixel id."""

    pedestal: NDArray[np.float64]
    gain: NDArray[np.float64]
    time_shift: NDArray[np.float64]
    unusable: NDArray[np.bool_]
    source: str  # "defaults" or the product's file name


@dataclass(frozen=True)
class CalibrationProduct:
    path: Path
    tel_id: int
    valid_from: dt.datetime | None
    valid_to: dt.datetime | None
    coefficients: Coefficients

    def covers(self, when: dt.datetime) -> bool:
        return (self.valid_from is None or self.valid_from <= when) and (
            self.valid_to is None or when <= self.valid_to
        )


def default_coefficients(n_pixels: int, scale: float, offset: float) -> Coefficients:
    return Coefficients(
        pedestal=np.full(n_pixels, offset * scale),
        gain=np.full(n_pixels, scale),
        time_shift=np.zeros(n_pixels),
        unusable=np.zeros(n_pixels, dtype=bool),
        source="defaults",
    )


def _when(value: object, path: Path, key: str) -> dt.datetime | None:
    if value is None or str(value).strip() == "":
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise InvalidInput(f"{path.name}: {key}={value!r} is not an ISO 8601 time") from None
    return parsed.astimezone(dt.UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def read_product(path: Path) -> CalibrationProduct:
    """Read a calibration product; a missing HDU or column is a clear InvalidInput."""
    try:
        with fits.open(path, memmap=False) as hdul:
            if CALIBRATION_HDU not in hdul:
                raise InvalidInput(
                    f"{path.name}: no {CALIBRATION_HDU} HDU: not a calibration product"
                )
            primary = hdul[0].header
            hdu = hdul[CALIBRATION_HDU]
            header = {**dict(primary), **dict(hdu.header)}
            data = hdu.data
            names = [n.lower() for n in data.columns.names]
            missing = [c for c in REQUIRED_COLUMNS if c not in names]
            if missing:
                raise InvalidInput(f"{path.name}: calibration columns missing: {missing}")
            cols = {n.lower(): np.asarray(data[n]) for n in data.columns.names}
    except OSError as exc:
        raise IntegrityFailure(f"{path.name}: cannot read calibration product: {exc}") from None
    order = np.argsort(cols["pixel_id"])
    if not np.array_equal(cols["pixel_id"][order], np.arange(order.size)):
        raise InvalidInput(f"{path.name}: pixel_id must number the pixels 0..N-1")
    gain = cols["gain"][order].astype(np.float64)
    unusable = (
        cols["unusable"][order].astype(bool) if "unusable" in cols else np.zeros(gain.size, bool)
    )
    unusable = unusable | ~np.isfinite(gain) | (gain <= 0)
    if header.get("TEL_ID") is None:
        raise InvalidInput(f"{path.name}: no TEL_ID keyword")
    tel_id = int(header["TEL_ID"])
    return CalibrationProduct(
        path=path,
        tel_id=tel_id,
        valid_from=_when(header.get("VALID_FROM"), path, "VALID_FROM"),
        valid_to=_when(header.get("VALID_TO"), path, "VALID_TO"),
        coefficients=Coefficients(
            pedestal=cols["pedestal"][order].astype(np.float64),
            gain=np.where(unusable, 1.0, gain),
            time_shift=np.nan_to_num(cols["time_shift"][order].astype(np.float64)),
            unusable=unusable,
            source=path.name,
        ),
    )


def select_product(
    products: Sequence[CalibrationProduct], tel_id: int, when: dt.datetime
) -> CalibrationProduct | None:
    """The product of ``tel_id`` valid at ``when`` (the latest-starting one if several);
    None when no product is given for that telescope. Products for the telescope that are
    all out of validity are an error: silently using defaults would hide a mistake."""
    mine = [p for p in products if p.tel_id == tel_id]
    if not mine:
        return None
    valid = [p for p in mine if p.covers(when)]
    if not valid:
        raise InvalidInput(
            f"no calibration product for telescope {tel_id} is valid at "
            f"{when:%Y-%m-%dT%H:%M:%S} (given: "
            f"{', '.join(p.path.name for p in mine)})"
        )
    return max(valid, key=lambda p: p.valid_from or dt.datetime.min)


def calibrate(stored: NDArray[np.uint16], coefficients: Coefficients) -> NDArray[np.float32]:
    """Stored samples (pixels x samples) -> photo-electrons per sample."""
    wave = (stored.astype(np.float32) - coefficients.pedestal[:, None].astype(np.float32)) / (
        coefficients.gain[:, None].astype(np.float32)
    )
    return np.asarray(wave, dtype=np.float32)
