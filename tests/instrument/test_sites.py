"""Sites, telescopes, time conventions and wobble pointing: the instrument's plain data."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from dpps.instrument.camera import CAMERAS
from dpps.instrument.clock import TAI_UTC_S, observing_night, tai
from dpps.instrument.pointing import WOBBLE_ANGLES_DEG, track, wobble_angle, wobble_pointing
from dpps.instrument.sites import LOCATIONS, SITES


def test_telescope_ids_are_unique_across_sites_and_cameras_known() -> None:
    ids = [t for site in SITES.values() for t in site.telescopes]
    assert len(ids) == len(set(ids))
    for name, site in SITES.items():
        assert site.name == name
        assert set(site.default_telescopes) <= set(site.telescopes)
        assert all(tel.camera in CAMERAS for tel in site.telescopes.values())
        assert all(tel.spec is CAMERAS[tel.camera] for tel in site.telescopes.values())


def test_every_site_has_a_location_named_like_its_observatory() -> None:
    assert set(LOCATIONS) == set(SITES)
    for name, site in SITES.items():
        assert LOCATIONS[name].observatory == site.description
    assert LOCATIONS["north"].lat_deg > 0 > LOCATIONS["south"].lat_deg


def test_observing_night_changes_at_noon_utc() -> None:
    assert observing_night(dt.datetime(2026, 11, 22, 3, 0)) == dt.date(2026, 11, 21)
    assert observing_night(dt.datetime(2026, 11, 22, 11, 59, 59)) == dt.date(2026, 11, 21)
    assert observing_night(dt.datetime(2026, 11, 22, 12, 0)) == dt.date(2026, 11, 22)


def test_tai_is_utc_plus_37_s_in_quarter_nanoseconds() -> None:
    assert TAI_UTC_S == 37
    seconds, qns = tai(1_700_000_000.25)
    assert (seconds, qns) == (1_700_000_037, 1_000_000_000)
    seconds, qns = tai(1_700_000_000.9999999999)  # rounds up to the next second's count
    assert seconds - TAI_UTC_S + qns / 4e9 == pytest.approx(1_700_000_001.0, abs=1e-9)


def test_wobble_blocks_alternate_around_the_source() -> None:
    source = SkyCoord(83.6333, 22.0145, unit="deg")
    assert [wobble_angle(i) for i in range(5)] == [*WOBBLE_ANGLES_DEG, WOBBLE_ANGLES_DEG[0]]
    points = [SkyCoord(*wobble_pointing(83.6333, 22.0145, 0.5, i), unit="deg") for i in range(4)]
    for point in points:
        assert point.separation(source).deg == pytest.approx(0.5, abs=1e-9)
    assert points[0].ra.deg > source.ra.deg > points[1].ra.deg  # +RA, then -RA
    assert points[2].dec.deg > source.dec.deg > points[3].dec.deg  # +Dec, then -Dec


def test_track_follows_the_sky_offline() -> None:
    start = dt.datetime(2026, 11, 22, 1, 0, tzinfo=dt.UTC).timestamp()
    times = start + np.arange(0.0, 3600.0, 600.0)
    alt, az = track("north", 83.6333, 22.0145, times)
    assert alt.shape == az.shape == times.shape
    assert np.all((alt > 0) & (alt <= 90))
    assert np.all((az >= 0) & (az < 360))
    assert np.ptp(az) > 1.0  # an hour of tracking moves the telescope
