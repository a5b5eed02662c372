"""The two sites: where they are, and the telescopes (id, camera, ground position) on each.

The array layouts are plausible, not official CTAO positions. Telescope ids are unique
across the two sites (as in CTAO's registry), so a telescope id alone says which site it
belongs to. Ground positions are metres from the array centre, x and y axes aligned with the
camera's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dpps.instrument.camera import CAMERAS, CameraSpec


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


@dataclass(frozen=True, slots=True)
class SiteLocation:
    """Where a site is on Earth (DL2 headers carry it so DL3 can convert to RA/Dec)."""

    observatory: str
    lat_deg: float
    lon_deg: float
    height_m: float


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


#: The array layouts (plausible, not official CTAO positions).
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

#: Reference positions of the two CTAO sites (array centres, rounded).
LOCATIONS: dict[str, SiteLocation] = {
    "north": SiteLocation("CTAO-North", 28.7616, -17.8906, 2200.0),
    "south": SiteLocation("CTAO-South", -24.6833, -70.3167, 2150.0),
}
