"""The DL1 file: HDF5 written and read with h5py (layout in docs/pipelines.md).

::

    /                       attributes: CTAO product keywords (DATALEVL='DL1', DATACAT, OBS_ID,
                            DATE-OBS, DATE-END, SITE, PNT_ALT, PNT_AZ, and for simulations the
                            SIM_* keywords, PARTICLE, SRC_OFFS)
    /dl1/parameters         one row per (obs_id, event_id, tel_id): event_type, time and the
                            image parameters of ``dpps.pipelines.datapipe.image.PARAMETERS``
    /dl1/telescopes         tel_id, camera, pos_x, pos_y (m)
    /simulation/showers     simulations only: the truth of each array event in the file

Every table carries a ``units`` attribute (JSON: column -> unit). Files are written under a
temporary name and renamed when complete, so a reader never sees half a file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

from dpps.core.errors import IntegrityFailure, InvalidInput
from dpps.pipelines.datapipe.image import PARAMETERS

PARAMETERS_PATH = "dl1/parameters"
TELESCOPES_PATH = "dl1/telescopes"
TRUTH_PATH = "simulation/showers"

PARAMETER_DTYPE = np.dtype(
    [
        ("obs_id", "i8"),
        ("event_id", "i8"),
        ("tel_id", "i2"),
        ("event_type", "i2"),
        ("time", "f8"),
        *((name, "f8") for name in PARAMETERS),
    ]
)
TELESCOPE_DTYPE = np.dtype([("tel_id", "i2"), ("camera", "S16"), ("pos_x", "f8"), ("pos_y", "f8")])
TRUTH_DTYPE = np.dtype(
    [
        ("obs_id", "i8"),
        ("event_id", "i8"),
        ("true_energy", "f8"),
        ("true_alt", "f8"),
        ("true_az", "f8"),
        ("true_x", "f8"),
        ("true_y", "f8"),
        ("true_core_x", "f8"),
        ("true_core_y", "f8"),
        ("particle_type", "S8"),
    ]
)
UNITS = {
    PARAMETERS_PATH: {
        "time": "s",
        "intensity": "pe",
        "x": "deg",
        "y": "deg",
        "r": "deg",
        "phi": "deg",
        "psi": "deg",
        "length": "deg",
        "width": "deg",
        "time_slope": "ns/deg",
        "time_intercept": "ns",
        "peak_time_mean": "ns",
    },
    TELESCOPES_PATH: {"pos_x": "m", "pos_y": "m"},
    TRUTH_PATH: {
        "true_energy": "TeV",
        "true_alt": "deg",
        "true_az": "deg",
        "true_x": "deg",
        "true_y": "deg",
        "true_core_x": "m",
        "true_core_y": "m",
    },
}


@dataclass(frozen=True)
class DL1Data:
    path: Path
    header: dict[str, Any]
    parameters: NDArray[Any]
    telescopes: NDArray[Any]
    truth: NDArray[Any] | None

    @property
    def is_simulation(self) -> bool:
        return str(self.header.get("DATACAT", "")).upper() == "SIM"


def _attr(value: Any) -> Any:
    if isinstance(value, bool | int | float | str | np.integer | np.floating):
        return value
    return str(value)


def write_dl1(
    path: Path,
    header: Mapping[str, Any],
    parameters: NDArray[Any],
    telescopes: NDArray[Any],
    truth: NDArray[Any] | None,
) -> Path:
    """Write a DL1 file atomically (temporary name, then rename)."""
    temp = path.with_name(f".{path.name}.part")
    try:
        with h5py.File(temp, "w") as f:
            for key, value in header.items():
                f.attrs[key] = _attr(value)
            tables = [(PARAMETERS_PATH, parameters), (TELESCOPES_PATH, telescopes)]
            if truth is not None:
                tables.append((TRUTH_PATH, truth))
            for name, data in tables:
                ds = f.create_dataset(name, data=data, compression="gzip", compression_opts=4)
                ds.attrs["units"] = json.dumps(UNITS.get(name, {}))
        temp.rename(path)
    finally:
        temp.unlink(missing_ok=True)
    return path


def read_dl1(path: Path) -> DL1Data:
    """Read a DL1 file; a file that is not DataPipe DL1 is a clear error."""
    try:
        with h5py.File(path, "r") as f:
            header = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            header = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in header.items()}
            if str(header.get("DATALEVL", "")) != "DL1" or PARAMETERS_PATH not in f:
                raise InvalidInput(f"{Path(path).name} is not a DataPipe DL1 file")
            params = np.asarray(f[PARAMETERS_PATH][()])
            tels = np.asarray(f[TELESCOPES_PATH][()])
            truth = np.asarray(f[TRUTH_PATH][()]) if TRUTH_PATH in f else None
    except OSError as exc:
        raise IntegrityFailure(f"{Path(path).name}: cannot read DL1 HDF5: {exc}") from None
    missing = set(PARAMETER_DTYPE.names or ()) - set(params.dtype.names or ())
    if missing:
        raise InvalidInput(f"{Path(path).name}: DL1 parameters lack {sorted(missing)}")
    return DL1Data(Path(path), header, params, tels, truth)
