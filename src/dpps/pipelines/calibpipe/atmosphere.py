"""Choosing the seasonal reference atmospheric model from weather data: pure functions.

Simulations (and so the IRFs) are made for a few reference atmospheres per site; an
observation is analysed with the IRFs of the reference atmosphere closest to the conditions it
was taken in. Here "closest" is measured on what the site's weather station records: the mean
temperature, pressure and humidity over the observation, each difference divided by a typical
seasonal spread (``SCALES``), combined in quadrature. The reference table is built in code;
its values are plausible for the two sites, not official CTAO numbers (a real deployment would
take them from the simulation production's atmosphere profiles).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dpps.core.errors import InvalidInput

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ReferenceAtmosphere:
    """One reference model: its name, the id simulations know it by, and its climate."""

    name: str  # winter | intermediate | summer
    model_id: str
    temperature_c: float
    pressure_hpa: float
    humidity_pct: float


#: Typical seasonal spreads: one unit of "distance" in each quantity.
SCALES = {"temperature_c": 4.0, "pressure_hpa": 3.0, "humidity_pct": 15.0}

#: Site aliases as written in DL0 headers (``SITE``) -> site key.
SITE_ALIASES = {
    "north": "north",
    "ctao-north": "north",
    "la palma": "north",
    "south": "south",
    "ctao-south": "south",
    "paranal": "south",
}

REFERENCE_MODELS: dict[str, tuple[ReferenceAtmosphere, ...]] = {
    "north": (
        ReferenceAtmosphere("winter", "ctao-north-winter-v1", 3.0, 776.0, 55.0),
        ReferenceAtmosphere("intermediate", "ctao-north-intermediate-v1", 8.5, 779.0, 35.0),
        ReferenceAtmosphere("summer", "ctao-north-summer-v1", 15.0, 782.0, 20.0),
    ),
    "south": (
        ReferenceAtmosphere("winter", "ctao-south-winter-v1", 6.0, 782.0, 20.0),
        ReferenceAtmosphere("intermediate", "ctao-south-intermediate-v1", 11.0, 784.0, 15.0),
        ReferenceAtmosphere("summer", "ctao-south-summer-v1", 16.0, 786.0, 10.0),
    ),
}


def site_key(name: str) -> str:
    """``CTAO-North`` -> ``north``; ``InvalidInput`` for a site without reference models."""
    key = SITE_ALIASES.get(str(name).strip().lower())
    if key is None:
        known = ", ".join(sorted(REFERENCE_MODELS))
        raise InvalidInput(f"no reference atmospheric models for site {name!r} (known: {known})")
    return key


@dataclass(frozen=True, slots=True)
class WeatherSummary:
    """Mean conditions over the samples used (NaN samples of one quantity are left out)."""

    temperature_c: float
    pressure_hpa: float
    humidity_pct: float
    n_samples: int
    time_first: float
    time_last: float


def summarize(
    time: FloatArray,
    temperature: FloatArray,
    pressure: FloatArray,
    humidity: FloatArray,
    *,
    start: float | None = None,
    end: float | None = None,
    min_samples: int = 1,
) -> WeatherSummary:
    """Means over the samples in ``[start, end]`` (all when not given).

    ``InvalidInput`` when a quantity has fewer than ``min_samples`` finite values there, or
    a value is physically impossible (a broken sensor should stop the selection, not skew it).
    """
    arrays = [np.asarray(a, dtype=np.float64) for a in (time, temperature, pressure, humidity)]
    if len({a.shape for a in arrays}) != 1:
        raise InvalidInput("weather columns have different lengths")
    t = arrays[0]
    keep = np.isfinite(t)
    if start is not None:
        keep &= t >= start
    if end is not None:
        keep &= t <= end
    means: list[float] = []
    for name, values, low, high in (
        ("TEMPERATURE", arrays[1], -60.0, 60.0),
        ("PRESSURE", arrays[2], 300.0, 1100.0),
        ("HUMIDITY", arrays[3], 0.0, 100.0),
    ):
        chosen = values[keep & np.isfinite(values)]
        if chosen.size < max(1, min_samples):
            raise InvalidInput(
                f"weather: {chosen.size} valid {name} samples in the time range "
                f"(at least {max(1, min_samples)} needed)"
            )
        if chosen.min() < low or chosen.max() > high:
            raise InvalidInput(
                f"weather: {name} outside the physical range {low}..{high} "
                f"({chosen.min():.4g}..{chosen.max():.4g})"
            )
        means.append(float(chosen.mean()))
    used = t[keep]
    return WeatherSummary(
        temperature_c=means[0],
        pressure_hpa=means[1],
        humidity_pct=means[2],
        n_samples=int(keep.sum()),
        time_first=float(used.min()),
        time_last=float(used.max()),
    )


@dataclass(frozen=True, slots=True)
class AtmosphereSelection:
    site: str
    model: ReferenceAtmosphere
    distances: dict[str, float]  # model name -> distance (dimensionless)
    weather: WeatherSummary


def distance(model: ReferenceAtmosphere, weather: WeatherSummary) -> float:
    return math.sqrt(
        sum(
            ((getattr(weather, key) - getattr(model, key)) / scale) ** 2
            for key, scale in SCALES.items()
        )
    )


def select_model(site: str, weather: WeatherSummary) -> AtmosphereSelection:
    """The reference model of ``site`` nearest to ``weather`` (ties: the first listed)."""
    key = site_key(site)
    models = REFERENCE_MODELS[key]
    distances = {m.name: distance(m, weather) for m in models}
    best = min(models, key=lambda m: distances[m.name])
    return AtmosphereSelection(key, best, distances, weather)
