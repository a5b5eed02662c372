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
import math
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dpps.acada import monitoring, showers, wobble
from dpps.acada.showers import CAMERAS, CameraSpec, EventType
from dpps.acada.zfits import (
    ArrayEvent,
    HeaderValue,
    TelEvent,
    write_subarray_events,
    write_telescope_events,
)
from dpps.core.errors import InvalidInput

#: TAI - UTC (s), constant since 2017-01-01; DL0 event times are TAI.
TAI_UTC_S = 37
STREAMS = ("SHOWER", "CAL", "MUON")
TRIGGER_SUFFIX = ".trigger"
_ID = uuid.UUID("5b0d3c3e-8c44-4b7f-9d0e-ac0da0d10001")  # namespace of DATAID values


@dataclass(frozen=True, slots=True)
class Telescope:
    tel_id: int
    camera: str
    x_m: float
    y_m: float

    @property
    def spec(self) -> CameraSpec:
        return CAMERAS[self.camera]


@dataclass(frozen=True, slots=True)
class Site:
    name: str
    description: str
    rse: str  # the on-site storage element whose landing area ACADA writes to
    telescopes: dict[int, Telescope]
    subarray_id: int
    weather_id: int
    default_telescopes: tuple[int, ...]


def _ring(ids: range, camera: str, radius: float, phase: float = 0.0) -> dict[int, Telescope]:
    n = len(ids)
    return {
        t: Telescope(
            t,
            camera,
            round(radius * math.cos(phase + 2 * math.pi * i / n), 1),
            round(radius * math.sin(phase + 2 * math.pi * i / n), 1),
        )
        for i, t in enumerate(ids)
    }


#: The simulator's own array layouts (plausible, not official CTAO positions).
SITES: dict[str, Site] = {
    "north": Site(
        "north",
        "CTAO-North",
        "CTAO-N",
        _ring(range(1, 5), "LSTCam", 80.0, math.pi / 4) | _ring(range(5, 14), "NectarCAM", 220.0),
        subarray_id=1,
        weather_id=1,
        default_telescopes=(1, 2, 3, 4),
    ),
    "south": Site(
        "south",
        "CTAO-South",
        "CTAO-S",
        _ring(range(101, 109), "FlashCam", 180.0) | _ring(range(109, 121), "SSTCam", 400.0),
        subarray_id=101,
        weather_id=101,
        default_telescopes=(101, 102, 103, 104),
    ),
}


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate; every field has a small default so a run takes seconds."""

    site: str = "north"
    telescopes: tuple[int, ...] | None = None  # None: the site's default telescopes
    observation_blocks: int = 1
    duration_s: float = 10.0  # per observation block
    event_rate_hz: float = 10.0  # array triggers per second
    events_per_chunk: int = 25
    sdh_per_telescope: int = 1
    muon_fraction: float = 0.05
    calibration_fraction: float = 0.05
    start: dt.datetime = dt.datetime(2026, 11, 21, 22, 0, 0)
    first_sb_id: int = 1
    first_obs_id: int = 1
    gap_s: float = 30.0  # between observation blocks
    compression: str = "zstd3"
    monitoring: bool = True
    triggers: bool = True
    seed: int = 0
    streams: tuple[str, ...] = field(default=STREAMS)
    #: Wobble observations of a point source (None: the legacy fixed pointing at alt 70,
    #: az 180 with every shower from the camera centre). With a source, showers are thrown at
    #: its physical rates and ``event_rate_hz`` x the fractions sets the calibration and muon
    #: events only.
    source: wobble.Source | None = None

    def layout(self) -> Site:
        site = SITES.get(self.site)
        if site is None:
            raise InvalidInput(f"unknown site {self.site!r}; use one of {', '.join(SITES)}")
        return site

    def chosen(self) -> list[Telescope]:
        site = self.layout()
        ids = self.telescopes or site.default_telescopes
        unknown = [t for t in ids if t not in site.telescopes]
        if unknown:
            raise InvalidInput(
                f"telescopes {unknown} are not at site {site.name} "
                f"(its ids: {min(site.telescopes)}..{max(site.telescopes)})"
            )
        return [site.telescopes[t] for t in sorted(set(ids))]

    def validate(self) -> None:
        self.chosen()
        checks = [
            (self.observation_blocks >= 1, "observation_blocks must be >= 1"),
            (self.duration_s > 0, "duration_s must be > 0"),
            (self.event_rate_hz > 0, "event_rate_hz must be > 0"),
            (self.events_per_chunk >= 1, "events_per_chunk must be >= 1"),
            (self.sdh_per_telescope >= 1, "sdh_per_telescope must be >= 1"),
            (0 <= self.muon_fraction + self.calibration_fraction < 1, "fractions must sum < 1"),
            (set(self.streams) <= set(STREAMS) and bool(self.streams), f"streams: {STREAMS}"),
        ]
        if self.source is not None:
            src = self.source
            checks += [
                (0 < src.wobble_offset_deg <= 3, "wobble_offset_deg must be in (0, 3]"),
                (-90 <= src.dec_deg <= 90, "source dec_deg must be in [-90, 90]"),
                (src.gamma_rate_hz >= 0 and src.hadron_rate_hz >= 0, "rates must be >= 0"),
                (0 < src.hadron_cone_deg <= 10, "hadron_cone_deg must be in (0, 10]"),
            ]
        for ok, message in checks:
            if not ok:
                raise InvalidInput(f"simulation: {message}")


@dataclass(frozen=True, slots=True)
class _Planned:
    """One array event before its waveforms exist."""

    event_id: int
    kind: EventType
    unix_s: float
    tel_ids: tuple[int, ...]
    shower: showers.Shower | None


def observing_night(when: dt.datetime) -> dt.date:
    """The date of the evening the night began (day boundary at 12:00 UTC)."""
    return (when - dt.timedelta(hours=12)).date()


def trigger_path(path: Path) -> Path:
    return path.with_name(path.name + TRIGGER_SUFFIX)


def write_trigger(path: Path) -> Path:
    """ACADA's "file complete" signal: ``<file>.trigger``, a symbolic link to the file name."""
    link = trigger_path(path)
    os.symlink(path.name, link)
    return link


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([seed, *key])


