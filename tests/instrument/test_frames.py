"""The camera frame on the sky: the exact rotations agree with astropy and invert each other."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import AltAz, SkyCoord, SkyOffsetFrame

from dpps.instrument.frames import altaz_to_nominal, angular_separation, nominal_to_altaz


def test_nominal_frame_matches_astropy_sky_offset_frame() -> None:
    x = np.array([0.0, 0.4, -1.5, 2.0])
    y = np.array([0.0, 0.3, 0.7, -2.5])
    alt, az = nominal_to_altaz(x, y, 70.0, 180.0)
    origin = SkyCoord(alt=70 * u.deg, az=180 * u.deg, frame=AltAz())
    offset = SkyCoord(lon=x * u.deg, lat=y * u.deg, frame=SkyOffsetFrame(origin=origin))
    expected = offset.transform_to(AltAz())
    assert np.allclose(alt, expected.alt.deg, atol=1e-9)
    assert np.allclose(az, expected.az.deg, atol=1e-9)
    back_x, back_y = altaz_to_nominal(alt, az, 70.0, 180.0)
    assert np.allclose(back_x, x, atol=1e-9)
    assert np.allclose(back_y, y, atol=1e-9)


def test_angular_separation_of_horizontal_directions() -> None:
    assert float(angular_separation(70.0, 180.0, 70.0, 180.0)) == pytest.approx(0.0, abs=1e-12)
    assert float(angular_separation(0.0, 0.0, 0.0, 90.0)) == pytest.approx(90.0)
    assert float(angular_separation(89.0, 0.0, 89.0, 180.0)) == pytest.approx(2.0)
