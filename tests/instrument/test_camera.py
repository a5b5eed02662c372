"""The camera specs: hexagonal pixel grids, and DL0's digitisation undone within a count."""

from __future__ import annotations

import numpy as np
import pytest

from dpps.instrument.camera import (
    CAMERAS,
    camera_radius_deg,
    digitise,
    pixel_positions,
    undigitise,
)
from dpps.physics import showers

LST = CAMERAS["LSTCam"]


@pytest.mark.parametrize("name", sorted(CAMERAS))
def test_cameras_are_hexagonal_grids_centred_first(name: str) -> None:
    camera = CAMERAS[name]
    x, y = pixel_positions(camera)
    assert x.size == camera.n_pixels
    assert (x[0], y[0]) == (0.0, 0.0)
    radius = np.hypot(x, y)
    assert np.all(np.diff(np.round(radius, 6)) >= 0)  # ordered outwards
    # Nearest neighbours sit one pixel spacing apart, as on a hexagonal grid.
    d = np.hypot(x[1:7] - x[0], y[1:7] - y[0])
    assert np.allclose(d, camera.pixel_spacing_deg)
    assert len({(round(a, 9), round(b, 9)) for a, b in zip(x, y, strict=True)}) == x.size


def test_digitise_round_trips_within_one_count() -> None:
    rng = np.random.default_rng(3)
    image = showers.flatfield_image(rng, LST)
    wave = showers.waveforms(rng, LST, image)
    back = undigitise(digitise(wave, LST), LST)
    assert np.max(np.abs(back - wave)) <= 0.5 / LST.waveform_scale + 1e-4  # float32
    # Unit-area pulses: the summed waveform recovers the photo-electrons of a bright pixel.
    assert abs(float(back.sum(axis=1).mean()) - 80.0) < 5.0


def test_digitise_clips_to_the_uint16_range() -> None:
    wave = np.array([[-1e6, 0.0, 1e6]], dtype=np.float32)
    stored = digitise(wave, LST)
    assert stored.dtype == np.uint16
    assert stored.tolist() == [[0, round(LST.waveform_offset * LST.waveform_scale), 65535]]


def test_camera_radius_is_the_outermost_pixel() -> None:
    x, y = pixel_positions(LST)
    assert camera_radius_deg(LST) == pytest.approx(float(np.hypot(x, y).max()))
    assert 1.5 < camera_radius_deg(LST) < 3.0  # an LST-like field of view