def _image(
    rng: np.random.Generator, tel: Telescope, kind: EventType, shower: showers.Shower | None
) -> showers.TelescopeImage:
    spec = tel.spec
    if kind == EventType.SUBARRAY and shower is not None:
        return showers.shower_image(rng, spec, shower, tel.x_m, tel.y_m)
    if kind == EventType.MUON:
        return showers.muon_image(rng, spec)
    if kind == EventType.FLATFIELD:
        return showers.flatfield_image(rng, spec)
    return showers.pedestal_image(spec)


def plan_events(
    config: SimulationConfig,
    obs_id: int,
    start_unix: float,
    camera_xy: tuple[float, float] = (0, 0),
) -> list[_Planned]:
    """The array events of one observation block, in time order, with who saw what."""
    if config.source is not None:
        return _plan_wobble(config, config.source, obs_id, start_unix, camera_xy)
    tels = config.chosen()
    rng = _rng(config.seed, obs_id)
    n = max(1, round(config.event_rate_hz * config.duration_s))
    times = np.sort(rng.uniform(0.0, config.duration_s, n)) + start_unix
    planned: list[_Planned] = []
    n_cal = 0
    for i, t in enumerate(times, start=1):
        u = rng.random()
        if u < config.calibration_fraction:
            kind = EventType.FLATFIELD if n_cal % 2 == 0 else EventType.SKY_PEDESTAL
            n_cal += 1
            planned.append(_Planned(i, kind, float(t), tuple(x.tel_id for x in tels), None))
        elif u < config.calibration_fraction + config.muon_fraction:
            tel = tels[int(rng.integers(len(tels)))]
            planned.append(_Planned(i, EventType.MUON, float(t), (tel.tel_id,), None))
        else:
            planned.append(_shower_event(config, rng, i, float(t), obs_id, tels))
    return planned


