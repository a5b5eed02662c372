"""The ACADA simulator: DL0 files written into a landing area the way a telescope site does.

For each observation block (OB) it draws array events in time order (showers seen by the
telescopes their light reaches, muon rings seen by one telescope, calibration events seen by
all), then writes, per telescope, software data handler (SDH) and stream, the chunked zfits
event files; the subarray trigger file; and the pointing and weather monitoring tables. Each
file is closed before its trigger (``<file>.trigger``, a symbolic link to the file's name)
appears, as ACADA does, so a trigger always means "complete".

Layout and names follow the ACADA-DPPS convention::

    dl0/<AE>/events/YYYY/MM/DD/TEL001_SDH001_20261121T220000_SBID0000000001_OBSID0000000001_TEL_SHOWER_CHUNK000.fits.fz
    dl0/<SUB>/events/YYYY/MM/DD/SUB001_SWAT001_<start>_SBID.._OBSID.._SUBARRAY_CHUNK000.fits.fz
    dl0/<AE>/monitoring/YYYY/MM/DD/TEL001_ACADA_<start>_SBID.._OBSID.._POINTING.fits
    dl0/<AUX>/monitoring/YYYY/MM/DD/AUX001_ACADA_<start>_SBID.._OBSID.._WEATHER.fits

where YYYY/MM/DD is the observing night: the date of the evening, the day changing at 12:00
UTC (at both sites this is the same night as a local-noon cut-off). Array-element ids are
unique across the two sites (as in CTAO's registry), so the names never collide.

Everything is a deterministic function of the configuration and the seed.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from dpps.acada import monitoring, wobble
from dpps.acada.config import STREAMS, SimulationConfig
from dpps.acada.planning import PlannedEvent, image_of, plan_events, rng_for, stream_of
from dpps.core.errors import InvalidInput
from dpps.instrument.camera import digitise
from dpps.instrument.clock import observing_night, tai
from dpps.instrument.dl0 import (
    ArrayEvent,
    HeaderValue,
    TelEvent,
    write_subarray_events,
    write_telescope_events,
)
from dpps.instrument.pointing import track, wobble_angle
from dpps.instrument.sites import Telescope
from dpps.physics import showers

#: What other modules take from here: ``SimulationConfig`` and ``STREAMS`` live in
#: ``config`` and are re-exported, since a run is described and started together.
__all__ = [
    "STREAMS",
    "TRIGGER_SUFFIX",
    "SimulationConfig",
    "simulate",
    "trigger_path",
    "write_trigger",
]

TRIGGER_SUFFIX = ".trigger"
_ID = uuid.UUID("5b0d3c3e-8c44-4b7f-9d0e-ac0da0d10001")  # namespace of DATAID values


def trigger_path(path: Path) -> Path:
    return path.with_name(path.name + TRIGGER_SUFFIX)


def write_trigger(path: Path) -> Path:
    """ACADA's "file complete" signal: ``<file>.trigger``, a symbolic link to the file name."""
    link = trigger_path(path)
    os.symlink(path.name, link)
    return link


def _iso(unix_s: float) -> str:
    return dt.datetime.fromtimestamp(unix_s, dt.UTC).replace(tzinfo=None).isoformat("T", "seconds")


