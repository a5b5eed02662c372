"""The camera calibration product: one FITS file per telescope and observation.

Layout (the contract in docs/data-formats.md, "Calibration product"): the CTAO product
keywords in the primary header (so the archive indexes the file as ``data_level=CAL``,
``product_type='camera calibration'``, with ``tel_id``, ``obs_id`` and free metadata
``valid_from``/``valid_to``), and a binary table ``CALIBRATION`` with one row per pixel whose
header repeats the identifying keywords. Written atomically (temporary name, then rename) with
CHECKSUM/DATASUM on every HDU, which the archive verifies at ingest.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from numpy.typing import NDArray

from dpps.core.errors import Conflict, IntegrityFailure, InvalidInput, NotFound
from dpps.core.version import __version__
from dpps.pipelines.calibpipe.camera import CameraCalibration

DATA_TYPE = "camera calibration"
HDU_NAME = "CALIBRATION"
COLUMNS = ("pixel_id", "pedestal", "pedestal_width", "gain", "time_shift", "unusable")
_NAMESPACE = uuid.UUID("5b0d3c3e-8c44-4b7f-9d0e-ac0da0d1ca11")

FloatArray = NDArray[np.float64]
HeaderCards = dict[str, tuple[Any, str]]


def iso(unix_s: float, *, up: bool = False) -> str:
    """UTC ISO 8601 to the second, rounded down (or up): validity bounds never shrink."""
    seconds = math.ceil(unix_s) if up else math.floor(unix_s)
    return dt.datetime.fromtimestamp(seconds, dt.UTC).replace(tzinfo=None).isoformat()


def parse_time(value: Any) -> dt.datetime:
    """A naive UTC datetime from an ISO text or a datetime (aware ones are converted)."""
    if isinstance(value, dt.datetime):
        moment = value
    else:
        try:
            moment = dt.datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise InvalidInput(f"expected an ISO 8601 date-time, got {value!r}") from None
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


def write_fits(
    path: Path, primary: Mapping[str, tuple[Any, str]], table: fits.BinTableHDU
) -> Path:
    """Write a product atomically with checksums; never overwrites (products are immutable)."""
    path = Path(path)
    if path.exists():
        raise Conflict(f"{path} exists already: products are never overwritten")
    path.parent.mkdir(parents=True, exist_ok=True)
    header = fits.Header()
    for key, (value, comment) in primary.items():
        header[f"HIERARCH {key}" if len(key) > 8 else key] = (value, comment)
    temp = path.with_name(f".{path.name}.part")
    fits.HDUList([fits.PrimaryHDU(header=header), table]).writeto(temp, overwrite=True)
    # A fixed checksum comment instead of astropy's wall-clock one: the same calibration
    # gives the same bytes, so archiving it twice is recognised, not a new version.
    with fits.open(temp, mode="update", memmap=False) as hdul:
        for hdu in hdul:
            hdu.add_checksum(when="dpps CalibPipe")
    temp.rename(path)
    return path


def product_cards(
    *,
    data_type: str,
    tel_id: int | None,
    obs_id: int | None,
    time_first: float,
    time_last: float,
    valid_from: str,
    valid_to: str,
    category: str | None,
    extra: Mapping[str, tuple[Any, str]] | None = None,
) -> HeaderCards:
    """The CTAO product keywords every CalibPipe product carries in its primary header."""
    ident = f"{data_type}|{tel_id}|{obs_id}|{valid_from}|{valid_to}"
    cards: HeaderCards = {
        "CTAOMETA": ("1.0", "version of the CTAO product metadata"),
        "ORIGIN": ("CTAO", "organisation that produced the product"),
        "CREATOR": (f"dpps CalibPipe {__version__}", "software that wrote the file"),
        "DATAID": (str(uuid.uuid5(_NAMESPACE, ident)), "id of this product"),
        "DATALEVL": ("CAL", "CTAO data level"),
        "DATATYPE": (data_type, "product type"),
        "TIMESYS": ("UTC", "time scale of all dates"),
        "DATE-OBS": (iso(time_first), "first input entry used, UTC"),
        "DATE-END": (iso(time_last, up=True), "last input entry used, UTC"),
        "VALID_FROM": (valid_from, "start of validity, UTC"),
        "VALID_TO": (valid_to, "end of validity, UTC"),
    }
    if category:
        cards["DATACAT"] = (category, "processing category")
    if tel_id is not None:
        cards["TEL_ID"] = (int(tel_id), "telescope id")
    if obs_id is not None:
        cards["OBS_ID"] = (int(obs_id), "observation id the inputs came from")
    cards.update(extra or {})
    return cards


def write_calibration(
    path: Path,
    calibration: CameraCalibration,
    *,
    tel_id: int,
    obs_id: int,
    camera: str,
    valid_from: str,
    valid_to: str,
    category: str | None = None,
    site: str | None = None,
    extra: Mapping[str, tuple[Any, str]] | None = None,
) -> Path:
    """Write ``calibration`` as a camera calibration product at ``path``."""
    c = calibration
    n = c.pedestal.size
    columns = [
        fits.Column(name="pixel_id", format="J", array=np.arange(n, dtype=np.int32)),
        fits.Column(name="pedestal", format="D", unit="adu", array=c.pedestal),
        fits.Column(name="pedestal_width", format="D", unit="adu", array=c.pedestal_width),
        fits.Column(name="gain", format="D", unit="adu", array=c.gain),  # per photo-electron
        fits.Column(name="time_shift", format="D", unit="ns", array=c.time_shift),
        fits.Column(name="unusable", format="L", array=c.unusable),
        fits.Column(name="gain_error", format="D", unit="adu", array=c.gain_error),
        fits.Column(name="flags", format="I", array=c.flags),
        fits.Column(name="n_pe", format="D", array=c.n_pe),
    ]
    ident: HeaderCards = {
        "TEL_ID": (int(tel_id), "telescope id"),
        "OBS_ID": (int(obs_id), "observation id the inputs came from"),
        "VALID_FROM": (valid_from, "start of validity, UTC"),
        "VALID_TO": (valid_to, "end of validity, UTC"),
        "INSTRUME": (camera, "camera"),
    }
    table = fits.BinTableHDU.from_columns(columns, name=HDU_NAME)
    for key, (value, comment) in ident.items():
        table.header[f"HIERARCH {key}" if len(key) > 8 else key] = (value, comment)
    cards = product_cards(
        data_type=DATA_TYPE,
        tel_id=tel_id,
        obs_id=obs_id,
        time_first=c.time_first,
        time_last=c.time_last,
        valid_from=valid_from,
        valid_to=valid_to,
        category=category,
        extra={
            "DATAASSO": ("Telescope", "what the product is associated with"),
            "INSTRUME": (camera, "camera"),
            **({"SITE": (site, "telescope site")} if site else {}),
            "N_PED": (c.n_pedestal, "pedestal events used"),
            "N_FF": (c.n_flatfield, "flat-field events used"),
            "N_UNUSE": (int(c.unusable.sum()), "pixels flagged unusable"),
            "CONTAIN": (_finite(c.containment), "median window containment of the pulse"),
            **(extra or {}),
        },
    )
    return write_fits(path, cards, table)


def _finite(value: float) -> float | str:
    return round(value, 6) if math.isfinite(value) else "NaN"


@dataclass(frozen=True)
class CalibrationProduct:
    """A camera calibration product as read back (what DataPipe and QualPipe use)."""

    tel_id: int
    obs_id: int | None
    camera: str | None
    valid_from: dt.datetime
    valid_to: dt.datetime
    pixel_id: NDArray[np.int64]
    pedestal: FloatArray
    pedestal_width: FloatArray
    gain: FloatArray
    time_shift: FloatArray
    unusable: NDArray[np.bool_]
    header: dict[str, Any] = field(default_factory=dict)

    def covers(self, moment: dt.datetime) -> bool:
        return self.valid_from <= moment <= self.valid_to


def read_calibration(path: Path) -> CalibrationProduct:
    """Read a camera calibration product; ``InvalidInput`` names what is missing."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"calibration product {path} does not exist")
    try:
        with fits.open(path, memmap=False) as hdul:
            primary = dict(hdul[0].header)
            if HDU_NAME not in hdul:
                raise InvalidInput(f"{path.name}: no {HDU_NAME} HDU: not a calibration product")
            hdu = hdul[HDU_NAME]
            header = {**primary, **dict(hdu.header)}
            names = set(hdu.columns.names)
            missing = [c for c in COLUMNS if c not in names]
            if missing:
                raise InvalidInput(f"{path.name}: {HDU_NAME} lacks columns {missing}")
            data = hdu.data
            arrays = {c: np.array(data[c]) for c in COLUMNS}
    except OSError as exc:
        raise IntegrityFailure(f"{path.name}: cannot read FITS: {exc}") from None
    for key in ("TEL_ID", "VALID_FROM", "VALID_TO"):
        if key not in header:
            raise InvalidInput(f"{path.name}: header keyword {key} missing")
    return CalibrationProduct(
        tel_id=int(header["TEL_ID"]),
        obs_id=int(header["OBS_ID"]) if "OBS_ID" in header else None,
        camera=str(header["INSTRUME"]) if "INSTRUME" in header else None,
        valid_from=parse_time(header["VALID_FROM"]),
        valid_to=parse_time(header["VALID_TO"]),
        pixel_id=arrays["pixel_id"].astype(np.int64),
        pedestal=arrays["pedestal"].astype(np.float64),
        pedestal_width=arrays["pedestal_width"].astype(np.float64),
        gain=arrays["gain"].astype(np.float64),
        time_shift=arrays["time_shift"].astype(np.float64),
        unusable=arrays["unusable"].astype(bool),
        header=header,
    )
