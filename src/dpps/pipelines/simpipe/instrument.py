"""The instrument as ctapipe sees it, for SimPipe and DataPipe: telescopes, cameras, sites.

The instrument model itself (camera specs, site layouts and locations, the camera frame on
the sky) is ``dpps.instrument``, shared with the ACADA simulator; this module adds the lookups
the pipelines need and the ctapipe view of it:

* **Arrays** are the site layouts of ``dpps.instrument.sites.SITES``: telescope ids, camera
  types and ground positions (m, x and y axes aligned with the camera's).
* **Cameras** become ctapipe ``CameraGeometry`` objects in ``TelescopeFrame`` (pixel
  coordinates in degrees on the sky), built in code from ``CameraSpec``; nothing is downloaded.
* **The camera frame on the sky** (the "nominal" frame) and its rotations to alt/az are
  ``dpps.instrument.frames``.
"""

from __future__ import annotations

import math
from functools import cache
from typing import TYPE_CHECKING

import astropy.units as u
import numpy as np

from dpps.core.errors import InvalidInput
from dpps.instrument.camera import CAMERAS, CameraSpec, pixel_positions
from dpps.instrument.sites import SITES, Telescope

if TYPE_CHECKING:
    from ctapipe.instrument import CameraGeometry


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
