"""The instrument SimPipe simulates and DataPipe reconstructs: arrays, cameras, sky frames.

One description shared by both, so that a DL1 parameter means in DataPipe exactly what the
shower model meant when it drew the image:

* **Arrays** are the ACADA simulator's site layouts (``dpps.acada.simulate.SITES``): telescope
  ids, camera types and ground positions (m, x and y axes aligned with the camera's).
* **Cameras** become ctapipe ``CameraGeometry`` objects in ``TelescopeFrame`` (pixel
  coordinates in degrees on the sky), built in code from ``CameraSpec``; nothing is downloaded.
* **The camera frame on the sky** (the "nominal" frame) is the spherical offset frame centred on
  the pointing: ``x`` (fov_lon) grows with azimuth, ``y`` (fov_lat) with altitude, as astropy's
  ``SkyOffsetFrame`` of an ``AltAz`` origin does. ``nominal_to_altaz`` and ``altaz_to_nominal``
  are the exact rotations (no small-angle approximation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import astropy.units as u
import numpy as np
from numpy.typing import ArrayLike, NDArray

from dpps.acada.showers import CAMERAS, CameraSpec, pixel_positions
from dpps.acada.simulate import SITES, Telescope
from dpps.core.errors import InvalidInput

if TYPE_CHECKING:
    from ctapipe.instrument import CameraGeometry

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class SiteLocation:
    """Where a site is on Earth (DL2 headers carry it so DL3 can convert to RA/Dec)."""

    observatory: str
    lat_deg: float
    lon_deg: float
    height_m: float


#: Reference positions of the two CTAO sites (array centres, rounded).
LOCATIONS: dict[str, SiteLocation] = {
    "north": SiteLocation("CTAO-North", 28.7616, -17.8906, 2200.0),
    "south": SiteLocation("CTAO-South", -24.6833, -70.3167, 2150.0),
}


def site_of_telescope(tel_id: int) -> str:
    """The site a telescope id belongs to (ids are unique across sites)."""
    for name, site in SITES.items():
        if tel_id in site.telescopes:
            return name
    raise InvalidInput(f"telescope id {tel_id} belongs to no known site")


def telescopes(site: str, ids: tuple[int, ...] | None = None) -> list[Telescope]:
    """The chosen telescopes of a site's layout (default: its default sub-array)."""
    layout = SITES.get(site)
    if layout is None:
        raise InvalidInput(f"unknown site {site!r}; use one of {', '.join(SITES)}")
    chosen = ids or layout.default_telescopes
    unknown = sorted(set(chosen) - set(layout.telescopes))
    if unknown:
        raise InvalidInput(f"telescopes {unknown} are not at site {site}")
    return [layout.telescopes[t] for t in sorted(set(chosen))]


def camera_spec(name: str) -> CameraSpec:
    try:
        return CAMERAS[name]
    except KeyError:
        raise InvalidInput(f"unknown camera {name!r} (known: {', '.join(CAMERAS)})") from None


@cache
def camera_geometry(spec: CameraSpec) -> CameraGeometry:
    """ctapipe geometry of a model camera, in TelescopeFrame (degrees on the sky).

    ctapipe is imported here, not at module level: SimPipe jobs never need it (4 s saved)."""
    from ctapipe.coordinates import TelescopeFrame
    from ctapipe.instrument import CameraGeometry

    x, y = pixel_positions(spec)
    area = spec.pixel_spacing_deg**2 * math.sqrt(3) / 2
    return CameraGeometry(
        name=spec.name,
        pix_id=np.arange(x.size),
        pix_x=u.Quantity(x, u.deg),
        pix_y=u.Quantity(y, u.deg),
        pix_area=u.Quantity(np.full(x.size, area), u.deg**2),
        pix_type="hexagon",
        pix_rotation=0 * u.deg,
        cam_rotation=0 * u.deg,
        frame=TelescopeFrame(),
    )


def _unit(lon: FloatArray, lat: FloatArray) -> FloatArray:
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])


def _rotation(alt0_deg: float, az0_deg: float) -> FloatArray:
    """Offset-frame unit vectors -> horizontal-frame unit vectors (az as longitude)."""
    a, z = math.radians(alt0_deg), math.radians(az0_deg)
    tilt = np.array([[math.cos(a), 0, -math.sin(a)], [0, 1, 0], [math.sin(a), 0, math.cos(a)]])
    turn = np.array([[math.cos(z), -math.sin(z), 0], [math.sin(z), math.cos(z), 0], [0, 0, 1]])
    return np.asarray(turn @ tilt, dtype=np.float64)


def nominal_to_altaz(
    x_deg: ArrayLike, y_deg: ArrayLike, alt0_deg: float, az0_deg: float
) -> tuple[FloatArray, FloatArray]:
    """Camera-frame offsets (deg) around a pointing -> (alt, az) in degrees, az in [0, 360)."""
    lon = np.radians(np.asarray(x_deg, dtype=np.float64))
    lat = np.radians(np.asarray(y_deg, dtype=np.float64))
    v = np.tensordot(_rotation(alt0_deg, az0_deg), _unit(lon, lat), axes=1)
    alt = np.degrees(np.arcsin(np.clip(v[2], -1.0, 1.0)))
    az = np.degrees(np.arctan2(v[1], v[0])) % 360.0
    return alt, az


def altaz_to_nominal(
    alt_deg: ArrayLike, az_deg: ArrayLike, alt0_deg: float, az0_deg: float
) -> tuple[FloatArray, FloatArray]:
    """(alt, az) in degrees -> camera-frame offsets (deg) around the pointing."""
    alt = np.radians(np.asarray(alt_deg, dtype=np.float64))
    az = np.radians(np.asarray(az_deg, dtype=np.float64))
    v = np.tensordot(_rotation(alt0_deg, az0_deg).T, _unit(az, alt), axes=1)
    y = np.degrees(np.arcsin(np.clip(v[2], -1.0, 1.0)))
    x = np.degrees(np.arctan2(v[1], v[0]))
    return x, y


def angular_separation(
    alt1: ArrayLike, az1: ArrayLike, alt2: ArrayLike, az2: ArrayLike
) -> FloatArray:
    """Great-circle distance (deg) between horizontal directions (haversine, stable)."""
    a1, a2 = np.radians(np.asarray(alt1, float)), np.radians(np.asarray(alt2, float))
    dz = np.radians(np.asarray(az2, float) - np.asarray(az1, float))
    h = np.sin((a2 - a1) / 2) ** 2 + np.cos(a1) * np.cos(a2) * np.sin(dz / 2) ** 2
    return np.asarray(np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))), dtype=np.float64)
