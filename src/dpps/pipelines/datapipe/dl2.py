"""The DataPipe tool ``datapipe-dl2``: DL1 + trained models -> DL2 (docs/data-formats.md).

Per array event: the stereo direction and core (``reconstruction``), then energy and
gamma/hadron score from the models (``models``). Events whose geometry or models give no
finite answer are left out (the DL2 contract allows none). Simulated DL2 carries the truth and
the ``SIM_*`` keywords (``SIM_NSHW`` summed over the runs merged); observed DL2 carries the
site and the observation, the target's RA/Dec either configured or, by default, the pointing's.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import QTable, vstack
from numpy.typing import NDArray
from pydantic import Field

from dpps.core.errors import InvalidInput
from dpps.instrument.frames import nominal_to_altaz
from dpps.instrument.sites import LOCATIONS
from dpps.pipelines.datapipe import models
from dpps.pipelines.datapipe.dl1_io import DL1Data, read_dl1
from dpps.pipelines.datapipe.reconstruction import Quality, reconstruct
from dpps.pipelines.tool import Tool, ToolConfig, register_tool

SIM_SAME = ("SIM_EMIN", "SIM_EMAX", "SIM_IDX", "SIM_RMAX", "SIM_VCON", "PARTICLE")


class QualityConfig(ToolConfig):
    min_intensity_pe: float = Field(50.0, ge=0, description="Images below are not used.")
    max_leakage_intensity_2: float = Field(
        0.3, ge=0, le=1, description="Images with more light in the two outer rings: not used."
    )

    def quality(self) -> Quality:
        return Quality(self.min_intensity_pe, self.max_leakage_intensity_2)


@dataclass
class Prepared:
    """A DL1 file's array events with geometry, and the features of their usable images."""

    data: DL1Data
    events: NDArray[Any]  # reconstruction.EVENT_DTYPE, finite geometry only
    features: NDArray[np.float64]
    event_index: NDArray[np.int64]  # per image: row in ``events``
    intensity: NDArray[np.float64]


def _rows_of(table: NDArray[Any], wanted: NDArray[Any]) -> NDArray[np.int64]:
    """For each (obs_id, event_id) of ``wanted``, its row in ``table`` (-1: absent)."""
    keys = zip(table["obs_id"].tolist(), table["event_id"].tolist(), strict=True)
    index = {key: i for i, key in enumerate(keys)}
    pairs = zip(wanted["obs_id"].tolist(), wanted["event_id"].tolist(), strict=True)
    return np.array([index.get(pair, -1) for pair in pairs], dtype=np.int64)


def prepare(data: DL1Data, quality: Quality) -> Prepared:
    tel_pos = {int(t["tel_id"]): (float(t["pos_x"]), float(t["pos_y"])) for t in data.telescopes}
    params = data.parameters
    events, impact, disp = reconstruct(params, tel_pos, quality)
    finite = np.isfinite(events["reco_x"]) & np.isfinite(events["reco_core_x"])
    events = events[finite]
    rows = _rows_of(events, params)
    use = (rows >= 0) & np.isfinite(impact) & (impact > 0)
    multiplicity = np.where(rows >= 0, events["multiplicity"][np.maximum(rows, 0)], 0)
    feats = models.image_features(
        params[use], impact[use], disp[use], multiplicity[use].astype(float)
    )
    return Prepared(data, events, feats, rows[use], params["intensity"][use])


def truth_for(data: DL1Data, events: NDArray[Any]) -> NDArray[Any]:
    if data.truth is None:
        raise InvalidInput(
            f"{data.path.name}: simulated DL1 without truth (run datapipe-dl1 "
            "with the SimPipe truth table as input 'truth')"
        )
    rows = _rows_of(data.truth, events)
    if np.any(rows < 0):
        raise InvalidInput(f"{data.path.name}: events without truth rows")
    return data.truth[rows]


