"""The DataPipe tool ``datapipe-dl1``: DL0 telescope event files of one observation -> DL1.

Inputs: ``dl0`` (telescope event files of one observation or simulation run; events other than
array-triggered showers, e.g. calibration or muon events, are skipped), optionally
``calibration`` (CalibPipe products, one per telescope, the one valid at the observation's
start is used), ``truth`` (the SimPipe truth table, for simulations) and ``pointing`` (the
ACADA pointing table, when the DL0 headers do not carry the pointing).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from astropy.io import fits
from astropy.table import Table
from numpy.typing import NDArray
from pydantic import Field

from dpps.core.errors import InvalidInput
from dpps.instrument.sites import SITES
from dpps.pipelines.datapipe.calibration import (
    Coefficients,
    calibrate,
    default_coefficients,
    read_product,
    select_product,
)
from dpps.pipelines.datapipe.dl0 import SHOWER_EVENT_TYPE, DL0File, open_dl0
from dpps.pipelines.datapipe.dl1_io import (
    PARAMETER_DTYPE,
    TELESCOPE_DTYPE,
    TRUTH_DTYPE,
    write_dl1,
)
from dpps.pipelines.datapipe.image import PARAMETERS, ImageSettings, process
from dpps.pipelines.simpipe.instrument import camera_geometry, site_of_telescope
from dpps.pipelines.tool import Tool, ToolConfig, register_tool

#: DL0 primary-header keywords carried into DL1 (and from there into DL2).
CARRIED = (
    "DATACAT",
    "OBS_ID",
    "SB_ID",
    "SITE",
    "OBSNIGHT",
    "PNT_ALT",
    "PNT_AZ",
    "SIM_NSHW",
    "SIM_EMIN",
    "SIM_EMAX",
    "SIM_IDX",
    "SIM_RMAX",
    "SIM_VCON",
    "PARTICLE",
    "SRC_OFFS",
    "SRC_ANG",
    "LIFETIME_DAYS",
    "SIMSEED",
)


class DL1Config(ToolConfig):
    """Charge extraction, cleaning and pointing of ``datapipe-dl1``."""

    window_width: int = Field(7, ge=1, le=64, description="Integration window (samples).")
    window_shift: int = Field(3, ge=0, description="Samples of the window before the peak.")
    picture_pe: float = Field(8.0, gt=0, description="Tailcuts picture threshold (p.e.).")
    boundary_pe: float = Field(4.0, gt=0, description="Tailcuts boundary threshold (p.e.).")
    min_neighbors: int = Field(2, ge=0, description="Picture pixels need this many neighbours.")
    pointing_alt_deg: float | None = Field(
        None, description="Pointing altitude (default: pointing input or DL0 PNT_ALT)."
    )
    pointing_az_deg: float | None = Field(None, description="Pointing azimuth (likewise).")
    category: Literal["A", "B", "C"] | None = Field(
        None,
        description="Category of observed DL1, written as DATACAT (simulations keep SIM): the "
        "processing that made it, so a reprocessing's DL1 is its own version even where its "
        "parameters are the same as the night's.",
    )
    output_name: str | None = Field(None, description="Output file name (default derived).")

    def settings(self) -> ImageSettings:
        return ImageSettings(
            self.window_width,
            self.window_shift,
            self.picture_pe,
            self.boundary_pe,
            self.min_neighbors,
        )


def _read_table(path: Path, hdu: int | str, what: str) -> Table:
    """One table HDU, by name or index; astropy would fall back to another table silently."""
    try:
        with fits.open(path, memmap=False) as hdul:
            return Table.read(hdul[hdu])
    except (OSError, KeyError, IndexError, ValueError, TypeError) as exc:
        raise InvalidInput(f"{path.name}: cannot read as a {what}: {exc}") from None


def pointing_from_table(path: Path) -> tuple[float, float]:
    """Mean ALT/AZ of an ACADA pointing table (deg)."""
    table = _read_table(path, 1, "pointing table")
    if "ALT" not in table.colnames or "AZ" not in table.colnames or len(table) == 0:
        raise InvalidInput(f"{path.name}: a pointing table needs ALT and AZ rows")
    az = np.radians(np.asarray(table["AZ"], float))
    mean_az = np.degrees(np.arctan2(np.sin(az).mean(), np.cos(az).mean())) % 360.0
    return float(np.mean(table["ALT"])), float(mean_az)


def truth_rows(path: Path, wanted: set[tuple[int, int]]) -> NDArray[Any]:
    """The SimPipe truth of the (obs_id, event_id) pairs present in the DL1 file."""
    table = _read_table(path, "TRUTH", "SimPipe truth table")
    keys = list(zip(np.asarray(table["obs_id"]), np.asarray(table["event_id"]), strict=True))
    rows = [i for i, k in enumerate(keys) if (int(k[0]), int(k[1])) in wanted]
    out = np.zeros(len(rows), dtype=TRUTH_DTYPE)
    for name in TRUTH_DTYPE.names or ():
        if name not in table.colnames:
            raise InvalidInput(f"{path.name}: truth column {name!r} missing")
        column = np.asarray(table[name])[rows]
        out[name] = column.astype("S8") if name == "particle_type" else column
    return out


@register_tool
class DL1Tool(Tool[DL1Config]):
    """DL0 -> DL1: calibration, charge extraction, cleaning, image parameters."""

    name: ClassVar[str] = "datapipe-dl1"
    description: ClassVar[str] = "DL0 -> DL1: calibrate, clean, Hillas/leakage/timing parameters"
    config_class: ClassVar[type[DL1Config]] = DL1Config

    def setup(self) -> None:
        super().setup()
        # in name order: the first file's header names the output and dates the calibration
        self.files = [open_dl0(p) for p in sorted(self.input("dl0"), key=lambda p: p.name)]
        if not self.files:
            raise InvalidInput("datapipe-dl1: no DL0 input files")
        obs = sorted({f.obs_id for f in self.files})
        if len(obs) > 1:
            raise InvalidInput(f"datapipe-dl1: inputs span observations {obs}: one at a time")
        self.products = [read_product(p) for p in self.inputs.get("calibration", [])]

    def pointing(self, first: DL0File) -> tuple[float, float]:
        cfg = self.config
        if cfg.pointing_alt_deg is not None and cfg.pointing_az_deg is not None:
            return cfg.pointing_alt_deg, cfg.pointing_az_deg
        if self.inputs.get("pointing"):
            return pointing_from_table(self.inputs["pointing"][0])
        if "PNT_ALT" in first.header and "PNT_AZ" in first.header:
            return float(first.header["PNT_ALT"]), float(first.header["PNT_AZ"])
        raise InvalidInput(
            "datapipe-dl1: no pointing: give a 'pointing' input (ACADA pointing "
            "table) or pointing_alt_deg/pointing_az_deg"
        )

    def coefficients(self, f: DL0File, when: dt.datetime) -> Coefficients:
        product = select_product(self.products, f.tel_id, when)
        if product is None:
            return default_coefficients(f.n_pixels, f.waveform_scale, f.waveform_offset)
        if product.coefficients.gain.size != f.n_pixels:
            raise InvalidInput(
                f"{product.path.name}: {product.coefficients.gain.size} pixels, "
                f"telescope {f.tel_id} has {f.n_pixels}"
            )
        return product.coefficients

    def start(self) -> None:
        settings = self.config.settings()
        first = self.files[0]
        alt, az = self.pointing(first)
        start = dt.datetime.fromisoformat(str(first.header.get("DATE-OBS", "1970-01-01")))
        rows: list[tuple[Any, ...]] = []
        used: dict[int, str] = {}
        for f in self.files:
            coeffs = self.coefficients(f, start)
            used[f.tel_id] = coeffs.source
            geom = camera_geometry(f.camera)
            for ev in f.events():
                if ev.event_type != SHOWER_EVENT_TYPE:
                    continue
                wave = calibrate(ev.waveform, coeffs)
                params = process(
                    geom,
                    wave,
                    f.camera.sampling_ghz,
                    coeffs.time_shift,
                    coeffs.unusable,
                    settings,
                    seed=(f.obs_id, ev.event_id, f.tel_id),
                )
                rows.append(
                    (
                        f.obs_id,
                        ev.event_id,
                        f.tel_id,
                        ev.event_type,
                        ev.time_unix,
                        *(params[p] for p in PARAMETERS),
                    )
                )
        if not rows:
            raise InvalidInput("datapipe-dl1: the inputs hold no array-triggered shower events")
        table = np.array(rows, dtype=PARAMETER_DTYPE)
        table.sort(order=["obs_id", "event_id", "tel_id"])
        truth = None
        if self.inputs.get("truth"):
            wanted = {
                (int(o), int(e)) for o, e in zip(table["obs_id"], table["event_id"], strict=True)
            }
            truth = truth_rows(self.inputs["truth"][0], wanted)
        header = self.header(first, alt, az, table, used)
        path = self.output_dir / (self.config.output_name or self.default_name(first))
        write_dl1(path, header, table, self.telescope_table(), truth)
        meta = {"obs_id": first.obs_id, "category": header.get("DATACAT") or None}
        self.add_output(
            path, "DL1", "image parameters", **{k: v for k, v in meta.items() if v is not None}
        )

    def telescope_table(self) -> NDArray[Any]:
        tels = sorted({f.tel_id for f in self.files})
        out = np.zeros(len(tels), dtype=TELESCOPE_DTYPE)
        for i, tel_id in enumerate(tels):
            tel = SITES[site_of_telescope(tel_id)].telescopes[tel_id]
            out[i] = (tel_id, tel.camera.encode(), tel.x_m, tel.y_m)
        return out

    def header(
        self, first: DL0File, alt: float, az: float, table: NDArray[Any], used: dict[int, str]
    ) -> dict[str, Any]:
        header = {k: first.header[k] for k in CARRIED if k in first.header}
        if self.config.category is not None and not first.is_simulation:
            header["DATACAT"] = self.config.category
        times = table["time"]

        def iso(t: float) -> str:
            return dt.datetime.fromtimestamp(t, dt.UTC).replace(tzinfo=None).isoformat("T")

        header.update(
            {
                "CTAOMETA": "1.0",
                "ORIGIN": "CTAO",
                "CREATOR": "dpps DataPipe datapipe-dl1",
                "DATALEVL": "DL1",
                "DATATYPE": "image parameters",
                "OBS_ID": first.obs_id,
                "TIMESYS": "UTC",
                "DATE-OBS": iso(float(times.min())),
                "DATE-END": iso(float(times.max())),
                "PNT_ALT": alt,
                "PNT_AZ": az,
                "SITE_KEY": site_of_telescope(first.tel_id),
                "CALIB": ",".join(f"{t}:{s}" for t, s in sorted(used.items())),
                "TELESCOP": ",".join(str(t) for t in sorted(used)),
            }
        )
        return header

    def default_name(self, first: DL0File) -> str:
        if first.is_simulation and "PARTICLE" in first.header:
            particle = str(first.header["PARTICLE"]).strip()
            return f"sim_{particle}_run{first.obs_id:06d}_dl1.h5"
        return f"obs{first.obs_id:010d}_dl1.h5"
