"""The camera frame on the sky (the "nominal" frame) and horizontal coordinates.

The nominal frame is the spherical offset frame centred on the pointing: ``x`` (fov_lon) grows
with azimuth, ``y`` (fov_lat) with altitude, as astropy's ``SkyOffsetFrame`` of an ``AltAz``
origin does. ``nominal_to_altaz`` and ``altaz_to_nominal`` are the exact rotations (no
small-angle approximation). The ACADA simulator places a wobble source in the camera with
them, SimPipe throws shower directions, DataPipe turns reconstructed directions back to
alt/az: one rotation, so a direction means the same thing in all three.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from dpps.instrument.camera import FloatArray


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
