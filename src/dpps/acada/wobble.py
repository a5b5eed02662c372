"""Wobble observations of a point source for the ACADA simulator: the source and its showers.

The observation geometry (the tracked position of each block, its horizontal coordinates at a
site) is ``dpps.instrument.pointing``, the camera frame ``dpps.instrument.frames``; what is
simulation is here:

* ``Source``: a point source and the rates it and the cosmic rays are thrown at;
* ``source_in_camera``: where the source appears in the camera frame (x towards larger
  azimuth, y towards larger altitude: the nominal frame), computed exactly at the block's
  mid-time. While tracking, the source keeps its place in the camera up to field rotation,
  a few thousandths of a degree over a block of a minute;
* ``thrown_showers``: gammas from the source and hadrons uniform in a cone, as Poisson
  processes with physical rates, so the simulated flux is known (``source_flux``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dpps.instrument.frames import altaz_to_nominal
from dpps.instrument.pointing import track, wobble_pointing
from dpps.physics import showers

#: Thrown energy range (TeV) and core radius (m) of wobble-mode showers; SimPipe's defaults.
E_MIN_TEV, E_MAX_TEV, MAX_CORE_M = (
    showers.THROWN_E_MIN_TEV,
    showers.THROWN_E_MAX_TEV,
    showers.THROWN_MAX_CORE_M,
)
GAMMA_INDEX = 2.5  # ``showers.draw_shower``'s gamma spectrum
HADRON_INDEX = 2.7  # and its hadrons'


@dataclass(frozen=True, slots=True)
class Source:
    """A point source in the sky and the rates it and the cosmic rays are thrown at."""

    name: str
    ra_deg: float
    dec_deg: float
    wobble_offset_deg: float
    gamma_rate_hz: float
    hadron_rate_hz: float
    hadron_cone_deg: float
    #: Lowest hadron energy thrown (TeV): a proton makes a third to a half of a gamma's light,
    #: so the ones below ~0.15 TeV only trigger, never reach the analysis above 0.1 TeV;
    #: throwing from there spends the simulation on the background that matters.
    hadron_e_min_tev: float = E_MIN_TEV


def pointing_of(source: Source, index: int) -> tuple[float, float]:
    """RA/Dec (deg) the array tracks during block ``index`` of an observation of ``source``."""
    return wobble_pointing(source.ra_deg, source.dec_deg, source.wobble_offset_deg, index)


def source_in_camera(
    site: str, source: Source, index: int, mid_unix: float
) -> tuple[float, float]:
    """The source's camera-frame position (deg) during block ``index`` (at its mid-time)."""
    ra, dec = pointing_of(source, index)
    (alt0,), (az0,) = track(site, ra, dec, [mid_unix])
    (alt,), (az,) = track(site, source.ra_deg, source.dec_deg, [mid_unix])
    x, y = altaz_to_nominal(alt, az, float(alt0), float(az0))
    return float(x), float(y)


def thrown_showers(
    rng: np.random.Generator, source: Source, duration_s: float, camera_xy: tuple[float, float]
) -> list[tuple[float, showers.Shower]]:
    """(time offset in the block, shower) of every thrown shower, in time order.

    Gammas come from the source (``camera_xy``), hadrons uniformly from the solid angle of a
    cone of ``hadron_cone_deg`` around the pointing; energies and cores as
    ``showers.draw_shower`` draws them over ``E_MIN_TEV..E_MAX_TEV`` and ``MAX_CORE_M``."""
    out: list[tuple[float, showers.Shower]] = []
    for hadron, rate in ((False, source.gamma_rate_hz), (True, source.hadron_rate_hz)):
        n = int(rng.poisson(rate * duration_s))
        for t in rng.uniform(0.0, duration_s, n):
            drawn = showers.draw_shower(
                rng,
                hadron_fraction=1.0 if hadron else 0.0,
                e_min_tev=source.hadron_e_min_tev if hadron else E_MIN_TEV,
                e_max_tev=E_MAX_TEV,
                max_core_m=MAX_CORE_M,
            )
            if hadron:
                cos_max = math.cos(math.radians(source.hadron_cone_deg))
                theta = math.degrees(math.acos(1.0 - rng.random() * (1.0 - cos_max)))
                phi = rng.uniform(0.0, 2 * math.pi)
                x, y = theta * math.cos(phi), theta * math.sin(phi)
            else:
                x, y = camera_xy
            out.append(
                (
                    float(t),
                    showers.Shower(drawn.energy_tev, drawn.core_x_m, drawn.core_y_m, hadron, x, y),
                )
            )
    out.sort(key=lambda item: item[0])
    return out


def source_flux(source: Source) -> tuple[float, float]:
    """The simulated gamma spectrum: (amplitude at 1 TeV in cm-2 s-1 TeV-1, index).

    ``gamma_rate_hz`` showers per second over the throw disc, power law of index 2.5 between
    ``E_MIN_TEV`` and ``E_MAX_TEV``."""
    g = GAMMA_INDEX
    integral = (E_MIN_TEV ** (1 - g) - E_MAX_TEV ** (1 - g)) / (g - 1)  # of E^-g, in TeV
    area_cm2 = math.pi * (MAX_CORE_M * 100.0) ** 2
    return source.gamma_rate_hz / area_cm2 / integral, g


def hadron_flux(source: Source) -> tuple[float, float]:
    """The simulated cosmic-ray (proton) spectrum: (amplitude at 1 TeV in
    cm-2 s-1 TeV-1 sr-1, index).

    ``hadron_rate_hz`` showers per second over the throw disc and the solid angle of the
    ``hadron_cone_deg`` cone, power law of index 2.7 between ``hadron_e_min_tev`` and
    ``E_MAX_TEV``: what the background IRF must be computed for to predict the night's
    background."""
    g = HADRON_INDEX
    integral = (source.hadron_e_min_tev ** (1 - g) - E_MAX_TEV ** (1 - g)) / (g - 1)
    area_cm2 = math.pi * (MAX_CORE_M * 100.0) ** 2
    solid_angle = 2 * math.pi * (1 - math.cos(math.radians(source.hadron_cone_deg)))
    return source.hadron_rate_hz / area_cm2 / solid_angle / integral, g
