"""Data-quality metrics: pure functions from arrays to named numbers.

Every metric has a name in ``METRICS`` (criteria may only name these, so a typo in a criteria
file is an error, not a check that never runs) and is computed per telescope where that makes
sense (``tel_id`` set) or for the whole array. A metric that cannot be computed from the data
given (no DL2 input, no event times) is simply absent; a criterion on it is then "missing".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dpps.pipelines.calibpipe.product import CalibrationProduct
from dpps.pipelines.qualpipe.readers import DL1Images, DL2Events

#: name -> (unit, description). The one list of metrics criteria can use.
METRICS: dict[str, tuple[str, str]] = {
    "dl1.n_images": ("", "telescope images with parameters, per telescope"),
    "dl1.image_rate_hz": ("Hz", "images per second over the span of image times, per tel"),
    "dl1.parametrised_fraction": (
        "",
        "fraction of images with finite width and length (survived cleaning), per tel",
    ),
    "dl1.intensity_median": ("p.e.", "median intensity of parametrised images, per telescope"),
    "dl1.width_median": ("deg", "median Hillas width, per telescope"),
    "dl1.length_median": ("deg", "median Hillas length, per telescope"),
    "dl2.n_events": ("", "reconstructed array events"),
    "dl2.event_rate_hz": ("Hz", "reconstructed events per second over their time span"),
    "dl2.multiplicity_mean": ("", "mean number of telescopes per reconstructed event"),
    "dl2.gh_score_mean": ("", "mean gamma/hadron score"),
    "dl2.gamma_like_fraction": ("", "fraction of events with gh_score > 0.5"),
    "dl2.reco_energy_median": ("TeV", "median reconstructed energy"),
    "dl2.invalid_fraction": ("", "fraction of events with a non-finite energy or score"),
    "calibration.pedestal_width_median": ("adu", "median pedestal width, per telescope"),
    "calibration.gain_median": ("adu/p.e.", "median gain of usable pixels, per telescope"),
    "calibration.unusable_fraction": ("", "fraction of pixels flagged unusable, per telescope"),
    "calibration.time_shift_rms": ("ns", "RMS of the pixel time shifts, per telescope"),
}


@dataclass(frozen=True, slots=True)
class MetricValue:
    name: str
    value: float
    tel_id: int | None = None

    @property
    def unit(self) -> str:
        return METRICS[self.name][0]

    @property
    def label(self) -> str:
        return self.name if self.tel_id is None else f"{self.name}[tel {self.tel_id}]"


def _median(values: NDArray[np.float64]) -> float:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else math.nan


def _duration(times: NDArray[np.float64] | None) -> float | None:
    if times is None:
        return None
    finite = times[np.isfinite(times)]
    if finite.size < 2 or finite.max() <= finite.min():
        return None
    return float(finite.max() - finite.min())


def dl1_metrics(images: DL1Images) -> list[MetricValue]:
    """Per telescope: counts, rates (if times are known) and parameter medians."""
    out: list[MetricValue] = []
    duration = _duration(images.time)
    for tel in sorted(int(t) for t in np.unique(images.tel_id)):
        mine = images.tel_id == tel
        n = int(mine.sum())
        out.append(MetricValue("dl1.n_images", float(n), tel))
        if duration is not None:
            out.append(MetricValue("dl1.image_rate_hz", n / duration, tel))
        good = mine & np.isfinite(images.width) & np.isfinite(images.length)
        out.append(MetricValue("dl1.parametrised_fraction", float(good.sum() / n), tel))
        out.append(MetricValue("dl1.intensity_median", _median(images.intensity[good]), tel))
        out.append(MetricValue("dl1.width_median", _median(images.width[good]), tel))
        out.append(MetricValue("dl1.length_median", _median(images.length[good]), tel))
    return out


def dl2_metrics(events: DL2Events) -> list[MetricValue]:
    n = len(events)
    out = [MetricValue("dl2.n_events", float(n))]
    if n == 0:
        return out
    duration = _duration(events.time)
    if duration is not None:
        out.append(MetricValue("dl2.event_rate_hz", n / duration))
    valid = np.isfinite(events.reco_energy) & np.isfinite(events.gh_score)
    out.append(MetricValue("dl2.invalid_fraction", float(1.0 - valid.mean())))
    if valid.any():
        score = events.gh_score[valid]
        out += [
            MetricValue("dl2.multiplicity_mean", float(np.mean(events.multiplicity[valid]))),
            MetricValue("dl2.gh_score_mean", float(np.mean(score))),
            MetricValue("dl2.gamma_like_fraction", float(np.mean(score > 0.5))),
            MetricValue("dl2.reco_energy_median", float(np.median(events.reco_energy[valid]))),
        ]
    return out


def calibration_metrics(products: Sequence[CalibrationProduct]) -> list[MetricValue]:
    out: list[MetricValue] = []
    for product in sorted(products, key=lambda p: p.tel_id):
        usable = ~product.unusable
        tel = product.tel_id
        out += [
            MetricValue(
                "calibration.pedestal_width_median", _median(product.pedestal_width[usable]), tel
            ),
            MetricValue("calibration.gain_median", _median(product.gain[usable]), tel),
            MetricValue("calibration.unusable_fraction", float(product.unusable.mean()), tel),
            MetricValue(
                "calibration.time_shift_rms",
                float(np.sqrt(np.mean(product.time_shift[usable] ** 2)))
                if usable.any()
                else math.nan,
                tel,
            ),
        ]
    return out
