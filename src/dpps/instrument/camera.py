"""The cameras: pixel layout, sampling, optics and the DL0 digitisation, as plain data.

Every part of dpps that turns a camera into numbers uses these specs: the ACADA simulator
and SimPipe draw waveforms for them, DataPipe and CalibPipe read DL0 files whose primary
header names one (``INSTRUME``), QualPipe draws its camera plots with their pixel positions.
They are roughly CTAO's cameras (pixel counts, sampling, mirror areas), not official values.

* A camera is a hexagonal grid of pixels (``pixel_positions``): the pixel nearest the
  centre first, then outwards ring by ring, coordinates in degrees on the sky.
* DL0 stores waveforms as uint16: ``stored = (waveform + offset) * scale`` (``digitise``), so
  ``waveform = stored / scale - offset`` (``undigitise``, what a reader computes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class CameraSpec:
    """What the simulators and the pipelines need to know about a camera and its telescope."""

    name: str
    n_pixels: int
    pixel_spacing_deg: float
    n_samples: int
    sampling_ghz: float
    pulse_sigma_ns: float
    mirror_area_m2: float
    noise_pe: float  # electronic noise per sample, photo-electrons
    nsb_pe_per_ns: float  # night-sky background per pixel
    waveform_scale: float  # DL0 digitisation: stored = (waveform + offset) * scale
    waveform_offset: float

    @property
    def window_ns(self) -> float:
        return self.n_samples / self.sampling_ghz


#: Cameras roughly like CTAO's (pixel counts, sampling, mirror areas); not official values.
CAMERAS: dict[str, CameraSpec] = {
    "LSTCam": CameraSpec("LSTCam", 1855, 0.1, 40, 1.0, 1.2, 370.0, 0.3, 0.25, 80.0, 5.0),
    "NectarCAM": CameraSpec("NectarCAM", 1855, 0.17, 60, 1.0, 1.6, 100.0, 0.3, 0.2, 80.0, 5.0),
    "FlashCam": CameraSpec("FlashCam", 1764, 0.17, 25, 0.25, 4.0, 100.0, 0.3, 0.2, 80.0, 5.0),
    "SSTCam": CameraSpec("SSTCam", 2048, 0.16, 64, 1.0, 2.0, 8.0, 0.2, 0.1, 100.0, 5.0),
}


@cache
def pixel_positions(camera: CameraSpec) -> tuple[FloatArray, FloatArray]:
    """Pixel centres (deg) of a hexagonal camera, nearest to the centre first.

    Ties in radius are broken by angle, so the layout is the same on every machine."""
    n = camera.n_pixels
    rings = math.ceil(math.sqrt(n / 3.0)) + 2
    q, r = np.meshgrid(np.arange(-rings, rings + 1), np.arange(-rings, rings + 1))
    x = (q + 0.5 * r).ravel().astype(np.float64)
    y = (r * math.sqrt(3.0) / 2.0).ravel().astype(np.float64)
    radius = np.round(np.hypot(x, y), 9)
    angle = np.round(np.arctan2(y, x), 9)
    order = np.lexsort((angle, radius))[:n]
    return x[order] * camera.pixel_spacing_deg, y[order] * camera.pixel_spacing_deg


def camera_radius_deg(camera: CameraSpec) -> float:
    x, y = pixel_positions(camera)
    return float(np.hypot(x, y).max())


def digitise(wave: NDArray[np.float32], camera: CameraSpec) -> NDArray[np.uint16]:
    """DL0 storage: ``(waveform + offset) * scale`` rounded and clipped to uint16."""
    stored = np.rint((wave + camera.waveform_offset) * camera.waveform_scale)
    return np.clip(stored, 0, np.iinfo(np.uint16).max).astype(np.uint16)


def undigitise(stored: NDArray[np.uint16], camera: CameraSpec) -> NDArray[np.float32]:
    """The inverse of ``digitise`` (up to rounding): what a DL0 reader computes."""
    return (stored.astype(np.float32) / camera.waveform_scale - camera.waveform_offset).astype(
        np.float32
    )
