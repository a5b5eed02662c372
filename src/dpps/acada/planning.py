"""Planning the array events of an observation block: when, what kind, seen by whom.

Events are drawn in time order before any waveform exists: showers seen by the telescopes
their light reaches, muon rings seen by one telescope, calibration events seen by all. Every
random draw comes from a generator keyed by (seed, obs_id, ...), and a shower's trigger is
decided on the image drawn with the generator of (seed, obs_id, event_id, tel_id), the very
image the writer draws again later, so planning and writing agree without keeping images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dpps.acada import wobble
from dpps.acada.config import SimulationConfig
from dpps.instrument.events import EventType
from dpps.instrument.sites import Telescope
from dpps.physics import showers


@dataclass(frozen=True, slots=True)
class PlannedEvent:
    """One array event before its waveforms exist."""

    event_id: int
    kind: EventType
    unix_s: float
    tel_ids: tuple[int, ...]
    shower: showers.Shower | None


def rng_for(seed: int, *key: int) -> np.random.Generator:
    """The generator of one draw: keyed, so any event's waveform can be drawn again alone."""
    return np.random.default_rng([seed, *key])


def image_of(
    rng: np.random.Generator, tel: Telescope, kind: EventType, shower: showers.Shower | None
) -> showers.TelescopeImage:
    """What ``tel`` sees of an event of ``kind`` (``shower``: the shower of a SUBARRAY event)."""
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
) -> list[PlannedEvent]:
    """The array events of one observation block, in time order, with who saw what."""
    if config.source is not None:
        return _plan_wobble(config, config.source, obs_id, start_unix, camera_xy)
    tels = config.chosen()
    rng = rng_for(config.seed, obs_id)
    n = max(1, round(config.event_rate_hz * config.duration_s))
    times = np.sort(rng.uniform(0.0, config.duration_s, n)) + start_unix
    planned: list[PlannedEvent] = []
    n_cal = 0
    for i, t in enumerate(times, start=1):
        u = rng.random()
        if u < config.calibration_fraction:
            kind = EventType.FLATFIELD if n_cal % 2 == 0 else EventType.SKY_PEDESTAL
            n_cal += 1
            planned.append(PlannedEvent(i, kind, float(t), tuple(x.tel_id for x in tels), None))
        elif u < config.calibration_fraction + config.muon_fraction:
            tel = tels[int(rng.integers(len(tels)))]
            planned.append(PlannedEvent(i, EventType.MUON, float(t), (tel.tel_id,), None))
        else:
            planned.append(_shower_event(config, rng, i, float(t), obs_id, tels))
    return planned


def _plan_wobble(
    config: SimulationConfig,
    source: wobble.Source,
    obs_id: int,
    start_unix: float,
    camera_xy: tuple[float, float],
) -> list[PlannedEvent]:
    """Wobble mode: thrown showers that trigger a telescope, plus calibration and muons.

    Event ids number every candidate in time order, and a shower's trigger is decided on the
    image drawn with that id's generator, the very image written later; the ids of showers
    that triggered nothing are simply absent (ids need not be contiguous)."""
    tels = config.chosen()
    rng = rng_for(config.seed, obs_id, 7)
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
    planned: list[PlannedEvent] = []
    n_cal = 0
    for event_id, (t, shower, calibration) in enumerate(candidates, start=1):
        when = start_unix + t
        if shower is None and calibration:
            kind = EventType.FLATFIELD if n_cal % 2 == 0 else EventType.SKY_PEDESTAL
            n_cal += 1
            planned.append(PlannedEvent(event_id, kind, when, tuple(x.tel_id for x in tels), None))
        elif shower is None:
            tel = tels[int(rng.integers(len(tels)))]
            planned.append(PlannedEvent(event_id, EventType.MUON, when, (tel.tel_id,), None))
        else:
            seen = tuple(
                tel.tel_id
                for tel in tels
                if showers.telescope_triggers(
                    image_of(
                        rng_for(config.seed, obs_id, event_id, tel.tel_id),
                        tel,
                        EventType.SUBARRAY,
                        shower,
                    )
                )
            )
            if seen:
                planned.append(PlannedEvent(event_id, EventType.SUBARRAY, when, seen, shower))
    return planned


def _shower_event(
    config: SimulationConfig,
    rng: np.random.Generator,
    event_id: int,
    t: float,
    obs_id: int,
    tels: list[Telescope],
) -> PlannedEvent:
    """Draw showers until one triggers a telescope (the array trigger's definition)."""
    best: tuple[float, showers.Shower, int] | None = None
    for _ in range(200):
        shower = showers.draw_shower(rng)
        seen = []
        for tel in tels:
            image = image_of(
                rng_for(config.seed, obs_id, event_id, tel.tel_id), tel, EventType.SUBARRAY, shower
            )
            if showers.telescope_triggers(image):
                seen.append(tel.tel_id)
            if best is None or image.size_pe > best[0]:
                best = (image.size_pe, shower, tel.tel_id)
        if seen:
            return PlannedEvent(event_id, EventType.SUBARRAY, t, tuple(seen), shower)
    assert best is not None  # the brightest image of 200 tries: small telescopes, low energy
    return PlannedEvent(event_id, EventType.SUBARRAY, t, (best[2],), best[1])


def stream_of(kind: EventType) -> str:
    """The stream (file series) an event of ``kind`` is written to."""
    if kind == EventType.SUBARRAY:
        return "SHOWER"
    return "MUON" if kind == EventType.MUON else "CAL"