def sim_header(files: Sequence[DL1Data]) -> dict[str, Any]:
    """SIM_* keywords of merged simulation runs: same thrown spectrum, showers summed."""
    first = files[0].header
    missing = [k for k in ("SIM_NSHW", *SIM_SAME) if k not in first]
    if missing:
        raise InvalidInput(f"{files[0].path.name}: simulated DL1 lacks {missing}")
    for other in files[1:]:
        differ = [k for k in SIM_SAME if other.header.get(k) != first.get(k)]
        if differ:
            raise InvalidInput(f"{other.path.name}: cannot merge runs that differ in {differ}")
    out = {k: first[k] for k in SIM_SAME}
    out["SIM_NSHW"] = int(sum(int(f.header["SIM_NSHW"]) for f in files))
    for key in ("SRC_OFFS", "SRC_ANG"):
        if key in first:
            out[key] = first[key]
    return out


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).replace(tzinfo=None).isoformat("T", "seconds")


def observation_header(data: DL1Data, target: TargetConfig, times: NDArray[Any]) -> dict[str, Any]:
    """Site and observation keywords of observed DL2 (what DL3 needs to go to RA/Dec)."""
    site = LOCATIONS[str(data.header.get("SITE_KEY", "north"))]
    start, end = float(np.min(times)), float(np.max(times))
    ra, dec = target.ra_deg, target.dec_deg
    if ra is None or dec is None:
        ra, dec = pointing_radec(
            site.lat_deg,
            site.lon_deg,
            site.height_m,
            float(data.header["PNT_ALT"]),
            float(data.header["PNT_AZ"]),
            (start + end) / 2,
        )
    return {
        "OBSERVAT": site.observatory,
        "GEOLAT": site.lat_deg,
        "GEOLON": site.lon_deg,
        "ALTITUDE": site.height_m,
        "OBS_ID": int(data.header["OBS_ID"]),
        "OBJECT": target.name,
        "RA_OBJ": ra,
        "DEC_OBJ": dec,
        "DATE-OBS": _iso(start),
        "DATE-END": _iso(end),
        "TIMESYS": "UTC",
    }


def pointing_radec(
    lat: float, lon: float, height: float, alt: float, az: float, unix: float
) -> tuple[float, float]:
    """ICRS direction of a horizontal pointing at a time, offline (bundled IERS data)."""
    from astropy.coordinates import AltAz, EarthLocation, SkyCoord
    from astropy.time import Time
    from astropy.utils import iers

    location = EarthLocation(lat=lat * u.deg, lon=lon * u.deg, height=height * u.m)
    with iers.conf.set_temp("auto_download", False), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # IERS extrapolation beyond the bundled table
        frame = AltAz(obstime=Time(unix, format="unix"), location=location)
        icrs = SkyCoord(alt=alt * u.deg, az=az * u.deg, frame=frame).icrs
    return float(icrs.ra.deg), float(icrs.dec.deg)


class TargetConfig(ToolConfig):
    name: str = Field("UNKNOWN", description="OBJECT: the observed target's name.")
    ra_deg: float | None = Field(None, description="Target RA (default: the pointing's).")
    dec_deg: float | None = Field(None, description="Target Dec (default: the pointing's).")


class DL2Config(ToolConfig):
    quality: QualityConfig = Field(default_factory=QualityConfig)  # type: ignore[arg-type]
    target: TargetConfig = Field(default_factory=TargetConfig)  # type: ignore[arg-type]
    category: Literal["A", "B", "C"] = Field(
        "B", description="Category of observed DL2 (simulations are always SIM)."
    )
    output_name: str | None = Field(None, description="Output file name (default derived).")


def events_table(prep: Prepared, trained: models.Models) -> QTable:
    keys, energy, score = models.predict(trained, prep.features, prep.event_index, prep.intensity)
    ev = prep.events[keys]
    header = prep.data.header
    alt0, az0 = float(header["PNT_ALT"]), float(header["PNT_AZ"])
    alt, az = nominal_to_altaz(ev["reco_x"], ev["reco_y"], alt0, az0)
    table = QTable()
    table["obs_id"] = ev["obs_id"]
    table["event_id"] = ev["event_id"]
    table["time"] = u.Quantity(ev["time"], u.s)
    table["multiplicity"] = ev["multiplicity"]
    table["reco_energy"] = u.Quantity(energy, u.TeV)
    table["reco_alt"] = u.Quantity(alt, u.deg)
    table["reco_az"] = u.Quantity(az, u.deg)
    table["gh_score"] = score
    table["pointing_alt"] = u.Quantity(np.full(len(ev), alt0), u.deg)
    table["pointing_az"] = u.Quantity(np.full(len(ev), az0), u.deg)
    table["reco_x"] = u.Quantity(ev["reco_x"], u.deg)
    table["reco_y"] = u.Quantity(ev["reco_y"], u.deg)
    table["reco_core_x"] = u.Quantity(ev["reco_core_x"], u.m)
    table["reco_core_y"] = u.Quantity(ev["reco_core_y"], u.m)
    if prep.data.is_simulation:
        truth = truth_for(prep.data, ev)
        for name, unit in (
            ("true_energy", u.TeV),
            ("true_alt", u.deg),
            ("true_az", u.deg),
            ("true_core_x", u.m),
            ("true_core_y", u.m),
            ("true_x", u.deg),
            ("true_y", u.deg),
        ):
            table[name] = u.Quantity(truth[name], unit)
        table["particle_type"] = np.char.strip(truth["particle_type"].astype(str))
    good = np.isfinite(energy) & (energy > 0) & np.isfinite(score)
    return table[good]


