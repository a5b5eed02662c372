"""What QualPipe reads: DL1 image parameters, DL2 events and calibration products.

Quality checks must see bad data to judge it, so these readers are lenient where DataPipe's
are strict: a NaN parameter is counted, not rejected; only a file that is not what it claims
to be (unreadable, or without the columns a metric needs) is an error.

DL1 is DataPipe's layout (docs/pipelines.md). This adapter does not depend on its details: it
collects every table (HDF5 compound dataset, as h5py, astropy and PyTables/ctapipe write them)
that holds image parameters and maps column names through ``DL1_ALIASES`` (``hillas_width`` or
``width``, ...); a per-telescope table named ``tel_NNN`` gives ``tel_id`` when the column is
absent. DL2 follows the contract of docs/data-formats.md (FITS, ``EVENTS`` table).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from astropy.io import fits
from numpy.typing import NDArray

from dpps.core.errors import IntegrityFailure, InvalidInput, NotFound
from dpps.pipelines.calibpipe.product import CalibrationProduct, read_calibration

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: DL1 quantity -> column names it may have (first found wins).
DL1_ALIASES: dict[str, tuple[str, ...]] = {
    "tel_id": ("tel_id",),
    "obs_id": ("obs_id",),
    "event_id": ("event_id",),
    "event_type": ("event_type",),
    "time": ("time", "time_unix", "event_time", "time_s"),
    "intensity": ("hillas_intensity", "intensity", "size"),
    "width": ("hillas_width", "width"),
    "length": ("hillas_length", "length"),
    "n_islands": ("morphology_n_islands", "n_islands"),
    "leakage": ("leakage_intensity_width_2", "leakage_intensity_2", "leakage"),
}
_TEL_NAME = re.compile(r"tel_?0*(\d+)$")


@dataclass(frozen=True)
class DL1Images:
    """One row per telescope image; optional quantities are ``None`` when absent."""

    tel_id: IntArray
    intensity: FloatArray
    width: FloatArray
    length: FloatArray
    time: FloatArray | None = None
    event_type: IntArray | None = None
    obs_id: IntArray | None = None
    optional: dict[str, FloatArray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.tel_id.size)


@dataclass(frozen=True)
class DL2Events:
    """The DL2 columns QualPipe uses (contract names, contract units)."""

    time: FloatArray
    multiplicity: FloatArray
    reco_energy: FloatArray  # TeV
    gh_score: FloatArray
    obs_id: IntArray | None
    header: dict[str, Any]

    def __len__(self) -> int:
        return int(self.time.size)


def _pick(names: Sequence[str], quantity: str) -> str | None:
    return next((n for n in DL1_ALIASES[quantity] if n in names), None)


def _tables(f: h5py.File) -> list[tuple[str, h5py.Dataset]]:
    found: list[tuple[str, h5py.Dataset]] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and obj.dtype.names and obj.ndim == 1:
            names = obj.dtype.names
            if _pick(names, "intensity") and _pick(names, "width") and _pick(names, "length"):
                found.append((name, obj))

    f.visititems(visit)
    return found


def read_dl1(path: Path) -> DL1Images:
    """All image-parameter tables of a DL1 HDF5 file, concatenated."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"DL1 file not found: {path}")
    parts: list[dict[str, np.ndarray]] = []
    try:
        with h5py.File(path, "r") as f:
            for name, dataset in _tables(f):
                data = dataset[()]
                names = data.dtype.names or ()
                part: dict[str, np.ndarray] = {}
                for quantity in DL1_ALIASES:
                    column = _pick(names, quantity)
                    if column is not None:
                        part[quantity] = np.asarray(data[column])
                if "tel_id" not in part:
                    match = _TEL_NAME.search(name)
                    if match is None:
                        raise InvalidInput(f"{path.name}: table {name!r} has no tel_id column")
                    part["tel_id"] = np.full(len(data), int(match.group(1)))
                parts.append(part)
    except OSError as exc:
        raise IntegrityFailure(f"{path.name}: not a readable HDF5 file: {exc}") from None
    if not parts:
        raise InvalidInput(
            f"{path.name}: no DL1 image-parameter table (needs intensity, width and length "
            "columns, e.g. hillas_intensity, hillas_width, hillas_length)"
        )
    return _concat(parts)


