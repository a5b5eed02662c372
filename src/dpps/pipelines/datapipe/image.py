"""One camera image from calibrated waveforms to DL1 parameters: pure, with ctapipe's algorithms.

Steps (the textbook chain): per pixel the charge in a window around the waveform's peak and
the pulse's peak time (``extract_around_peak``); unusable pixels (calibration flags) set to
zero; tailcuts cleaning; then on the surviving pixels Hillas moments, leakage, the timing slope
along the major axis, the number of islands and the concentration. An image too small to
parameterise keeps its row with NaN parameters, so rates and cleaning survival stay countable.

An image's parameters are a function of the image and its identity alone: the timing fit draws
its random starts from a generator seeded by the image's ``seed`` (DataPipe: obs_id, event_id,
tel_id, as SimPipe seeds a telescope's waveforms), not from ctapipe's one generator per process.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from dpps.core.errors import InvalidInput

if TYPE_CHECKING:
    from ctapipe.containers import HillasParametersContainer
    from ctapipe.instrument import CameraGeometry

#: The DL1 image parameters, in the order the DL1 table stores them (all float64).
PARAMETERS = (
    "intensity",
    "n_pixels",
    "x",
    "y",
    "r",
    "phi",
    "psi",
    "length",
    "width",
    "skewness",
    "kurtosis",
    "leakage_pixels_1",
    "leakage_pixels_2",
    "leakage_intensity_1",
    "leakage_intensity_2",
    "time_slope",
    "time_intercept",
    "time_deviation",
    "n_islands",
    "concentration_cog",
    "concentration_core",
    "peak_time_mean",
)


#: Random starts of the least-trimmed-squares timing fit (ctapipe's ``timing_parameters``).
TIMING_FIT_SAMPLES = 5


@dataclass(frozen=True, slots=True)
class ImageSettings:
    """Charge extraction and cleaning settings (DataPipe's DL1 configuration holds them)."""

    window_width: int = 7
    window_shift: int = 3
    picture_pe: float = 8.0
    boundary_pe: float = 4.0
    min_neighbors: int = 2
    min_pixels: int = 3

    def __post_init__(self) -> None:
        if self.window_width < 1 or not 0 <= self.window_shift < self.window_width:
            raise InvalidInput("image: need window_width >= 1 and 0 <= window_shift < width")
        if self.boundary_pe > self.picture_pe:
            raise InvalidInput("image: boundary_pe must not exceed picture_pe")


def extract(
    wave_pe: NDArray[np.float32], sampling_ghz: float, settings: ImageSettings
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Charge (p.e.) and peak time (ns) per pixel from waveforms (pixels x samples)."""
    from ctapipe.image.extractor import extract_around_peak

    peak_index = np.argmax(wave_pe, axis=1)
    charge, peak_time = extract_around_peak(
        wave_pe, peak_index, settings.window_width, settings.window_shift, sampling_ghz
    )
    return charge.astype(np.float64), peak_time.astype(np.float64)


def timing(
    geom: CameraGeometry,
    charge: NDArray[np.float64],
    peak_time: NDArray[np.float64],
    hillas: HillasParametersContainer,
    seed: Sequence[int],
) -> tuple[float, float, float]:
    """Slope (ns/deg), intercept (ns) and RMS deviation (ns) of the peak time along the
    image's major axis, over the cleaned pixels given.

    ctapipe's ``timing_parameters`` (a least-trimmed-squares fit from a few random starts),
    except that the starts come from a generator of this image's own (``seed``). ctapipe
    draws them from one generator per process (``ctapipe.fitting.FIT_RNG``), so an image's
    fit depended on every image the process had fitted before it: on the order of a DL1
    job's input files, which followed their registration. The night's DL1 differed from run
    to run (about 7 % of the images), and with it DL2, DL3 and the ON/OFF counts.
    ``ValueError`` for negative charges, as ctapipe."""
    from ctapipe.fitting import lts_linear_regression
    from ctapipe.image.hillas import camera_to_shower_coordinates
    from ctapipe.utils.quantities import all_to_value

    if not seed or any(int(k) < 0 for k in seed):
        raise InvalidInput(f"image timing: the seed must be non-negative integers, not {seed}")
    if (charge < 0).any():
        raise ValueError("timing: the cleaned pixels must have a charge >= 0")
    pix_x, pix_y, x, y = all_to_value(
        geom.pix_x, geom.pix_y, hillas.fov_lon, hillas.fov_lat, unit=hillas.fov_lon.unit
    )
    longi, _ = camera_to_shower_coordinates(pix_x, pix_y, x, y, hillas.psi.to_value("rad"))
    times = peak_time.astype(np.float64)
    beta, _error = lts_linear_regression(
        x=longi,
        y=times,
        samples=TIMING_FIT_SAMPLES,
        rng=np.random.default_rng(list(seed)),
    )
    deviation = np.sqrt(np.mean((longi * beta[0] + beta[1] - times) ** 2))
    return float(beta[0]), float(beta[1]), float(deviation)


def parameters(
    geom: CameraGeometry,
    charge: NDArray[np.float64],
    peak_time: NDArray[np.float64],
    unusable: NDArray[np.bool_],
    settings: ImageSettings,
    seed: Sequence[int] = (0,),
) -> tuple[dict[str, float], NDArray[np.bool_]]:
    """Clean one image and parameterise it; returns the parameters and the cleaning mask.
    ``seed`` (non-negative integers) identifies the image: its timing fit's random starts."""
    from ctapipe.image import (
        concentration_parameters,
        hillas_parameters,
        leakage_parameters,
        number_of_islands,
        tailcuts_clean,
    )
    from ctapipe.image.hillas import HillasParameterizationError

    charge = np.where(unusable, 0.0, charge)
    mask = tailcuts_clean(
        geom,
        charge,
        picture_thresh=settings.picture_pe,
        boundary_thresh=settings.boundary_pe,
        min_number_picture_neighbors=settings.min_neighbors,
    )
    mask &= ~unusable
    row = dict.fromkeys(PARAMETERS, math.nan)
    row["n_pixels"] = float(mask.sum())
    row["intensity"] = float(charge[mask].sum())
    if mask.sum() < settings.min_pixels:
        return row, mask
    clean_geom, clean_charge, clean_time = geom[mask], charge[mask], peak_time[mask]
    try:
        hillas = hillas_parameters(clean_geom, clean_charge)
    except HillasParameterizationError:
        return row, mask
    if not (np.isfinite(hillas.width.value) and hillas.length.value > 0):
        return row, mask
    row.update(
        x=float(hillas.fov_lon.to_value("deg")),
        y=float(hillas.fov_lat.to_value("deg")),
        r=float(hillas.r.to_value("deg")),
        phi=float(hillas.phi.to_value("deg")),
        psi=float(hillas.psi.to_value("deg")),
        length=float(hillas.length.to_value("deg")),
        width=float(hillas.width.to_value("deg")),
        skewness=float(hillas.skewness),
        kurtosis=float(hillas.kurtosis),
        peak_time_mean=float(np.average(clean_time, weights=clean_charge)),
    )
    leakage = leakage_parameters(geom, charge, mask)
    row.update(
        leakage_pixels_1=float(leakage.pixels_width_1),
        leakage_pixels_2=float(leakage.pixels_width_2),
        leakage_intensity_1=float(leakage.intensity_width_1),
        leakage_intensity_2=float(leakage.intensity_width_2),
    )
    try:
        slope, intercept, deviation = timing(clean_geom, clean_charge, clean_time, hillas, seed)
        row.update(time_slope=slope, time_intercept=intercept, time_deviation=deviation)
    except (ValueError, np.linalg.LinAlgError):
        pass
    n_islands, _ = number_of_islands(geom, mask)
    row["n_islands"] = float(n_islands)
    try:
        conc = concentration_parameters(clean_geom, clean_charge, hillas)
        row.update(concentration_cog=float(conc.cog), concentration_core=float(conc.core))
    except (ValueError, ZeroDivisionError):
        pass
    return row, mask


def process(
    geom: CameraGeometry,
    wave_pe: NDArray[np.float32],
    sampling_ghz: float,
    time_shift: NDArray[np.float64],
    unusable: NDArray[np.bool_],
    settings: ImageSettings,
    seed: Sequence[int] = (0,),
) -> dict[str, float]:
    """Calibrated waveforms of one telescope event -> its DL1 parameters (``seed``: the
    image's identity, see ``parameters``)."""
    charge, peak_time = extract(wave_pe, sampling_ghz, settings)
    row, _ = parameters(geom, charge, peak_time - time_shift, unusable, settings, seed)
    return row
