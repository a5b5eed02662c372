"""Test data for QualPipe: a small observation from the ACADA simulator, processed for real.

``observe`` simulates DL0 (shower and calibration streams, two telescopes), runs CalibPipe's
camera calibration and DataPipe's DL0 -> DL1 on it, and writes DL2 by the contract from the
simulator's own plan of the same events (DL2 proper needs trained models, which DataPipe's
tests build; QualPipe only reads the contract's columns). ``write_dl2`` and ``write_table_dl1``
make files with chosen defects.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import h5py
import numpy as np
from astropy.io import fits
from astropy.table import QTable

from dpps.acada.planning import plan_events
from dpps.acada.simulate import SimulationConfig, simulate
from dpps.instrument.dl0 import quiet_native_stdout
from dpps.instrument.events import EventType
from dpps.pipelines.tool import ToolResult, run_tool

START = dt.datetime(2026, 11, 21, 22, 0, 0)
START_UNIX = START.replace(tzinfo=dt.UTC).timestamp()
OBS_ID = 1


@dataclass(frozen=True)
class Observation:
    config: SimulationConfig
    dl0: list[Path]
    calibration: list[Path]
    dl1: Path
    dl2: Path
    shower_multiplicity: list[int]  # per planned shower event, from the simulator


def config() -> SimulationConfig:
    return SimulationConfig(
        telescopes=(1, 2),
        duration_s=4.0,
        event_rate_hz=40.0,
        calibration_fraction=0.5,
        muon_fraction=0.0,
        streams=("SHOWER", "CAL"),
        events_per_chunk=1000,
        triggers=False,
        start=START,
        first_obs_id=OBS_ID,
    )


def _ok(result: ToolResult, what: str) -> None:
    assert result.exit_code == 0, f"{what}: {result.error}"


def observe(root: Path) -> Observation:
    """Build the observation under ``root``, or load it if a previous call finished it."""
    done = root / "observation.json"
    if done.exists():
        saved = json.loads(done.read_text())
        return Observation(
            config(),
            [Path(p) for p in saved["dl0"]],
            [Path(p) for p in saved["calibration"]],
            Path(saved["dl1"]),
            Path(saved["dl2"]),
            saved["shower_multiplicity"],
        )
    shutil.rmtree(root, ignore_errors=True)  # a build that failed half-way starts again
    observation = _build(root)
    done.write_text(
        json.dumps(
            {
                "dl0": [str(p) for p in observation.dl0],
                "calibration": [str(p) for p in observation.calibration],
                "dl1": str(observation.dl1),
                "dl2": str(observation.dl2),
                "shower_multiplicity": observation.shower_multiplicity,
            }
        )
    )
    return observation


def _build(root: Path) -> Observation:
    cfg = config()
    with quiet_native_stdout():
        files = simulate(root / "landing", cfg)
    calibration = run_tool("calibpipe-camera", {"min_events": 20}, {"dl0": files}, root / "cal")
    _ok(calibration, "calibpipe-camera")
    products = [o.path for o in calibration.outputs]
    showers = [f for f in files if "_TEL_SHOWER_" in f.name]
    pointing = [f for f in files if f.name.endswith("_POINTING.fits")]
    dl1 = run_tool(
        "datapipe-dl1",
        {},
        {"dl0": showers, "calibration": products, "pointing": pointing[:1]},
        root / "dl1",
    )
    _ok(dl1, "datapipe-dl1")
    planned = [e for e in plan_events(cfg, OBS_ID, START_UNIX) if e.kind == EventType.SUBARRAY]
    rng = np.random.default_rng(5)
    dl2 = write_dl2(
        root / "dl2" / f"obs{OBS_ID:010d}_dl2.fits",
        time=np.array([e.unix_s for e in planned]),
        multiplicity=np.array([len(e.tel_ids) for e in planned]),
        energy=np.array([e.shower.energy_tev if e.shower else 1.0 for e in planned])
        * rng.lognormal(0.0, 0.2, len(planned)),
        gh_score=np.clip(
            [rng.normal(0.25 if e.shower and e.shower.hadron else 0.8, 0.15) for e in planned],
            0.0,
            1.0,
        ),
    )
    return Observation(
        cfg, files, products, dl1.outputs[0].path, dl2, [len(e.tel_ids) for e in planned]
    )


def write_dl2(
    path: Path,
    *,
    time: np.ndarray,
    multiplicity: np.ndarray,
    energy: np.ndarray,
    gh_score: np.ndarray,
    energy_unit: u.UnitBase = u.TeV,
    obs_id: int = OBS_ID,
) -> Path:
    """A DL2 file by the contract of docs/data-formats.md (observed events)."""
    n = len(time)
    table = QTable()
    table["obs_id"] = np.full(n, obs_id)
    table["event_id"] = np.arange(1, n + 1)
    table["time"] = np.asarray(time, dtype=float) * u.s
    table["multiplicity"] = np.asarray(multiplicity, dtype=np.int16)
    table["reco_energy"] = np.asarray(energy, dtype=float) * energy_unit
    table["reco_alt"] = np.full(n, 70.0) * u.deg
    table["reco_az"] = np.full(n, 180.0) * u.deg
    table["gh_score"] = np.asarray(gh_score, dtype=float)
    table["pointing_alt"] = np.full(n, 70.0) * u.deg
    table["pointing_az"] = np.full(n, 180.0) * u.deg
    primary = fits.PrimaryHDU()
    primary.header.update(
        {
            "DATALEVL": "DL2",
            "OBSERVAT": "CTAO-North",
            "GEOLAT": 28.76,
            "GEOLON": -17.89,
            "ALTITUDE": 2200.0,
            "OBS_ID": obs_id,
            "OBJECT": "test",
            "RA_OBJ": 83.63,
            "DEC_OBJ": 22.01,
            "DATE-OBS": START.isoformat(),
            "DATE-END": START.isoformat(),
        }
    )
    events = fits.table_to_hdu(table)
    events.name = "EVENTS"
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList([primary, events]).writeto(path, checksum=True)
    return path


def write_table_dl1(path: Path, per_tel: dict[int, dict[str, np.ndarray]]) -> Path:
    """DL1 as ctapipe lays it out: one table per telescope (``tel_NNN``), ``hillas_*``
    column names, no tel_id column."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for tel, columns in per_tel.items():
            names = list(columns)
            data = np.zeros(len(columns[names[0]]), dtype=[(n, "f8") for n in names])
            for name in names:
                data[name] = columns[name]
            f.create_dataset(f"dl1/event/telescope/parameters/tel_{tel:03d}", data=data)
    return path