class _Writer:
    """Writes the files of one simulation run under ``landing``."""

    def __init__(
        self, landing: Path, config: SimulationConfig, on_file: Callable[[Path], None] | None
    ) -> None:
        self.landing = landing
        self.config = config
        self.on_file = on_file
        self.written: list[Path] = []

    def header(
        self, path: Path, ids: dict[str, HeaderValue], first: float, last: float, **kw: str
    ) -> dict[str, tuple[HeaderValue, str]]:
        night = observing_night(dt.datetime.fromtimestamp(first, dt.UTC).replace(tzinfo=None))
        cards: dict[str, tuple[HeaderValue, str]] = {
            "CTAOMETA": ("1.0", "version of the CTAO product metadata"),
            "ORIGIN": ("CTAO", "organisation that produced the product"),
            "CREATOR": ("dpps ACADA simulator", "software that wrote the file"),
            "CREATED": (_iso(last + 1.0), "file creation (closing) time, UTC"),
            "DATAID": (str(uuid.uuid5(_ID, path.name)), "unique id of this product"),
            "DATALEVL": ("DL0", "CTAO data level"),
            "DATAASSO": (kw["asso"], "what the product is associated with"),
            "DATATYPE": (kw["type"], "product type"),
            "DATADIV": (kw["div"], "data division (stream)"),
            "SITE": (self.config.layout().description, "telescope site"),
            **{k: (v, f"{k.lower().replace('_', ' ')}") for k, v in ids.items()},
            "OBSNIGHT": (night.isoformat(), "observing night (date of the evening)"),
            "TIMESYS": ("UTC", "time scale of DATE-OBS and DATE-END"),
            "DATE-OBS": (_iso(first), "time of the first entry, UTC"),
            "DATE-END": (_iso(last), "time of the last entry, UTC"),
        }
        return cards

    def sky_cards(self, index: int, start_unix: float) -> dict[str, tuple[HeaderValue, str]]:
        """Wobble mode: target and true pointing keywords for the event files' headers."""
        cfg, src = self.config, self.config.source
        if src is None:
            self.pointing: tuple[float, float] = (70.0, 180.0)
            return {}
        ra, dec = wobble.pointing_of(src, index)
        (alt,), (az,) = track(cfg.site, ra, dec, [start_unix + cfg.duration_s / 2])
        self.pointing = (ra, dec)
        return {
            "OBJECT": (src.name, "observed target"),
            "RA_OBJ": (src.ra_deg, "target right ascension (deg, ICRS)"),
            "DEC_OBJ": (src.dec_deg, "target declination (deg, ICRS)"),
            "RA_PNT": (round(ra, 6), "tracked right ascension (deg, ICRS)"),
            "DEC_PNT": (round(dec, 6), "tracked declination (deg, ICRS)"),
            "PNT_ALT": (round(float(alt), 6), "pointing altitude at mid-block (deg)"),
            "PNT_AZ": (round(float(az), 6), "pointing azimuth at mid-block (deg)"),
            "WOBBLE": (src.wobble_offset_deg, "wobble offset of the source (deg)"),
            "WOBANG": (wobble_angle(index), "wobble direction (deg from +RA towards +Dec)"),
        }

    def path(self, ae: str, kind: str, night: dt.date, name: str) -> Path:
        return self.landing / "dl0" / ae / kind / f"{night:%Y/%m/%d}" / name

    def done(self, path: Path) -> None:
        if self.config.triggers:
            write_trigger(path)
        self.written.append(path)
        if self.on_file is not None:
            self.on_file(path)

    def observation(self, index: int) -> None:
        cfg = self.config
        site = cfg.layout()
        obs_id = cfg.first_obs_id + index
        sb_id = cfg.first_sb_id
        start = cfg.start + dt.timedelta(seconds=index * (cfg.duration_s + cfg.gap_s))
        start_unix = start.replace(tzinfo=dt.UTC).timestamp()
        night = observing_night(start)
        stamp = f"{start:%Y%m%dT%H%M%S}_SBID{sb_id:010d}_OBSID{obs_id:010d}"
        self.sky = self.sky_cards(index, start_unix)
        camera_xy = (0.0, 0.0)
        if cfg.source is not None:
            camera_xy = wobble.source_in_camera(
                cfg.site, cfg.source, index, start_unix + cfg.duration_s / 2
            )
        events = plan_events(cfg, obs_id, start_unix, camera_xy)
        if not events:
            raise InvalidInput(
                f"simulation: observation block {obs_id} has no events: raise "
                "the rates or the duration"
            )
        for tel in cfg.chosen():
            self.telescope_files(tel, events, night, stamp, sb_id, obs_id, start_unix)
        sub = f"SUB{site.subarray_id:03d}"
        path = self.path(sub, "events", night, f"{sub}_SWAT001_{stamp}_SUBARRAY_CHUNK000.fits.fz")
        array_events = [
            ArrayEvent(e.event_id, int(e.kind), *tai(e.unix_s), e.tel_ids) for e in events
        ]
        write_subarray_events(
            path,
            header=self.header(
                path,
                {"OBS_ID": obs_id, "SB_ID": sb_id, "SUB_ID": site.subarray_id, "CHUNK_ID": 0},
                events[0].unix_s,
                events[-1].unix_s,
                asso="Subarray",
                type="EVENTS",
                div="TRIGGER",
            ),
            subarray_id=site.subarray_id,
            sb_id=sb_id,
            obs_id=obs_id,
            events=array_events,
            compression=cfg.compression,
        )
        self.done(path)
        if cfg.monitoring:
            self.monitoring(night, stamp, sb_id, obs_id, start_unix)

    def telescope_files(
        self,
        tel: Telescope,
        events: list[PlannedEvent],
        night: dt.date,
        stamp: str,
        sb_id: int,
        obs_id: int,
        start_unix: float,
    ) -> None:
        cfg = self.config
        mine = [e for e in events if tel.tel_id in e.tel_ids]
        ae = f"TEL{tel.tel_id:03d}"
        for stream in cfg.streams:
            selected = [e for e in mine if stream_of(e.kind) == stream]
            for sdh in range(1, cfg.sdh_per_telescope + 1):
                handled = [e for e in selected if e.event_id % cfg.sdh_per_telescope == sdh - 1]
                for chunk, begin in enumerate(range(0, len(handled), cfg.events_per_chunk)):
                    part = handled[begin : begin + cfg.events_per_chunk]
                    name = f"{ae}_SDH{sdh:03d}_{stamp}_TEL_{stream}_CHUNK{chunk:03d}.fits.fz"
                    path = self.path(ae, "events", night, name)
                    ids: dict[str, HeaderValue] = {
                        "OBS_ID": obs_id,
                        "SB_ID": sb_id,
                        "AE_ID": tel.tel_id,
                        "SDH_ID": sdh,
                        "CHUNK_ID": chunk,
                    }
                    header = self.header(
                        path,
                        ids,
                        part[0].unix_s,
                        part[-1].unix_s,
                        asso="Telescope",
                        type="EVENTS",
                        div=stream,
                    )
                    header["INSTRUME"] = (tel.camera, "camera")
                    header.update(self.sky)
                    write_telescope_events(
                        path,
                        header=header,
                        camera=tel.spec,
                        tel_id=tel.tel_id,
                        sb_id=sb_id,
                        obs_id=obs_id,
                        config_time_s=start_unix,
                        events=self.tel_events(tel, part, obs_id),
                        compression=cfg.compression,
                    )
                    self.done(path)

    def tel_events(
        self, tel: Telescope, part: list[PlannedEvent], obs_id: int
    ) -> Iterator[TelEvent]:
        for e in part:
            rng = rng_for(self.config.seed, obs_id, e.event_id, tel.tel_id)
            image = image_of(rng, tel, e.kind, e.shower)
            wave = digitise(showers.waveforms(rng, tel.spec, image), tel.spec)
            yield TelEvent(e.event_id, int(e.kind), *tai(e.unix_s), wave[np.newaxis])

    def monitoring(
        self, night: dt.date, stamp: str, sb_id: int, obs_id: int, start_unix: float
    ) -> None:
        cfg = self.config
        site = cfg.layout()
        end = start_unix + cfg.duration_s
        altaz = None
        if cfg.source is not None:  # the true pointing: the wobble position, tracked
            samples = start_unix + np.arange(max(1, int(cfg.duration_s) + 1), dtype=np.float64)
            altaz = track(cfg.site, *self.pointing, samples)
        for tel in cfg.chosen():
            ae = f"TEL{tel.tel_id:03d}"
            path = self.path(ae, "monitoring", night, f"{ae}_ACADA_{stamp}_POINTING.fits")
            ids: dict[str, HeaderValue] = {"OBS_ID": obs_id, "SB_ID": sb_id, "AE_ID": tel.tel_id}
            header = self.header(
                path, ids, start_unix, end, asso="Telescope", type="MONITORING", div="POINTING"
            )
            monitoring.write_pointing(
                path,
                header=header | self.sky,
                altaz=altaz,
                start_unix=start_unix,
                duration_s=cfg.duration_s,
                alt_deg=70.0,
                az_deg=180.0,
                rng=rng_for(cfg.seed, obs_id, tel.tel_id, 1),
            )
            self.done(path)
        aux = f"AUX{site.weather_id:03d}"
        path = self.path(aux, "monitoring", night, f"{aux}_ACADA_{stamp}_WEATHER.fits")
        ids = {"OBS_ID": obs_id, "SB_ID": sb_id, "AUX_ID": site.weather_id}
        monitoring.write_weather(
            path,
            header=self.header(
                path, ids, start_unix, end, asso="Site", type="MONITORING", div="WEATHER"
            ),
            start_unix=start_unix,
            duration_s=cfg.duration_s,
            rng=rng_for(cfg.seed, obs_id, 0, 2),
        )
        self.done(path)


def simulate(
    landing: Path,
    config: SimulationConfig,
    *,
    on_file: Callable[[Path], None] | None = None,
    on_block: Callable[[int], None] | None = None,
) -> list[Path]:
    """Write the configured observation blocks under ``landing``; returns the data files
    written (triggers not included), in the order they were closed. ``on_file`` is called
    after each file is complete (and its trigger written), ``on_block`` after each block."""
    config.validate()
    writer = _Writer(Path(landing), config, on_file)
    for index in range(config.observation_blocks):
        writer.observation(index)
        if on_block is not None:
            on_block(index)
    return writer.written