def write_dl2(path: Path, table: QTable, header: dict[str, Any]) -> Path:
    primary = fits.PrimaryHDU()
    for key, value in header.items():
        primary.header[f"HIERARCH {key}" if len(key) > 8 else key] = value
    hdu = fits.table_to_hdu(table)
    hdu.name = "EVENTS"
    temp = path.with_name(f".{path.name}.part")
    try:
        fits.HDUList([primary, hdu]).writeto(temp, overwrite=True, checksum=True)
        temp.rename(path)
    finally:
        temp.unlink(missing_ok=True)
    return path


@register_tool
class DL2Tool(Tool[DL2Config]):
    """DL1 -> DL2: stereo geometry, energy and gamma/hadron score."""

    name: ClassVar[str] = "datapipe-dl2"
    description: ClassVar[str] = "DL1 -> DL2: direction, energy, gamma/hadron score"
    config_class: ClassVar[type[DL2Config]] = DL2Config

    def setup(self) -> None:
        super().setup()
        self.files = [read_dl1(p) for p in self.input("dl1")]
        if not self.files:
            raise InvalidInput("datapipe-dl2: no DL1 input files")
        given = self.input("models")
        if len(given) != 1:
            raise InvalidInput(f"datapipe-dl2: give one 'models' file, not {len(given)}")
        self.models = models.load(given[0])
        kinds = {f.is_simulation for f in self.files}
        if len(kinds) > 1:
            raise InvalidInput("datapipe-dl2: cannot mix simulated and observed DL1")
        if not self.files[0].is_simulation and len({f.header["OBS_ID"] for f in self.files}) > 1:
            raise InvalidInput(
                "datapipe-dl2: observed DL1 of several observations: one DL2 per observation"
            )

    def start(self) -> None:
        quality = self.config.quality.quality()
        tables = [events_table(prepare(f, quality), self.models) for f in self.files]
        table = tables[0] if len(tables) == 1 else vstack(tables)
        if len(table) == 0:
            raise InvalidInput("datapipe-dl2: no event could be reconstructed")
        first = self.files[0]
        header: dict[str, Any] = {
            "CTAOMETA": "1.0",
            "ORIGIN": "CTAO",
            "CREATOR": "dpps DataPipe datapipe-dl2",
            "DATALEVL": "DL2",
            "DATATYPE": "reconstructed events",
            "DATACAT": "SIM" if first.is_simulation else self.config.category,
            "MODELS": Path(self.input("models")[0]).name,
        }
        if first.is_simulation:
            header |= sim_header(self.files)
            header["OBS_ID"] = int(first.header["OBS_ID"])
            for key in ("DATE-OBS", "DATE-END", "PNT_ALT", "PNT_AZ", "LIFETIME_DAYS"):
                if key in first.header:
                    header[key] = first.header[key]
        else:
            header |= observation_header(first, self.config.target, np.asarray(table["time"]))
            header |= {"PNT_ALT": first.header["PNT_ALT"], "PNT_AZ": first.header["PNT_AZ"]}
        name = self.config.output_name or first.path.name.replace("_dl1.h5", "") + "_dl2.fits"
        path = write_dl2(self.output_dir / name, table, header)
        meta = {"obs_id": int(first.header["OBS_ID"]), "category": header["DATACAT"]}
        self.add_output(path, "DL2", "reconstructed events", **meta)
