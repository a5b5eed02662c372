"""SimPipe's pure parts: thrown distributions, the sky frame, the off-centre source."""

from __future__ import annotations

import math

import astropy.units as u
import numpy as np
import pytest

from dpps.instrument.camera import CAMERAS
from dpps.instrument.frames import angular_separation
from dpps.physics import showers
from dpps.pipelines.simpipe import throw
from dpps.pipelines.simpipe.instrument import camera_geometry, telescopes
from dpps.pipelines.simpipe.runcard import RunCard


def test_power_law_has_the_thrown_index() -> None:
    rng = np.random.default_rng(1)
    e = throw.power_law_energies(rng, 200_000, 0.1, 100.0, -2.0)
    assert e.min() >= 0.1
    assert e.max() <= 100.0
    # dN/dE ~ E^-2 on [0.1, 100]: the fraction above 1 TeV is (1/1 - 1/100) / (1/0.1 - 1/100)
    above = np.mean(e > 1.0)
    assert above == pytest.approx((1 - 0.01) / (10 - 0.01), rel=0.02)
    flat = throw.power_law_energies(rng, 100_000, 1.0, 10.0, -1.0)
    assert np.mean(flat < math.sqrt(10.0)) == pytest.approx(0.5, abs=0.01)  # log-uniform


def test_cores_are_uniform_on_the_disc() -> None:
    x, y = throw.core_positions(np.random.default_rng(2), 100_000, 400.0)
    r = np.hypot(x, y)
    assert r.max() <= 400.0
    assert np.mean(r < 400.0 / math.sqrt(2)) == pytest.approx(0.5, abs=0.01)  # half the area


def test_directions_point_source_and_view_cone() -> None:
    rng = np.random.default_rng(3)
    x, y = throw.source_directions(rng, 10, 0.0, 0.4, 90.0)
    assert np.allclose(x, 0.0, atol=1e-12)
    assert np.allclose(y, 0.4)
    x, y = throw.source_directions(rng, 100_000, 3.0, 0.4, 90.0)
    theta = angular_separation(y, x, 0.0, 0.0)  # offset frame: (lat, lon) as (alt, az)
    assert theta.max() <= 3.0 + 1e-9
    # uniform in solid angle: half of the cone's solid angle lies within ~2.1213 deg
    half = math.degrees(math.acos((1 + math.cos(math.radians(3.0))) / 2))
    assert np.mean(theta < half) == pytest.approx(0.5, abs=0.01)


def test_image_axes_pass_through_an_off_centre_source() -> None:
    spec = CAMERAS["LSTCam"]
    shower = showers.Shower(2.0, 120.0, -60.0, False, 0.3, 0.4)
    for tel in telescopes("north"):
        image = showers.shower_image(
            np.random.default_rng(tel.tel_id), spec, shower, tel.x_m, tel.y_m
        )
        to_source = np.array([0.3 - image.cog_x_deg, 0.4 - image.cog_y_deg])
        axis = np.array([math.cos(image.psi_rad), math.sin(image.psi_rad)])
        assert abs(axis[0] * to_source[1] - axis[1] * to_source[0]) < 1e-9  # collinear


def test_throw_is_deterministic_and_triggers_need_min_telescopes() -> None:
    card = RunCard(n_showers=120, obs_id=7, seed=3, max_impact_m=300.0)
    tels = telescopes("north")
    a, b = throw.throw(card, tels), throw.throw(card, tels)
    assert np.array_equal(a.energy_tev, b.energy_tev)
    assert a.seen_by == b.seen_by
    assert a.triggered.any()
    assert not a.triggered.all()
    assert all((len(s) >= 2) == t for s, t in zip(a.seen_by, a.triggered, strict=True))
    i = int(np.flatnonzero(a.triggered)[0])
    tel = next(t for t in tels if t.tel_id == a.seen_by[i][0])
    w1 = throw.telescope_waveform(card, a, i, tel)
    assert np.array_equal(w1, throw.telescope_waveform(card, b, i, tel))
    assert w1.shape == (1, tel.spec.n_pixels, tel.spec.n_samples)
    assert w1.dtype == np.uint16
    other = throw.throw(card.model_copy(update={"seed": 4}), tels)
    assert not np.array_equal(other.energy_tev, a.energy_tev)


def test_camera_geometry_is_built_in_code() -> None:
    geom = camera_geometry(CAMERAS["LSTCam"])
    assert geom.n_pixels == 1855
    assert geom.pix_x.unit == u.deg
    assert int(np.median(geom.neighbor_matrix.sum(axis=1))) == 6  # hexagonal grid
