"""Unit tests of DataPipe's pure functions: calibration, image parameters, stereo geometry,
model features and combination."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from dpps.core.errors import InvalidInput
from dpps.instrument.camera import CAMERAS, digitise
from dpps.physics import showers
from dpps.pipelines.datapipe import calibration, models
from dpps.pipelines.datapipe.dl1_io import PARAMETER_DTYPE
from dpps.pipelines.datapipe.image import PARAMETERS, ImageSettings, extract, parameters, process
from dpps.pipelines.datapipe.reconstruction import Quality, intersect_lines, reconstruct
from dpps.pipelines.simpipe.instrument import camera_geometry

LST = CAMERAS["LSTCam"]


def write_product(
    path: Path,
    tel_id: int = 1,
    *,
    n: int = LST.n_pixels,
    gain: float = 80.0,
    valid: tuple[str, str] = ("2026-11-21T00:00:00", "2026-11-23T00:00:00"),
    drop: str | None = None,
) -> Path:
    """A calibration product as docs/data-formats.md specifies it."""
    table = Table()
    table["pixel_id"] = np.arange(n)[::-1]  # any order: the reader sorts by pixel id
    table["pedestal"] = np.full(n, 400.0)
    table["pedestal_width"] = np.full(n, 25.0)
    table["gain"] = np.full(n, gain)
    table["time_shift"] = np.full(n, 1.5)
    table["unusable"] = np.zeros(n, bool)
    table["unusable"][-1] = True  # pixel 0, since the order is reversed
    if drop:
        del table[drop]
    hdu = fits.table_to_hdu(table)
    hdu.name = "CALIBRATION"
    primary = fits.PrimaryHDU()
    primary.header["TEL_ID"] = tel_id
    primary.header["HIERARCH VALID_FROM"] = valid[0]
    primary.header["VALID_TO"] = valid[1]
    fits.HDUList([primary, hdu]).writeto(path, checksum=True)
    return path


def test_calibration_product_is_read_sorted_and_selected_by_validity(tmp_path: Path) -> None:
    product = calibration.read_product(write_product(tmp_path / "c1.fits"))
    assert product.tel_id == 1
    assert product.coefficients.unusable[0]
    assert not product.coefficients.unusable[1:].any()
    assert product.coefficients.time_shift[5] == 1.5
    later = calibration.read_product(
        write_product(
            tmp_path / "c2.fits", gain=82.0, valid=("2026-11-22T00:00:00", "2026-11-24T00:00:00")
        )
    )
    both = [product, later]
    assert calibration.select_product(both, 1, dt.datetime(2026, 11, 21, 22)) is product
    assert calibration.select_product(both, 1, dt.datetime(2026, 11, 22, 22)) is later
    assert calibration.select_product(both, 2, dt.datetime(2026, 11, 22, 22)) is None
    with pytest.raises(InvalidInput, match="valid at 2026-12-01"):
        calibration.select_product(both, 1, dt.datetime(2026, 12, 1))


def test_calibration_product_without_a_column_is_refused(tmp_path: Path) -> None:
    path = write_product(tmp_path / "bad.fits", drop="gain")
    with pytest.raises(InvalidInput, match="columns missing"):
        calibration.read_product(path)


def test_calibrate_inverts_the_dl0_digitisation() -> None:
    rng = np.random.default_rng(3)
    wave = rng.normal(0.0, 1.0, (LST.n_pixels, LST.n_samples)).clip(-4, 4).astype(np.float32)
    coeffs = calibration.default_coefficients(
        LST.n_pixels, LST.waveform_scale, LST.waveform_offset
    )
    back = calibration.calibrate(digitise(wave, LST), coeffs)
    assert np.max(np.abs(back - wave)) <= 0.5 / LST.waveform_scale + 1e-6


def test_image_parameters_recover_the_model_ellipse() -> None:
    rng = np.random.default_rng(7)
    shower = showers.Shower(3.0, 150.0, 60.0, False, 0.0, 0.4)
    image = showers.shower_image(rng, LST, shower, 0.0, 0.0)
    wave = showers.waveforms(rng, LST, image)
    zeros = np.zeros(LST.n_pixels)
    row = process(
        camera_geometry(LST),
        wave,
        LST.sampling_ghz,
        zeros,
        np.zeros(LST.n_pixels, bool),
        ImageSettings(),
    )
    assert row["x"] == pytest.approx(image.cog_x_deg, abs=0.03)
    assert row["y"] == pytest.approx(image.cog_y_deg, abs=0.03)
    # ctapipe's psi is the axis direction in (-90, 90] deg: compare modulo 180
    diff = (row["psi"] - math.degrees(image.psi_rad) + 90.0) % 180.0 - 90.0
    assert abs(diff) < 3.0
    assert row["length"] == pytest.approx(image.length_deg, rel=0.2)
    assert row["width"] == pytest.approx(image.width_deg, rel=0.3)
    assert row["intensity"] == pytest.approx(image.size_pe, rel=0.15)
    assert row["n_islands"] == 1
    assert row["leakage_intensity_2"] < 0.05
    assert abs(row["time_slope"]) > 1.0  # ns/deg: the model's time gradient is visible


def test_an_empty_image_keeps_its_row_with_nan_parameters() -> None:
    rng = np.random.default_rng(1)
    wave = showers.waveforms(rng, LST, showers.pedestal_image(LST))
    row = process(
        camera_geometry(LST),
        wave,
        LST.sampling_ghz,
        np.zeros(LST.n_pixels),
        np.zeros(LST.n_pixels, bool),
        ImageSettings(),
    )
    assert row["n_pixels"] < 3
    assert math.isnan(row["width"])
    assert math.isnan(row["psi"])


def test_an_images_parameters_do_not_depend_on_the_images_parameterised_before_it() -> None:
    """A WMS worker runs many jobs in one process: an image's timing fit must not draw from a
    generator the process shares (ctapipe's), or the night's DL1 changes from run to run.

    Peak times of pure noise give the least-trimmed-squares fit several near-equal optima,
    so the result of one fitted with shared random starts changes with every call."""
    rng = np.random.default_rng(2)
    geom = camera_geometry(LST)
    images = []
    for energy in (1.0, 3.0, 3.0):
        shower = showers.Shower(energy, 120.0, 0.0, False, 0.0, 0.4)
        wave = showers.waveforms(rng, LST, showers.shower_image(rng, LST, shower, 0.0, 0.0))
        charge, _ = extract(wave, LST.sampling_ghz, ImageSettings())
        images.append((charge, rng.uniform(0.0, 40.0, LST.n_pixels)))
    unusable = np.zeros(LST.n_pixels, bool)

    def row(i: int) -> np.ndarray:
        values, _mask = parameters(geom, *images[i], unusable, ImageSettings(), seed=(1, i, 1))
        return np.array([values[p] for p in PARAMETERS])

    first = [row(i) for i in range(len(images))]
    assert all(np.isfinite(r[PARAMETERS.index("time_slope")]) for r in first)
    for round_ in range(6):  # the same images again, in either order, as another job would
        order = range(len(images)) if round_ % 2 else reversed(range(len(images)))
        for i in order:
            assert row(i).tobytes() == first[i].tobytes(), f"image {i}, round {round_}"


def test_a_negative_image_seed_is_refused() -> None:
    rng = np.random.default_rng(7)
    shower = showers.Shower(3.0, 150.0, 60.0, False, 0.0, 0.4)
    wave = showers.waveforms(rng, LST, showers.shower_image(rng, LST, shower, 0.0, 0.0))
    args = (camera_geometry(LST), wave, LST.sampling_ghz, np.zeros(LST.n_pixels))
    with pytest.raises(InvalidInput, match="seed must be non-negative"):
        process(*args, np.zeros(LST.n_pixels, bool), ImageSettings(), seed=(1, -5, 1))


def test_bad_image_settings_are_refused() -> None:
    with pytest.raises(InvalidInput):
        ImageSettings(picture_pe=4.0, boundary_pe=8.0)
    with pytest.raises(InvalidInput):
        ImageSettings(window_width=3, window_shift=3)


def test_lines_intersect_where_they_should() -> None:
    source = np.array([0.3, -0.2])
    angles = np.radians([10.0, 75.0, 140.0])
    points = source + 0.7 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    x, y = intersect_lines(points[:, 0], points[:, 1], angles, np.array([1.0, 2.0, 3.0]))
    assert (x, y) == pytest.approx((0.3, -0.2), abs=1e-9)
    # parallel axes (or a single one) have no intersection
    assert all(
        math.isnan(v)
        for v in intersect_lines(
            points[:2, 0], points[:2, 1], np.radians([10.0, 10.0]), np.ones(2)
        )
    )
    assert math.isnan(intersect_lines(points[:1, 0], points[:1, 1], angles[:1], np.ones(1))[0])


def test_reconstruct_finds_direction_and_core_of_a_synthetic_event() -> None:
    tel_pos = {1: (-80.0, 0.0), 2: (80.0, 0.0), 3: (0.0, 90.0)}
    core = np.array([30.0, 40.0])
    source = np.array([0.1, 0.4])
    rows = np.zeros(3, dtype=PARAMETER_DTYPE)
    for i, (tel, pos) in enumerate(tel_pos.items()):
        direction = core - np.array(pos)
        psi = math.atan2(direction[1], direction[0])
        dist = np.hypot(*direction) / 10_000 * 57.3
        rows[i]["obs_id"], rows[i]["event_id"], rows[i]["tel_id"] = 1, 5, tel
        rows[i]["x"], rows[i]["y"] = source + dist * np.array([math.cos(psi), math.sin(psi)])
        rows[i]["psi"] = math.degrees(psi)
        rows[i]["intensity"], rows[i]["width"], rows[i]["length"] = 500.0, 0.05, 0.2
        rows[i]["leakage_intensity_2"] = 0.0
    events, impact, disp = reconstruct(rows, tel_pos, Quality())
    assert len(events) == 1
    assert events[0]["multiplicity"] == 3
    assert (events[0]["reco_x"], events[0]["reco_y"]) == pytest.approx(tuple(source), abs=1e-9)
    assert (events[0]["reco_core_x"], events[0]["reco_core_y"]) == pytest.approx((30, 40))
    assert impact[0] == pytest.approx(np.hypot(110.0, 40.0))
    assert np.all(disp > 0)
    rows["intensity"][:2] = 10.0  # below the quality cut: one image left, no event
    assert len(reconstruct(rows, tel_pos, Quality())[0]) == 0


def test_combine_is_an_intensity_weighted_mean_per_event() -> None:
    keys = np.array([3, 1, 3, 1])
    events, mean = models.combine(
        keys, np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 1.0, 3.0, 1.0])
    )
    assert events.tolist() == [1, 3]
    assert mean.tolist() == [3.0, 2.5]


def test_training_needs_both_classes_and_loading_needs_our_models(tmp_path: Path) -> None:
    n = 40
    data = models.TrainingSet(
        np.zeros((n, len(models.FEATURES))),
        np.arange(n),
        np.ones(n),
        np.zeros(n),
        np.ones(n, bool),
    )
    with pytest.raises(InvalidInput, match="10 gamma and 10 hadron"):
        models.train(data, models.ForestSettings(n_estimators=2), 0.25)
    junk = tmp_path / "models.joblib"
    junk.write_bytes(b"not a pickle")
    with pytest.raises(InvalidInput, match="cannot load models"):
        models.load(junk)
