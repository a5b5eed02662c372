"""The shower-image model: deterministic, physical enough to find showers with Hillas moments."""

from __future__ import annotations

import math

import numpy as np

from dpps.instrument.camera import CAMERAS, digitise, pixel_positions, undigitise
from dpps.physics import showers

LST = CAMERAS["LSTCam"]


def _charge(wave: np.ndarray, width: int = 7) -> np.ndarray:
    """Largest sum of ``width`` consecutive samples per pixel: a simple charge extractor."""
    cum = np.cumsum(np.pad(wave, ((0, 0), (1, 0))), axis=1)
    return np.asarray((cum[:, width:] - cum[:, :-width]).max(axis=1))


def _hillas(q: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    w = q / q.sum()
    cx, cy = float((w * x).sum()), float((w * y).sum())
    sxx = float((w * (x - cx) ** 2).sum())
    syy = float((w * (y - cy) ** 2).sum())
    sxy = float((w * (x - cx) * (y - cy)).sum())
    return cx, cy, 0.5 * math.atan2(2 * sxy, sxx - syy)


def test_same_seed_same_waveforms_other_seed_differs() -> None:
    shower = showers.Shower(1.0, 60.0, -30.0, hadron=False)

    def wave(seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return showers.waveforms(rng, LST, showers.shower_image(rng, LST, shower, 0.0, 0.0))

    assert np.array_equal(wave(1), wave(1))
    assert not np.array_equal(wave(1), wave(2))


def test_gamma_showers_are_found_where_the_model_put_them() -> None:
    """Integrate, clean, compute Hillas moments: centroid and orientation match the truth."""
    x, y = pixel_positions(LST)
    rng = np.random.default_rng(11)
    found = tried = 0
    while tried < 40:
        shower = showers.draw_shower(rng, hadron_fraction=0.0, e_min_tev=0.1, max_core_m=150.0)
        truth = showers.shower_image(rng, LST, shower, 0.0, 0.0)
        if truth.size_pe < 300 or math.hypot(truth.cog_x_deg, truth.cog_y_deg) > 1.6:
            continue  # too faint, or leaking out of the camera
        tried += 1
        wave = undigitise(digitise(showers.waveforms(rng, LST, truth), LST), LST)
        q = _charge(wave)
        mask = q > 10.0
        cx, cy, psi = _hillas(q[mask], x[mask], y[mask])
        dpsi = abs((psi - truth.psi_rad + math.pi / 2) % math.pi - math.pi / 2)
        if math.hypot(cx - truth.cog_x_deg, cy - truth.cog_y_deg) < 0.1 and dpsi < 0.2:
            found += 1
    assert found >= 36, f"only {found} of {tried} showers found"


def test_image_axis_points_back_to_the_source_and_time_gradient_along_it() -> None:
    rng = np.random.default_rng(5)
    shower = showers.Shower(2.0, 150.0, 0.0, hadron=False)
    image = showers.shower_image(rng, LST, shower, 0.0, 0.0)
    assert image.cog_x_deg > 0.5
    assert abs(image.cog_y_deg) < 1e-9  # on the line source -> core
    bright = image.pe > 5
    x, _ = pixel_positions(LST)
    slope = np.polyfit(x[bright], image.peak_time_ns[bright], 1)[0]
    assert slope > 1.0  # later pulses further from the source, a few ns per degree


def test_muon_ring_radius_is_the_cherenkov_angle() -> None:
    rng = np.random.default_rng(8)
    image = showers.muon_image(rng, LST)
    x, y = pixel_positions(LST)
    ring = image.pe > 0.3 * image.pe.max()
    r = np.hypot(x[ring] - image.cog_x_deg, y[ring] - image.cog_y_deg)
    assert abs(float(np.median(r)) - showers.MUON_RING_DEG) < 0.1
    assert image.size_pe > 1000


def test_pedestal_has_no_signal_and_noise_of_the_model() -> None:
    rng = np.random.default_rng(2)
    wave = showers.waveforms(rng, LST, showers.pedestal_image(LST))
    assert abs(float(wave.mean())) < 0.01
    expected = math.sqrt(LST.noise_pe**2 + LST.nsb_pe_per_ns / LST.sampling_ghz)
    assert abs(float(wave.std()) - expected) < 0.05


def _widths(hadron: bool, n: int, seed: int) -> np.ndarray:
    """True widths of ``n`` 1-TeV showers 80 m from the telescope, each its own shower."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        shower = showers.Shower(1.0 + 1e-6 * i, 80.0, 0.0, hadron)
        out.append(showers.shower_image(rng, LST, shower, 0, 0).width_deg)
    return np.array(out)


def test_hadrons_are_wider_than_gammas_but_their_widths_overlap() -> None:
    """Most proton images are wider (median ~1.5x), but a tail (the electromagnetic-like few
    per cent and the narrow end of the rest) reaches gamma widths, as in real instruments:
    a cut that keeps 90 % of the gammas keeps a fraction of the protons that is neither
    zero nor most of them (bound: 4 binomial sigma around the model's expectation)."""
    n = 600
    gamma, hadron = _widths(False, n, 4), _widths(True, n, 5)
    assert 1.3 < float(np.median(hadron) / np.median(gamma)) < 1.8
    cut = float(np.max(gamma)) * 1.15  # gammas of one energy and impact: one width
    kept = float(np.mean(hadron <= cut))

    def below(ratio: float, median: float, sigma: float) -> float:  # log-normal CDF
        return 0.5 * math.erfc(-math.log(ratio / median) / sigma / math.sqrt(2))

    # the model: the electromagnetic-like few per cent (width x1.08, spread hypot(.05, .05))
    # and the others' log-normal tail (x1.5, spread hypot(.22, .15)): ~20 % kept
    em = showers.EM_LIKE_FRACTION
    expected = em * below(1.15, 1.08, math.hypot(0.05, 0.05)) + (1 - em) * below(
        1.15, 1.5, math.hypot(0.22, 0.15)
    )
    error = math.sqrt(expected * (1 - expected) / n)
    assert 0.03 < expected < 0.3
    assert abs(kept - expected) < 4 * error, (kept, expected)


def test_a_hadron_shower_is_the_same_kind_of_shower_in_every_telescope() -> None:
    """Shower-wide properties (pi0 content, light yield) come from the shower, not from the
    telescope's generator: two telescopes see the same light yield."""
    shower = showers.Shower(2.0, 30.0, -20.0, hadron=True)
    a = showers.hadron_shape(np.random.default_rng(1), shower)
    b = showers.hadron_shape(np.random.default_rng(2), shower)
    assert a.light == b.light
    assert a.width != b.width  # per-image fluctuations remain
