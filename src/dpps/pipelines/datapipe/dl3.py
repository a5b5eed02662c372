"""DL2 -> DL3: gamma-like event lists in the community format, with their IRFs and indexes.

The selection applied here must be the one the IRF was computed with, or every flux measured
from the DL3 is wrong by the ratio of the two efficiencies, silently. So the cuts are never
configured here: they are read from the ``GH_CUTS`` table inside the IRF file produced by
``datapipe-irf``, and that same IRF is copied next to each event list. The direction cut stays
in the IRF (``RAD_MAX``): the science tool applies it around whatever source it studies.

Directions and times are converted with astropy for the site in the DL2 header; IERS tables
are never downloaded (the ones astropy ships are used, their predictions possibly stale by
milliseconds of UT1, i.e. arcseconds, far below the PSF), and the astrometry is interpolated
over 60 s (micro-arcsecond errors): about 10^5 events/s instead of 5x10^3 on a 2-core VM.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import astropy.units as u
import numpy as np
from astropy.coordinates import AltAz, EarthLocation, SkyCoord
from astropy.coordinates.erfa_astrom import ErfaAstromInterpolator, erfa_astrom
from astropy.io import fits
from astropy.table import QTable
from astropy.time import Time
from astropy.utils import iers
from pydantic import Field

from dpps.core.errors import InvalidInput
from dpps.core.version import __version__
from dpps.pipelines.datapipe import gadf
from dpps.pipelines.datapipe.dl2_contract import header_value, read_many, stack
from dpps.pipelines.datapipe.irf import GH_CUTS_EXTNAME, Cuts, cuts_from_hdu, gamma_like
from dpps.pipelines.tool import Tool, ToolConfig, register_tool

IRF_EXTNAMES = ("EFFECTIVE AREA", "ENERGY DISPERSION", "RAD_MAX")


@contextmanager
def offline_astrometry(interpolation: u.Quantity = 60 * u.s) -> Iterator[None]:
    """AltAz <-> ICRS without network access and with interpolated astrometry."""
    with ExitStack() as stack_:
        stack_.enter_context(iers.conf.set_temp("auto_download", False))
        stack_.enter_context(iers.conf.set_temp("auto_max_age", None))
        stack_.enter_context(erfa_astrom.set(ErfaAstromInterpolator(interpolation)))
        yield


def site_location(header: fits.Header, label: str) -> EarthLocation:
    return EarthLocation(
        lon=header_value(header, "GEOLON", label) * u.deg,
        lat=header_value(header, "GEOLAT", label) * u.deg,
        height=header_value(header, "ALTITUDE", label) * u.m,
    )


def _utc(header: fits.Header, key: str, label: str) -> Time:
    try:
        return Time(str(header[key]).strip(), scale="utc")
    except (KeyError, ValueError) as exc:
        raise InvalidInput(f"{label}: header keyword {key} is not an ISO time: {exc}") from None


@dataclass(frozen=True)
class DL3Observation:
    """One observation in GADF, ready to write: HDUs and the facts the archive indexes."""

    obs_id: int
    hdus: list[fits.BinTableHDU]
    start: Time
    end: Time
    n_events: int
    target: str
    ra_obj: float
    dec_obj: float
    night: dt.date


def _radec(alt: u.Quantity, az: u.Quantity, times: Time, location: EarthLocation) -> SkyCoord:
    with offline_astrometry():
        frame = AltAz(obstime=times, location=location)
        return SkyCoord(alt=alt, az=az, frame=frame).icrs


def _pointing(
    events: QTable, location: EarthLocation, interval_s: float, tolerance: float, label: str
) -> tuple[QTable, dict[str, Any]]:
    """Pointing samples every ``interval_s`` and the header: a tracking (POINTING) run if the
    RA/Dec stays within ``tolerance`` deg, a drift scan (DRIFT) if the alt/az does."""
    t = np.asarray(events["time"].to_value(u.s))
    grid = np.arange(t.min(), t.max() + interval_s, interval_s)
    rows = np.unique(np.clip(np.searchsorted(t, grid), 0, len(t) - 1))
    times = Time(t[rows], format="unix", scale="utc")
    alt, az = events["pointing_alt"][rows], events["pointing_az"][rows]
    radec = _radec(alt, az, times, location)
    mean = SkyCoord(radec.cartesian.mean(), representation_type="cartesian").spherical
    center = SkyCoord(mean.lon, mean.lat)
    altaz_mean = SkyCoord(np.arctan2(np.sin(az).mean(), np.cos(az).mean()), alt.mean())
    if radec.separation(center).max() <= tolerance * u.deg:
        mode = "POINTING"
    elif SkyCoord(az, alt).separation(altaz_mean).max() <= tolerance * u.deg:
        mode = "DRIFT"
    else:
        raise InvalidInput(
            f"{label}: the pointing moves by more than {tolerance} deg both in RA/Dec and in "
            "alt/az: neither a tracking run nor a drift scan"
        )
    table = QTable()
    table["TIME"] = gadf.seconds(times) * u.s
    table["RA_PNT"], table["DEC_PNT"] = radec.ra.to(u.deg), radec.dec.to(u.deg)
    table["ALT_PNT"], table["AZ_PNT"] = alt.to(u.deg), az.to(u.deg)
    cards = {
        "OBS_MODE": mode,
        "RA_PNT": center.ra.deg,
        "DEC_PNT": center.dec.deg,
        "ALT_PNT": float(alt.mean().to_value(u.deg)),
        "AZ_PNT": float(altaz_mean.ra.wrap_at(360 * u.deg).deg),
    }
    return table, cards


def convert_observation(
    events: QTable,
    header: fits.Header,
    cuts: Cuts,
    *,
    telescope: str,
    instrument: str | None,
    pointing_interval_s: float,
    pointing_tolerance_deg: float,
    time_tolerance_s: float,
    label: str,
) -> DL3Observation:
    """Select gamma-like events of one observation and build its EVENTS, GTI and POINTING."""
    obs_id = header_value(header, "OBS_ID", label, int)
    if np.any(np.asarray(events["obs_id"]) != obs_id):
        raise InvalidInput(f"{label}: events of other observations than OBS_ID={obs_id}")
    location = site_location(header, label)
    start, end = _utc(header, "DATE-OBS", label), _utc(header, "DATE-END", label)
    ontime = (end - start).to_value(u.s)
    if ontime <= 0:
        raise InvalidInput(f"{label}: DATE-END is not after DATE-OBS")
    t = Time(np.asarray(events["time"].to_value(u.s)), format="unix", scale="utc")
    outside = int(
        np.count_nonzero(
            ((t - start).to_value(u.s) < -time_tolerance_s)
            | ((t - end).to_value(u.s) > time_tolerance_s)
        )
    )
    if outside:
        raise InvalidInput(f"{label}: {outside} events lie outside DATE-OBS..DATE-END")
    events = events[np.argsort(events["time"], kind="stable")]
    pointing, pointing_cards = _pointing(
        events, location, pointing_interval_s, pointing_tolerance_deg, label
    )
    chosen = events[gamma_like(events, cuts)]
    times = Time(np.asarray(chosen["time"].to_value(u.s)), format="unix", scale="utc")
    sky = _radec(chosen["reco_alt"], chosen["reco_az"], times, location)
    table = QTable()
    table["EVENT_ID"] = np.asarray(chosen["event_id"], dtype=np.int64)
    table["TIME"] = gadf.seconds(times) * u.s
    table["RA"], table["DEC"] = sky.ra.to(u.deg), sky.dec.to(u.deg)
    table["ENERGY"] = chosen["reco_energy"].to(u.TeV)
    table["ALT"], table["AZ"] = chosen["reco_alt"].to(u.deg), chosen["reco_az"].to(u.deg)
    table["GH_SCORE"] = np.asarray(chosen["gh_score"], dtype=np.float32)
    table["MULTIP"] = np.asarray(chosen["multiplicity"], dtype=np.int16)
    deadc = float(header.get("DEADC", 1.0))
    tai_start, tai_end = start.tai, end.tai
    common = {
        "OBS_ID": obs_id,
        "TELESCOP": telescope,
        "INSTRUME": instrument or str(header.get("OBSERVAT", telescope)),
        "OBSERVAT": str(header.get("OBSERVAT", "")),
        "CREATOR": f"dpps {__version__}",
        **gadf.time_header(),
        "TSTART": float(gadf.seconds(start)),
        "TSTOP": float(gadf.seconds(end)),
        "GEOLON": location.lon.deg,
        "GEOLAT": location.lat.deg,
        "ALTITUDE": location.height.to_value(u.m),
    }
    target = str(header.get("OBJECT", "")).strip()
    ra_obj = header_value(header, "RA_OBJ", label)
    dec_obj = header_value(header, "DEC_OBJ", label)
    event_cards = gadf.base_header(
        "EVENTS",
        **common,
        **pointing_cards,
        ONTIME=ontime,
        LIVETIME=ontime * deadc,
        DEADC=deadc,
        TELAPSE=ontime,
        EQUINOX=2000.0,
        RADECSYS="ICRS",
        ORIGIN="CTAO",
        OBJECT=target,
        RA_OBJ=ra_obj,
        DEC_OBJ=dec_obj,
        N_TELS=int(header.get("N_TELS", int(np.max(events["multiplicity"])))),
        **{
            "DATE-OBS": tai_start.strftime("%Y-%m-%d"),
            "TIME-OBS": tai_start.strftime("%H:%M:%S"),
            "DATE-END": tai_end.strftime("%Y-%m-%d"),
            "TIME-END": tai_end.strftime("%H:%M:%S"),
        },
    )
    hdus = []
    for name, data, cards in (
        ("EVENTS", table, event_cards),
        ("GTI", _gti(start, end), gadf.base_header("GTI", **common)),
        ("POINTING", pointing, gadf.base_header("POINTING", **common, **pointing_cards)),
    ):
        hdu = fits.table_to_hdu(data)
        hdu.name = name
        gadf.set_cards(hdu.header, cards)
        hdus.append(hdu)
    local = start + location.lon.deg / 15.0 * u.hour - 12 * u.hour  # the evening's date
    return DL3Observation(
        obs_id, hdus, start, end, len(table), target, ra_obj, dec_obj, local.to_datetime().date()
    )


def _gti(start: Time, end: Time) -> QTable:
    gti = QTable()
    gti["START"] = [gadf.seconds(start)] * u.s
    gti["STOP"] = [gadf.seconds(end)] * u.s
    return gti


# -- the tool -----------------------------------------------------------------------------------
class DL3Config(ToolConfig):
    category: Literal["B", "C"] = Field(
        "B", description="processing category: B (next day) or C (final)"
    )
    telescope: str = Field("CTAO", description="TELESCOP keyword")
    instrument: str | None = Field(
        None, description="INSTRUME keyword; default: the DL2 OBSERVAT (e.g. CTAO-North)"
    )
    pointing_interval_s: float = Field(60.0, gt=0, description="POINTING table sampling")
    pointing_tolerance_deg: float = Field(
        0.05, gt=0, description="largest pointing drift within one observation"
    )
    time_tolerance_s: float = Field(
        1.0, ge=0, description="events may lie this far outside DATE-OBS..DATE-END"
    )


def read_irf(path: Path) -> tuple[list[fits.BinTableHDU], Cuts, fits.Header]:
    """The response HDUs, the cuts and the primary header of a ``datapipe-irf`` output."""
    label = path.name
    try:
        with fits.open(path, memmap=False) as hdul:
            names = [h.name for h in hdul]
            missing = [n for n in (*IRF_EXTNAMES, GH_CUTS_EXTNAME) if n not in names]
            if missing:
                raise InvalidInput(f"{label}: not a datapipe-irf output, lacks HDUs {missing}")
            cuts = cuts_from_hdu(hdul[GH_CUTS_EXTNAME], label)
            responses = [h.copy() for h in hdul[1:]]  # GH_CUTS too: it documents the selection
            return responses, cuts, hdul[0].header.copy()
    except OSError as exc:
        raise InvalidInput(f"{label}: not a readable IRF file: {exc}") from None


@register_tool
class DL3Tool(Tool[DL3Config]):
    """Observed DL2 + an IRF file -> per observation a GADF event list and its IRFs, plus the
    hdu-index/obs-index tables (inputs ``dl2``: one or more files, ``irf``: one file)."""

    name: ClassVar[str] = "datapipe-dl3"
    description: ClassVar[str] = "DL2 -> DL3 event lists with IRFs and index tables (GADF)"
    config_class: ClassVar[type[ToolConfig]] = DL3Config

    def start(self) -> None:
        irf_paths = self.input("irf")
        if len(irf_paths) != 1:
            raise InvalidInput(f"{self.name}: give exactly one IRF file, got {len(irf_paths)}")
        responses, cuts, irf_header = read_irf(irf_paths[0])
        irf_id = str(irf_header.get("IRF_ID", irf_paths[0].stem))
        by_obs: dict[int, list[Any]] = {}
        for f in read_many(self.input("dl2"), simulated=False):
            by_obs.setdefault(header_value(f.header, "OBS_ID", f.path.name, int), []).append(f)
        written: list[Path] = []
        for _, files in sorted(by_obs.items()):
            header = files[0].header.copy()
            if len(files) > 1:  # several files of one run: the run spans all of them
                header["DATE-OBS"] = min(str(f.header["DATE-OBS"]) for f in files)
                header["DATE-END"] = max(str(f.header["DATE-END"]) for f in files)
            label = ", ".join(f.path.name for f in files)
            obs = convert_observation(
                stack(files),
                header,
                cuts,
                telescope=self.config.telescope,
                instrument=self.config.instrument,
                pointing_interval_s=self.config.pointing_interval_s,
                pointing_tolerance_deg=self.config.pointing_tolerance_deg,
                time_tolerance_s=self.config.time_tolerance_s,
                label=label,
            )
            written += self._write(obs, responses, irf_id)
        for path in gadf.write_index_tables(self.output_dir, written):
            self.add_output(path, "DL3", "index", category=self.config.category)

    def _write(
        self, obs: DL3Observation, responses: list[fits.BinTableHDU], irf_id: str
    ) -> list[Path]:
        stem = f"obs_{obs.obs_id:06d}"
        events_path = self.output_dir / f"{stem}.events.fits"
        irf_path = self.output_dir / f"{stem}.irf.fits"
        meta = {
            "DATALEVL": "DL3",
            "DATACAT": self.config.category,
            "OBS_ID": obs.obs_id,
            "OBSNIGHT": obs.night.isoformat(),
            "DATE-OBS": obs.start.utc.isot,
            "DATE-END": obs.end.utc.isot,
            "TARGET": obs.target,
            "RA_OBJ": obs.ra_obj,
            "DEC_OBJ": obs.dec_obj,
            "IRF_ID": irf_id,
            "TELESCOP": self.config.telescope,
            "CREATOR": f"dpps {__version__}",
        }
        gadf.write_fits(
            events_path,
            obs.hdus,
            {
                **meta,
                "DATATYPE": "event list",
                "IRF_FILE": irf_path.name,
                "N_EVENTS": obs.n_events,
            },
        )
        copies = [h.copy() for h in responses]
        for hdu in copies:
            hdu.header["OBS_ID"] = obs.obs_id
        gadf.write_fits(
            irf_path, copies, {**meta, "DATATYPE": "irf", "EVT_FILE": events_path.name}
        )
        common = {
            "obs_id": obs.obs_id,
            "category": self.config.category,
            "target": obs.target,
            "irf_id": irf_id,
        }
        self.add_output(events_path, "DL3", "event list", **common)
        self.add_output(irf_path, "DL3", "irf", **common)
        return [events_path, irf_path]