def _concat(parts: list[dict[str, np.ndarray]]) -> DL1Images:
    def joined(key: str, dtype: Any) -> np.ndarray | None:
        if not all(key in p for p in parts):
            return None
        return np.concatenate([np.asarray(p[key], dtype=dtype) for p in parts])

    optional = {}
    for key in ("n_islands", "leakage"):
        values = joined(key, np.float64)
        if values is not None:
            optional[key] = values
    required = {k: joined(k, np.float64) for k in ("tel_id", "intensity", "width", "length")}
    columns = {k: v for k, v in required.items() if v is not None}
    if len(columns) != len(required):  # read_dl1 makes every part hold them: a bug otherwise
        raise ValueError(f"DL1 parts lack {sorted(set(required) - set(columns))}")
    return DL1Images(
        tel_id=columns["tel_id"].astype(np.int64),
        intensity=columns["intensity"],
        width=columns["width"],
        length=columns["length"],
        time=joined("time", np.float64),
        event_type=joined("event_type", np.int64),
        obs_id=joined("obs_id", np.int64),
        optional=optional,
    )


def merge_dl1(items: Sequence[DL1Images]) -> DL1Images:
    """Several DL1 files (e.g. one per telescope) as one set of images."""
    if len(items) == 1:
        return items[0]
    parts: list[dict[str, np.ndarray]] = []
    for item in items:
        part: dict[str, np.ndarray] = {
            "tel_id": item.tel_id,
            "intensity": item.intensity,
            "width": item.width,
            "length": item.length,
            **item.optional,
        }
        for key in ("time", "event_type", "obs_id"):
            value = getattr(item, key)
            if value is not None:
                part[key] = value
        parts.append(part)
    return _concat(parts)


_DL2_NEEDED = ("time", "multiplicity", "reco_energy", "gh_score")


def read_dl2(path: Path) -> DL2Events:
    """The columns of a DL2 file's ``EVENTS`` table that the quality metrics use."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"DL2 file not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unit parsing notes: units are checked below
            with fits.open(path, memmap=False) as hdul:
                if "EVENTS" not in hdul:
                    raise InvalidInput(f"{path.name}: no EVENTS table: not a DL2 file")
                header = dict(hdul[0].header)
                hdu = hdul["EVENTS"]
                names = hdu.columns.names
                missing = [c for c in _DL2_NEEDED if c not in names]
                if missing:
                    raise InvalidInput(f"{path.name}: DL2 EVENTS lacks columns {missing}")
                units = {c.name: (c.unit or "").strip() for c in hdu.columns}
                data = {c: np.asarray(hdu.data[c], dtype=np.float64) for c in _DL2_NEEDED}
                obs = np.asarray(hdu.data["obs_id"], np.int64) if "obs_id" in names else None
    except OSError as exc:
        raise IntegrityFailure(f"{path.name}: not a readable FITS file: {exc}") from None
    energy_unit = units.get("reco_energy", "")
    scale = {"TeV": 1.0, "GeV": 1e-3, "MeV": 1e-6, "": 1.0}.get(energy_unit)
    if scale is None:
        raise InvalidInput(f"{path.name}: reco_energy has unit {energy_unit!r}, expected TeV")
    return DL2Events(
        time=data["time"],
        multiplicity=data["multiplicity"],
        reco_energy=data["reco_energy"] * scale,
        gh_score=data["gh_score"],
        obs_id=obs,
        header=header,
    )


def merge_dl2(items: Sequence[DL2Events]) -> DL2Events:
    if len(items) == 1:
        return items[0]
    obs = [i.obs_id for i in items]
    return DL2Events(
        time=np.concatenate([i.time for i in items]),
        multiplicity=np.concatenate([i.multiplicity for i in items]),
        reco_energy=np.concatenate([i.reco_energy for i in items]),
        gh_score=np.concatenate([i.gh_score for i in items]),
        obs_id=None if any(o is None for o in obs) else np.concatenate(obs),  # type: ignore[arg-type]
        header=items[0].header,
    )


def read_calibrations(paths: Sequence[Path]) -> list[CalibrationProduct]:
    return [read_calibration(Path(p)) for p in paths]
