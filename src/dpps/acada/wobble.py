"""Wobble observations of a point source for the ACADA simulator: pointing, source, showers.

In wobble mode the array tracks a sky position ``wobble_offset_deg`` away from the source, the
direction of the offset changing from block to block (+RA, -RA, +Dec, -Dec, ...), so that a
reflected-regions analysis finds its background in the same field of view. What the simulator
needs from the sky is here, as plain functions:

* ``wobble_pointing``: the tracked RA/Dec of block ``index``;
* ``track``: the horizontal coordinates of that position at given times (the true pointing
  the monitoring tables carry), offline: astropy with the bundled IERS tables, no download;
* ``source_in_camera``: where the source appears in the camera frame (x towards larger
  azimuth, y towards larger altitude: SimPipe's nominal frame), computed exactly at the
  block's mid-time. While tracking, the source keeps its place in the camera up to field
  rotation, a few thousandths of a degree over a block of a minute;
* ``thrown_showers``: gammas from the source and hadrons uniform in a cone, as Poisson
  processes with physical rates, so the simulated flux is known (``source_flux``).

The site coordinates equal ``dpps.pipelines.simpipe.instrument.LOCATIONS`` (a test checks it):
the simulator is part of the archive core and must not import the pipelines.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dpps.acada import showers

#: Array centres (lat deg, lon deg, height m), as SimPipe's ``LOCATIONS``.
SITE_LOCATIONS: dict[str, tuple[float, float, float]] = {
    "north": (28.7616, -17.8906, 2200.0),
    "south": (-24.6833, -70.3167, 2150.0),
}
#: Offset directions of successive blocks, degrees from +RA towards +Dec.
WOBBLE_ANGLES_DEG = (0.0, 180.0, 90.0, 270.0)
#: Thrown energy range (TeV) and core radius (m) of wobble-mode showers; SimPipe's defaults.
E_MIN_TEV, E_MAX_TEV, MAX_CORE_M = 0.05, 50.0, 400.0
GAMMA_INDEX = 2.5  # ``showers.draw_shower``'s gamma spectrum


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


def wobble_pointing(source: Source, index: int) -> tuple[float, float]:
    """RA/Dec (deg) tracked during block ``index``: the source offset along the block's angle."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    angle = WOBBLE_ANGLES_DEG[index % len(WOBBLE_ANGLES_DEG)]
    centre = SkyCoord(source.ra_deg * u.deg, source.dec_deg * u.deg, frame="icrs")
    # position angle is measured from north (+Dec) towards east (+RA)
    moved = centre.directional_offset_by((90.0 - angle) * u.deg, source.wobble_offset_deg * u.deg)
    return float(moved.ra.deg), float(moved.dec.deg)


def track(
    site: str, ra_deg: float, dec_deg: float, unix_s: Sequence[float] | NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(alt, az) in degrees of an ICRS direction at the given times, as seen from ``site``."""
    import astropy.units as u
    from astropy.coordinates import AltAz, EarthLocation, SkyCoord
    from astropy.time import Time
    from astropy.utils import iers

    lat, lon, height = SITE_LOCATIONS[site]
    location = EarthLocation(lat=lat * u.deg, lon=lon * u.deg, height=height * u.m)
    times = Time(np.asarray(unix_s, dtype=np.float64), format="unix")
    with (
        iers.conf.set_temp("auto_download", False),
        iers.conf.set_temp("auto_max_age", None),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")  # IERS extrapolation beyond the bundled table
        altaz = SkyCoord(ra_deg * u.deg, dec_deg * u.deg, frame="icrs").transform_to(
            AltAz(obstime=times, location=location)
        )
    return (
        np.asarray(altaz.alt.deg, dtype=np.float64),
        np.asarray(altaz.az.deg, dtype=np.float64) % 360.0,
    )


def _unit(lon_deg: float, lat_deg: float) -> NDArray[np.float64]:
    lon, lat = math.radians(lon_deg), math.radians(lat_deg)
    return np.array([math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat)])


def to_camera(
    alt_deg: float, az_deg: float, alt0_deg: float, az0_deg: float
) -> tuple[float, float]:
    """(alt, az) -> offsets (deg) in the camera frame around the pointing (alt0, az0).

    The same rotation as SimPipe's ``instrument.altaz_to_nominal`` (x towards larger azimuth,
    y towards larger altitude; exact, no small-angle approximation)."""
    a, z = math.radians(alt0_deg), math.radians(az0_deg)
    tilt = np.array([[math.cos(a), 0, -math.sin(a)], [0, 1, 0], [math.sin(a), 0, math.cos(a)]])
    turn = np.array([[math.cos(z), -math.sin(z), 0], [math.sin(z), math.cos(z), 0], [0, 0, 1]])
    v = (turn @ tilt).T @ _unit(az_deg, alt_deg)
    return (
        math.degrees(math.atan2(v[1], v[0])),
        math.degrees(math.asin(max(-1.0, min(1.0, v[2])))),
    )


def source_in_camera(
    site: str, source: Source, index: int, mid_unix: float
) -> tuple[float, float]:
    """The source's camera-frame position (deg) during block ``index`` (at its mid-time)."""
    ra, dec = wobble_pointing(source, index)
    (alt0,), (az0,) = track(site, ra, dec, [mid_unix])
    (alt,), (az,) = track(site, source.ra_deg, source.dec_deg, [mid_unix])
    return to_camera(float(alt), float(az), float(alt0), float(az0))


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
                e_min_tev=E_MIN_TEV,
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
