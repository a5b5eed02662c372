"""Where the telescopes point: wobble offsets and the tracked horizontal coordinates.

In wobble mode the array tracks a sky position ``offset_deg`` away from the source, the
direction of the offset changing from block to block (+RA, -RA, +Dec, -Dec, ...), so that a
reflected-regions analysis finds its background in the same field of view. This is
observation geometry, not simulation: the ACADA simulator writes the pointing it computes
here, and an analysis of real wobble data would compute the same.

* ``wobble_pointing``: the tracked RA/Dec of block ``index``;
* ``track``: the horizontal coordinates of an ICRS direction at given times, seen from a site
  (the true pointing the monitoring tables carry), offline: astropy with its bundled IERS
  tables, never a download.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from dpps.instrument.sites import LOCATIONS

#: Offset directions of successive blocks, degrees from +RA towards +Dec.
WOBBLE_ANGLES_DEG = (0.0, 180.0, 90.0, 270.0)


def wobble_angle(index: int) -> float:
    """The offset direction of block ``index`` (deg from +RA towards +Dec)."""
    return WOBBLE_ANGLES_DEG[index % len(WOBBLE_ANGLES_DEG)]


def wobble_pointing(
    ra_deg: float, dec_deg: float, offset_deg: float, index: int
) -> tuple[float, float]:
    """RA/Dec (deg) tracked during block ``index``: the source offset along the block's angle."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    centre = SkyCoord(ra_deg * u.deg, dec_deg * u.deg, frame="icrs")
    # position angle is measured from north (+Dec) towards east (+RA)
    moved = centre.directional_offset_by((90.0 - wobble_angle(index)) * u.deg, offset_deg * u.deg)
    return float(moved.ra.deg), float(moved.dec.deg)


def track(
    site: str, ra_deg: float, dec_deg: float, unix_s: Sequence[float] | NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(alt, az) in degrees of an ICRS direction at the given times, as seen from ``site``."""
    import astropy.units as u
    from astropy.coordinates import AltAz, EarthLocation, SkyCoord
    from astropy.time import Time
    from astropy.utils import iers

    where = LOCATIONS[site]
    location = EarthLocation(
        lat=where.lat_deg * u.deg, lon=where.lon_deg * u.deg, height=where.height_m * u.m
    )
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
