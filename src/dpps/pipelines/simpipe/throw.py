"""Throwing showers for a run card: pure functions, no I/O.

What a simulation production must get right for the instrument response to be computable is
the *thrown* distribution, because pyirf reweights events by it (``SimulatedEventsInfo``):

* energies from a power law ``dN/dE ~ E^index`` between ``e_min`` and ``e_max``;
* cores uniform on a disc of radius ``max_impact`` around the array centre;
* directions either a point at ``source_offset`` from the pointing, or uniform in solid angle
  within ``view_cone`` of the pointing (diffuse).

Each shower then goes through ``dpps.physics.showers`` for every telescope; a telescope triggers
when its image holds ``trigger_threshold_pe`` photo-electrons, the array when
``min_telescopes`` do. Every random draw comes from a generator seeded by (seed, obs_id) or
(seed, obs_id, shower, telescope), so a telescope's waveform can be recomputed alone, which is
how the writer streams one telescope file at a time without keeping waveforms in memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dpps.instrument.camera import FloatArray, digitise
from dpps.instrument.frames import nominal_to_altaz
from dpps.instrument.sites import Telescope
from dpps.physics import showers
from dpps.pipelines.simpipe.runcard import RunCard


def power_law_energies(
    rng: np.random.Generator, n: int, e_min: float, e_max: float, index: float
) -> FloatArray:
    """``n`` energies with dN/dE ~ E^index on [e_min, e_max] (inverse transform sampling)."""
    u = rng.random(n)
    if math.isclose(index, -1.0):
        return np.asarray(e_min * (e_max / e_min) ** u, dtype=np.float64)
    g = index + 1.0
    lo, hi = e_min**g, e_max**g
    return np.asarray((lo + u * (hi - lo)) ** (1.0 / g), dtype=np.float64)


def core_positions(
    rng: np.random.Generator, n: int, max_impact_m: float
) -> tuple[FloatArray, FloatArray]:
    """Cores uniform on a disc (the area pyirf divides by)."""
    r = max_impact_m * np.sqrt(rng.random(n))
    phi = rng.uniform(0.0, 2 * math.pi, n)
    return r * np.cos(phi), r * np.sin(phi)


def source_directions(
    rng: np.random.Generator, n: int, view_cone_deg: float, offset_deg: float, angle_deg: float
) -> tuple[FloatArray, FloatArray]:
    """Directions in the camera frame (deg): a point source, or uniform in a cone's solid
    angle (cos theta uniform) around the pointing."""
    if view_cone_deg == 0.0:
        a = math.radians(angle_deg)
        return np.full(n, offset_deg * math.cos(a)), np.full(n, offset_deg * math.sin(a))
    cos_theta = rng.uniform(math.cos(math.radians(view_cone_deg)), 1.0, n)
    theta = np.arccos(cos_theta)
    phi = rng.uniform(0.0, 2 * math.pi, n)
    # the point at angle theta from the origin of the offset frame, towards phi
    v0, v1, v2 = np.cos(theta), np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi)
    return np.degrees(np.arctan2(v1, v0)), np.degrees(np.arcsin(v2))


@dataclass(frozen=True)
class ThrownRun:
    """The truth of every shower thrown in a run, and which telescopes saw it."""

    energy_tev: FloatArray
    core_x_m: FloatArray
    core_y_m: FloatArray
    source_x_deg: FloatArray
    source_y_deg: FloatArray
    alt_deg: FloatArray
    az_deg: FloatArray
    seen_by: list[tuple[int, ...]]  # telescope ids that triggered, per shower
    triggered: NDArray[np.bool_]  # the array trigger

    def __len__(self) -> int:
        return int(self.energy_tev.size)

    def shower(self, index: int, hadron: bool) -> showers.Shower:
        return showers.Shower(
            float(self.energy_tev[index]),
            float(self.core_x_m[index]),
            float(self.core_y_m[index]),
            hadron,
            float(self.source_x_deg[index]),
            float(self.source_y_deg[index]),
        )


def image_rng(card: RunCard, index: int, tel_id: int) -> np.random.Generator:
    return np.random.default_rng([card.seed, card.obs_id, index, tel_id])


def throw(card: RunCard, telescopes: list[Telescope]) -> ThrownRun:
    """Draw the run's showers and decide, per telescope and for the array, what triggers."""
    rng = np.random.default_rng([card.seed, card.obs_id])
    n = card.n_showers
    energy = power_law_energies(rng, n, card.e_min_tev, card.e_max_tev, card.spectral_index)
    core_x, core_y = core_positions(rng, n, card.max_impact_m)
    src_x, src_y = source_directions(
        rng, n, card.view_cone_deg, card.source_offset_deg, card.source_angle_deg
    )
    alt, az = nominal_to_altaz(src_x, src_y, card.pointing_alt_deg, card.pointing_az_deg)
    partial = ThrownRun(energy, core_x, core_y, src_x, src_y, alt, az, [], np.zeros(n, bool))
    hadron = card.particle != "gamma"
    seen_by: list[tuple[int, ...]] = []
    for i in range(n):
        shower = partial.shower(i, hadron)
        seen = tuple(
            tel.tel_id
            for tel in telescopes
            if showers.telescope_triggers(
                showers.shower_image(
                    image_rng(card, i, tel.tel_id), tel.spec, shower, tel.x_m, tel.y_m
                ),
                card.trigger_threshold_pe,
            )
        )
        seen_by.append(seen)
    triggered = np.array([len(s) >= card.min_telescopes for s in seen_by], dtype=bool)
    return ThrownRun(energy, core_x, core_y, src_x, src_y, alt, az, seen_by, triggered)


def telescope_waveform(
    card: RunCard, run: ThrownRun, index: int, tel: Telescope
) -> NDArray[np.uint16]:
    """The digitised waveform (channels x pixels x samples) of shower ``index`` in ``tel``;
    the same generator as in ``throw`` redraws the same image, then the waveform."""
    rng = image_rng(card, index, tel.tel_id)
    image = showers.shower_image(
        rng, tel.spec, run.shower(index, card.particle != "gamma"), tel.x_m, tel.y_m
    )
    wave = digitise(showers.waveforms(rng, tel.spec, image), tel.spec)
    return wave[np.newaxis]