def _plan_wobble(
    config: SimulationConfig,
    source: wobble.Source,
    obs_id: int,
    start_unix: float,
    camera_xy: tuple[float, float],
) -> list[_Planned]:
    """Wobble mode: thrown showers that trigger a telescope, plus calibration and muons.

    Event ids number every candidate in time order, and a shower's trigger is decided on the
    image drawn with that id's generator, the very image written later; the ids of showers
    that triggered nothing are simply absent (ids need not be contiguous)."""
    tels = config.chosen()
    rng = _rng(config.seed, obs_id, 7)
    n_other = round(
        config.event_rate_hz
        * config.duration_s
        * (config.calibration_fraction + config.muon_fraction)
    )
    share = config.calibration_fraction / max(
        config.calibration_fraction + config.muon_fraction, 1e-12
    )
    candidates: list[tuple[float, showers.Shower | None, bool]] = [
        (float(t), None, bool(rng.random() < share))
        for t in rng.uniform(0.0, config.duration_s, n_other)
    ]
    candidates += [
        (t, s, False) for t, s in wobble.thrown_showers(rng, source, config.duration_s, camera_xy)
    ]
    candidates.sort(key=lambda c: c[0])
    planned: list[_Planned] = []
    n_cal = 0
    for event_id, (t, shower, calibration) in enumerate(candidates, start=1):
        when = start_unix + t
        if shower is None and calibration:
            kind = EventType.FLATFIELD if n_cal % 2 == 0 else EventType.SKY_PEDESTAL
            n_cal += 1
            planned.append(_Planned(event_id, kind, when, tuple(x.tel_id for x in tels), None))
        elif shower is None:
            tel = tels[int(rng.integers(len(tels)))]
            planned.append(_Planned(event_id, EventType.MUON, when, (tel.tel_id,), None))
        else:
            seen = tuple(
                tel.tel_id
                for tel in tels
                if showers.telescope_triggers(
                    _image(
                        _rng(config.seed, obs_id, event_id, tel.tel_id),
                        tel,
                        EventType.SUBARRAY,
                        shower,
                    )
                )
            )
            if seen:
                planned.append(_Planned(event_id, EventType.SUBARRAY, when, seen, shower))
    return planned


def _shower_event(
    config: SimulationConfig,
    rng: np.random.Generator,
    event_id: int,
    t: float,
    obs_id: int,
    tels: list[Telescope],
) -> _Planned:
    """Draw showers until one triggers a telescope (the array trigger's definition)."""
    best: tuple[float, showers.Shower, int] | None = None
    for _ in range(200):
        shower = showers.draw_shower(rng)
        seen = []
        for tel in tels:
            image = _image(
                _rng(config.seed, obs_id, event_id, tel.tel_id), tel, EventType.SUBARRAY, shower
            )
            if showers.telescope_triggers(image):
                seen.append(tel.tel_id)
            if best is None or image.size_pe > best[0]:
                best = (image.size_pe, shower, tel.tel_id)
        if seen:
            return _Planned(event_id, EventType.SUBARRAY, t, tuple(seen), shower)
    assert best is not None  # the brightest image of 200 tries: small telescopes, low energy
    return _Planned(event_id, EventType.SUBARRAY, t, (best[2],), best[1])


def _stream_of(kind: EventType) -> str:
    if kind == EventType.SUBARRAY:
        return "SHOWER"
    return "MUON" if kind == EventType.MUON else "CAL"


def _tai(unix_s: float) -> tuple[int, int]:
    seconds = math.floor(unix_s)
    return int(seconds) + TAI_UTC_S, round((unix_s - seconds) * 4e9) % 4_000_000_000


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
        ra, dec = wobble.wobble_pointing(src, index)
        (alt,), (az,) = wobble.track(cfg.site, ra, dec, [start_unix + cfg.duration_s / 2])
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
            "WOBANG": (
                wobble.WOBBLE_ANGLES_DEG[index % len(wobble.WOBBLE_ANGLES_DEG)],
                "wobble direction (deg from +RA towards +Dec)",
            ),
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
            ArrayEvent(e.event_id, int(e.kind), *_tai(e.unix_s), e.tel_ids) for e in events
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
        events: list[_Planned],
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
            selected = [e for e in mine if _stream_of(e.kind) == stream]
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

    def tel_events(self, tel: Telescope, part: list[_Planned], obs_id: int) -> Iterator[TelEvent]:
        for e in part:
            rng = _rng(self.config.seed, obs_id, e.event_id, tel.tel_id)
            image = _image(rng, tel, e.kind, e.shower)
            wave = showers.digitise(showers.waveforms(rng, tel.spec, image), tel.spec)
            yield TelEvent(e.event_id, int(e.kind), *_tai(e.unix_s), wave[np.newaxis])

    def monitoring(
        self, night: dt.date, stamp: str, sb_id: int, obs_id: int, start_unix: float
    ) -> None:
        cfg = self.config
        site = cfg.layout()
        end = start_unix + cfg.duration_s
        altaz = None
        if cfg.source is not None:  # the true pointing: the wobble position, tracked
            samples = start_unix + np.arange(max(1, int(cfg.duration_s) + 1), dtype=np.float64)
            altaz = wobble.track(cfg.site, *self.pointing, samples)
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
                rng=_rng(cfg.seed, obs_id, tel.tel_id, 1),
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
            rng=_rng(cfg.seed, obs_id, 0, 2),
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
