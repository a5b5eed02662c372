"""The SimPipe tool ``simpipe-simulate``: one run card -> simulated DL0 and its truth table.

Outputs, in the output directory:

* per telescope that saw anything, ``sim_<particle>_run<obs_id>_tel<NNN>.fits.fz``: DL0 zfits
  written by the DL0 codec (``dpps.instrument.dl0``), so DataPipe reads simulations and
  observations alike; the primary header marks it as simulation (``DATACAT = 'SIM'``) and
  carries the thrown-spectrum keywords and a lifetime hint (``LIFETIME_DAYS``, which the
  archive turns into ``expires_at`` at registration);
* ``sim_<particle>_run<obs_id>_truth.fits``: HDU ``TRUTH``, one row per thrown shower (energy,
  direction, core, which telescopes triggered) and in the primary header the
  ``SimulatedEventsInfo`` keywords of docs/data-formats.md (``SIM_NSHW`` ...).
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import QTable

from dpps.core.errors import Conflict
from dpps.instrument.clock import TAI_UTC_S, observing_night
from dpps.instrument.dl0 import HeaderValue, TelEvent, quiet_native_stdout, write_telescope_events
from dpps.instrument.sites import LOCATIONS, Telescope
from dpps.pipelines.simpipe.instrument import telescopes
from dpps.pipelines.simpipe.runcard import RunCard
from dpps.pipelines.simpipe.throw import ThrownRun, telescope_waveform, throw
from dpps.pipelines.tool import Tool, register_tool

_NAMESPACE = uuid.UUID("5b0d3c3e-8c44-4b7f-9d0e-ac0da0d10150")
EVENT_TYPE_SUBARRAY = 32


def sim_keywords(card: RunCard) -> dict[str, tuple[HeaderValue, str]]:
    """The SimulatedEventsInfo keywords (docs/data-formats.md) of a run."""
    cards: dict[str, tuple[HeaderValue, str]] = {
        "SIM_NSHW": (card.n_showers, "showers thrown (each used once)"),
        "SIM_EMIN": (card.e_min_tev, "lowest thrown energy, TeV"),
        "SIM_EMAX": (card.e_max_tev, "highest thrown energy, TeV"),
        "SIM_IDX": (card.spectral_index, "thrown spectral index, dN/dE ~ E^index"),
        "SIM_RMAX": (card.max_impact_m, "max impact distance, m"),
        "SIM_VCON": (card.view_cone_deg, "view cone radius, deg (0: point source)"),
        "PARTICLE": (card.particle, "primary particle"),
        "PNT_ALT": (card.pointing_alt_deg, "array pointing altitude, deg"),
        "PNT_AZ": (card.pointing_az_deg, "array pointing azimuth, deg"),
    }
    if card.point_like:
        cards["SRC_OFFS"] = (card.source_offset_deg, "source offset from the pointing, deg")
        cards["SRC_ANG"] = (card.source_angle_deg, "direction of the offset in the camera, deg")
    return cards


def _iso(unix_s: float) -> str:
    return dt.datetime.fromtimestamp(unix_s, dt.UTC).replace(tzinfo=None).isoformat("T", "seconds")


class _Run:
    """Writes one run's files; the truth first needs the whole throw."""

    def __init__(self, card: RunCard, out: Path) -> None:
        self.card = card
        self.out = out
        self.tels = telescopes(card.site, card.telescopes)
        self.start_unix = card.start.replace(tzinfo=dt.UTC).timestamp()

    def time_of(self, index: int) -> float:
        return self.start_unix + index / self.card.shower_rate_hz

    def header(self, path: Path, first: float, last: float) -> dict[str, tuple[HeaderValue, str]]:
        card = self.card
        night = observing_night(dt.datetime.fromtimestamp(first, dt.UTC).replace(tzinfo=None))
        return {
            "CTAOMETA": ("1.0", "version of the CTAO product metadata"),
            "ORIGIN": ("CTAO", "organisation that produced the product"),
            "CREATOR": ("dpps SimPipe", "software that wrote the file"),
            "CREATED": (_iso(dt.datetime.now(dt.UTC).timestamp()), "file creation, UTC"),
            "DATAID": (str(uuid.uuid5(_NAMESPACE, path.name)), "unique id of this product"),
            "DATACAT": ("SIM", "data category: simulation"),
            "OBS_ID": (card.obs_id, "run number"),
            "SB_ID": (0, "scheduling block (none: simulation)"),
            "SITE": (LOCATIONS[card.site].observatory, "simulated site"),
            "OBSNIGHT": (night.isoformat(), "nominal observing night"),
            "TIMESYS": ("UTC", "time scale of DATE-OBS and DATE-END"),
            "DATE-OBS": (_iso(first), "time of the first event, UTC"),
            "DATE-END": (_iso(last), "time of the last event, UTC"),
            "SIMSEED": (card.seed, "random seed of the run"),
            "LIFETIME_DAYS": (card.lifetime_days, "archive lifetime hint, days"),
            **sim_keywords(card),
        }

    def write_dl0(self, run: ThrownRun, tel: Telescope) -> Path | None:
        card = self.card
        mine = [i for i in np.flatnonzero(run.triggered) if tel.tel_id in run.seen_by[i]]
        if not mine:
            return None
        path = self.out / f"{card.stem}_tel{tel.tel_id:03d}.fits.fz"
        if path.exists():
            raise Conflict(f"{path} exists already: simulated files are never overwritten")
        header = self.header(path, self.time_of(int(mine[0])), self.time_of(int(mine[-1])))
        header |= {
            "DATALEVL": ("DL0", "CTAO data level"),
            "DATAASSO": ("Telescope", "what the product is associated with"),
            "DATATYPE": ("EVENTS", "product type"),
            "DATADIV": ("SHOWER", "data division (stream)"),
            "AE_ID": (tel.tel_id, "telescope id"),
            "INSTRUME": (tel.camera, "camera"),
        }

        def events() -> Iterator[TelEvent]:
            for index in mine:
                unix = self.time_of(int(index))
                seconds = math.floor(unix)
                qns = round((unix - seconds) * 4e9) % 4_000_000_000
                wave = telescope_waveform(card, run, int(index), tel)
                yield TelEvent(int(index) + 1, EVENT_TYPE_SUBARRAY, seconds + TAI_UTC_S, qns, wave)

        with quiet_native_stdout():
            write_telescope_events(
                path,
                header=header,
                camera=tel.spec,
                tel_id=tel.tel_id,
                sb_id=0,
                obs_id=card.obs_id,
                config_time_s=self.start_unix,
                events=events(),
                compression=card.compression,
            )
        return path

    def write_truth(self, run: ThrownRun) -> Path:
        card = self.card
        path = self.out / f"{card.stem}_truth.fits"
        if path.exists():
            raise Conflict(f"{path} exists already: simulated files are never overwritten")
        n = len(run)
        table = QTable()
        table["obs_id"] = np.full(n, card.obs_id, dtype=np.int64)
        table["event_id"] = np.arange(1, n + 1, dtype=np.int64)
        table["time"] = u.Quantity([self.time_of(i) for i in range(n)], u.s)
        table["true_energy"] = u.Quantity(run.energy_tev, u.TeV)
        table["true_alt"] = u.Quantity(run.alt_deg, u.deg)
        table["true_az"] = u.Quantity(run.az_deg, u.deg)
        table["true_x"] = u.Quantity(run.source_x_deg, u.deg)
        table["true_y"] = u.Quantity(run.source_y_deg, u.deg)
        table["true_core_x"] = u.Quantity(run.core_x_m, u.m)
        table["true_core_y"] = u.Quantity(run.core_y_m, u.m)
        table["particle_type"] = np.full(n, card.particle)
        table["n_trigger"] = np.array([len(s) for s in run.seen_by], dtype=np.int16)
        table["triggered"] = run.triggered
        primary = fits.PrimaryHDU()
        for key, (value, comment) in self.header(
            path, self.time_of(0), self.time_of(n - 1)
        ).items():
            primary.header[f"HIERARCH {key}" if len(key) > 8 else key] = (value, comment)
        primary.header["DATALEVL"] = ("DL2", "truth at the level the IRFs need")
        primary.header["DATATYPE"] = ("simulation truth", "product type")
        primary.header["TELESCOP"] = (",".join(str(t.tel_id) for t in self.tels), "telescopes")
        hdu = fits.table_to_hdu(table)
        hdu.name = "TRUTH"
        temp = path.with_name(f".{path.name}.part")
        hdul = fits.HDUList([primary, hdu])
        hdul.writeto(temp, overwrite=True, checksum=True)
        temp.rename(path)
        return path


@register_tool
class SimulateTool(Tool[RunCard]):
    """Throw showers through the toy model: simulated DL0 per telescope plus the truth."""

    name: ClassVar[str] = "simpipe-simulate"
    description: ClassVar[str] = "simulate a run: DL0 zfits per telescope and a truth table"
    config_class: ClassVar[type[RunCard]] = RunCard

    def start(self) -> None:
        card = self.config
        writer = _Run(card, self.output_dir)
        run = throw(card, writer.tels)
        common: dict[str, Any] = {
            "category": "SIM",
            "obs_id": card.obs_id,
            "particle": card.particle,
            "lifetime_days": card.lifetime_days,
        }
        for tel in writer.tels:
            path = writer.write_dl0(run, tel)
            if path is not None:
                self.add_output(path, "DL0", "EVENTS", tel_id=tel.tel_id, **common)
        truth = writer.write_truth(run)
        self.add_output(truth, "DL2", "simulation truth", **common)
