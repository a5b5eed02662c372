"""Reading DL2 event files by the contract of docs/data-formats.md, strictly.

The IRF and DL3 tools trust nothing they read: a DL2 file from another software version, a
hand-made table or a truncated copy must fail here with the file, the column and what was
expected, not deep inside pyirf with a unit error, and never produce a silently wrong IRF.
Columns are converted to the contract's units so the algorithms can rely on them.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import QTable, vstack

from dpps.core.errors import InvalidInput, NotFound

#: Columns every DL2 file holds, with their unit (None: dimensionless).
OBSERVED_COLUMNS: dict[str, u.UnitBase | None] = {
    "obs_id": None,
    "event_id": None,
    "time": u.s,
    "multiplicity": None,
    "reco_energy": u.TeV,
    "reco_alt": u.deg,
    "reco_az": u.deg,
    "gh_score": None,
    "pointing_alt": u.deg,
    "pointing_az": u.deg,
}
#: Truth columns simulated DL2 adds.
TRUTH_COLUMNS: dict[str, u.UnitBase | None] = {
    "true_energy": u.TeV,
    "true_alt": u.deg,
    "true_az": u.deg,
    "true_core_x": u.m,
    "true_core_y": u.m,
    "particle_type": None,
}
#: Header keywords of simulated DL2 (pyirf's SimulatedEventsInfo) and of observed DL2.
SIMULATION_KEYWORDS = ("SIM_NSHW", "SIM_EMIN", "SIM_EMAX", "SIM_IDX", "SIM_RMAX", "SIM_VCON")
OBSERVATION_KEYWORDS = (
    "OBSERVAT",
    "GEOLAT",
    "GEOLON",
    "ALTITUDE",
    "OBS_ID",
    "OBJECT",
    "RA_OBJ",
    "DEC_OBJ",
    "DATE-OBS",
    "DATE-END",
)


@dataclass(frozen=True)
class DL2File:
    """One DL2 file: its events in the contract's units and its primary header."""

    path: Path
    events: QTable
    header: fits.Header


def _column(table: QTable, name: str, unit: u.UnitBase | None, label: str) -> Any:
    column = table[name]
    if unit is None:
        if isinstance(column, u.Quantity) and column.unit not in (
            None,
            u.one,
            u.dimensionless_unscaled,
        ):
            raise InvalidInput(f"{label}: column {name!r} has unit {column.unit}, expected none")
        return column.value if isinstance(column, u.Quantity) else column
    if not isinstance(column, u.Quantity):
        raise InvalidInput(f"{label}: column {name!r} has no unit, expected {unit}")
    try:
        return column.to(unit)
    except u.UnitConversionError:
        raise InvalidInput(
            f"{label}: column {name!r} has unit {column.unit}, expected {unit}"
        ) from None


def _check_values(events: QTable, label: str) -> None:
    """Reconstructed quantities must be usable: one bad row would poison every histogram."""
    for name in ("time", "reco_energy", "reco_alt", "reco_az", "pointing_alt", "pointing_az"):
        bad = int(np.count_nonzero(~np.isfinite(np.asarray(events[name].value))))
        if bad:
            raise InvalidInput(f"{label}: {bad} rows have a non-finite {name!r}")
    if np.any(events["reco_energy"] <= 0 * u.TeV):
        raise InvalidInput(f"{label}: reco_energy must be positive")
    score = np.asarray(events["gh_score"], dtype=float)
    if np.any(~np.isfinite(score)) or np.any((score < 0) | (score > 1)):
        raise InvalidInput(f"{label}: gh_score must lie in [0, 1]")
    if "true_energy" in events.colnames and np.any(~(events["true_energy"] > 0 * u.TeV)):
        raise InvalidInput(f"{label}: true_energy must be positive")


def read_dl2(path: Path, *, simulated: bool) -> DL2File:
    """Read one DL2 file; ``simulated`` also requires the truth columns and SIM_* keywords."""
    path = Path(path)
    label = path.name
    if not path.is_file():
        raise NotFound(f"DL2 file not found: {path}")
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(path, memmap=False) as hdul:
                header = hdul[0].header.copy()
                if "EVENTS" not in hdul:
                    names = [h.name for h in hdul]
                    raise InvalidInput(f"{label}: no EVENTS table (HDUs: {names})")
            table = QTable.read(path, hdu="EVENTS")
        problem = None
    except (OSError, ValueError, TypeError) as exc:
        problem = f"not a readable DL2 FITS file: {exc}"
    truncated = [str(w.message) for w in caught if "truncated" in str(w.message)]
    if truncated:  # astropy only warns, then fails or reads zeros where bytes are missing
        problem = f"truncated DL2 file ({truncated[0]})"
    if problem:
        raise InvalidInput(f"{label}: {problem}")
    wanted = OBSERVED_COLUMNS | (TRUTH_COLUMNS if simulated else {})
    missing = [c for c in wanted if c not in table.colnames]
    if missing:
        raise InvalidInput(f"{label}: DL2 EVENTS lacks columns {missing}")
    keywords = SIMULATION_KEYWORDS if simulated else OBSERVATION_KEYWORDS
    absent = [k for k in keywords if k not in header]
    if absent:
        kind = "simulated" if simulated else "observed"
        raise InvalidInput(f"{label}: primary header of {kind} DL2 lacks {absent}")
    events = QTable()
    for name, unit in wanted.items():
        events[name] = _column(table, name, unit, label)
    if simulated:
        events["particle_type"] = np.char.strip(np.asarray(events["particle_type"]).astype(str))
    if len(events) == 0:
        raise InvalidInput(f"{label}: DL2 EVENTS is empty")
    _check_values(events, label)
    return DL2File(path, events, header)


def read_many(paths: Sequence[Path], *, simulated: bool) -> list[DL2File]:
    if not paths:
        raise InvalidInput("no DL2 files given")
    return [read_dl2(p, simulated=simulated) for p in paths]


def stack(files: Sequence[DL2File]) -> QTable:
    """All events of several files in one table (same columns and units by construction)."""
    return files[0].events if len(files) == 1 else vstack([f.events for f in files])


def header_value(header: Mapping[str, Any], key: str, label: str, kind: type = float) -> Any:
    """A required keyword converted to ``kind``; a clear error if it is absent or malformed."""
    if key not in header:
        raise InvalidInput(f"{label}: header keyword {key} is missing")
    try:
        value = kind(header[key])
    except (TypeError, ValueError):
        raise InvalidInput(
            f"{label}: header keyword {key}={header[key]!r} is not a {kind.__name__}"
        ) from None
    if kind is float and not np.isfinite(value):
        raise InvalidInput(f"{label}: header keyword {key} is not finite")
    return value
