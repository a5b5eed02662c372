"""Energy and gamma/hadron models: features, training and prediction (scikit-learn).

Per telescope image, as ctapipe does: a random-forest regressor predicts log10(energy) and a
random-forest classifier the probability of a gamma; an array event's estimate is the
intensity-weighted mean over its usable images. Features are image parameters plus two that
the stereo geometry gives (``log_impact``: distance of the telescope from the reconstructed
core; ``disp``: distance of the image centroid from the reconstructed source), which carry the
energy-distance degeneracy of a single image.

Training holds out a fraction of the *events* (never images of the same event on both sides)
to score the models for the model card. Saved models are pickles (joblib): load only models
from a trusted archive.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from numpy.typing import NDArray
from sklearn import __version__ as sklearn_version
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.metrics import r2_score, roc_auc_score

from dpps.core.errors import InvalidInput

FORMAT = "dpps-datapipe-models/1"
FEATURES = (
    "log_intensity",
    "width",
    "length",
    "width_length",
    "skewness",
    "kurtosis",
    "abs_time_slope",
    "leakage_intensity_2",
    "n_islands",
    "concentration_core",
    "log_impact",
    "disp",
    "multiplicity",
)
MISSING = -1.0  # NaN features (e.g. no timing fit) become this: forests split on it cleanly


def image_features(
    params: NDArray[Any],
    impact: NDArray[np.float64],
    disp: NDArray[np.float64],
    multiplicity: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Feature matrix (images x FEATURES) of DL1 parameter rows."""
    with np.errstate(divide="ignore", invalid="ignore"):
        columns = {
            "log_intensity": np.log10(params["intensity"]),
            "width": params["width"],
            "length": params["length"],
            "width_length": params["width"] / params["length"],
            "skewness": params["skewness"],
            "kurtosis": params["kurtosis"],
            "abs_time_slope": np.abs(params["time_slope"]),
            "leakage_intensity_2": params["leakage_intensity_2"],
            "n_islands": params["n_islands"],
            "concentration_core": params["concentration_core"],
            "log_impact": np.log10(impact),
            "disp": disp,
            "multiplicity": multiplicity,
        }
    matrix = np.stack([np.asarray(columns[f], dtype=np.float64) for f in FEATURES], axis=1)
    return np.where(np.isfinite(matrix), matrix, MISSING)


@dataclass(frozen=True)
class ForestSettings:
    n_estimators: int = 100
    max_depth: int | None = 16
    min_samples_leaf: int = 3
    seed: int = 0
    n_jobs: int = 1


@dataclass
class TrainingSet:
    """Images with their features, the event they belong to and the truth."""

    features: NDArray[np.float64]
    event_key: NDArray[np.int64]  # unique per (file, obs_id, event_id)
    intensity: NDArray[np.float64]
    log_energy: NDArray[np.float64]
    is_gamma: NDArray[np.bool_]


@dataclass
class Models:
    energy: RandomForestRegressor
    gh: RandomForestClassifier
    features: tuple[str, ...] = FEATURES
    card: dict[str, Any] = field(default_factory=dict)


def _split(keys: NDArray[np.int64], fraction: float, seed: int) -> NDArray[np.bool_]:
    """True for images of held-out events (a random ``fraction`` of the events)."""
    events = np.unique(keys)
    rng = np.random.default_rng(seed)
    held = rng.random(events.size) < fraction
    return np.isin(keys, events[held])


def combine(
    keys: NDArray[np.int64], values: NDArray[np.float64], weights: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Weighted mean of per-image ``values`` per event key."""
    events, inverse = np.unique(keys, return_inverse=True)
    total = np.bincount(inverse, weights=weights * values, minlength=events.size)
    norm = np.bincount(inverse, weights=weights, minlength=events.size)
    return events, total / norm


def train(data: TrainingSet, settings: ForestSettings, test_fraction: float) -> Models:
    """Fit the regressor on gamma images and the classifier on all; score held-out events."""
    gammas = int(np.unique(data.event_key[data.is_gamma]).size)
    hadrons = int(np.unique(data.event_key[~data.is_gamma]).size)
    if gammas < 10 or hadrons < 10:
        raise InvalidInput(
            f"training needs at least 10 gamma and 10 hadron events with "
            f"usable images, got {gammas} and {hadrons}"
        )
    held = _split(data.event_key, test_fraction, settings.seed)
    fit = ~held

    def forest(cls: Any) -> Any:
        return cls(
            n_estimators=settings.n_estimators,
            max_depth=settings.max_depth,
            min_samples_leaf=settings.min_samples_leaf,
            random_state=settings.seed,
            n_jobs=settings.n_jobs,
        )

    energy = forest(RandomForestRegressor)
    energy.fit(data.features[fit & data.is_gamma], data.log_energy[fit & data.is_gamma])
    gh = forest(RandomForestClassifier)
    gh.fit(data.features[fit], data.is_gamma[fit].astype(int))
    scores: dict[str, Any] = {"held_out_fraction": test_fraction}
    test = held & data.is_gamma
    if test.sum() >= 5:
        pred = energy.predict(data.features[test])
        _, e_pred = combine(data.event_key[test], pred, data.intensity[test])
        _, e_true = combine(data.event_key[test], data.log_energy[test], data.intensity[test])
        scores["energy_r2"] = float(r2_score(e_true, e_pred))
        scores["energy_median_abs_log10_ratio"] = float(np.median(np.abs(e_pred - e_true)))
        scores["energy_bias_log10"] = float(np.median(e_pred - e_true))
    if held.sum() >= 5 and len(set(data.is_gamma[held].tolist())) == 2:
        prob = gh.predict_proba(data.features[held])[:, 1]
        keys, p_event = combine(data.event_key[held], prob, data.intensity[held])
        _, label = combine(
            data.event_key[held], data.is_gamma[held].astype(float), np.ones(int(held.sum()))
        )
        scores["gh_roc_auc"] = float(roc_auc_score(label > 0.5, p_event))
        scores["held_out_events"] = int(keys.size)
    card = {
        "format": FORMAT,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "features": list(FEATURES),
        "sklearn": sklearn_version,
        "energy_model": {
            "type": "RandomForestRegressor",
            "target": "log10(true_energy/TeV)",
            "training_images": int((fit & data.is_gamma).sum()),
        },
        "gh_model": {
            "type": "RandomForestClassifier",
            "target": "gamma (1) vs hadron (0)",
            "training_images": int(fit.sum()),
        },
        "hyperparameters": settings.__dict__,
        "events": {"gamma": gammas, "hadron": hadrons},
        "scores": scores,
    }
    return Models(energy, gh, FEATURES, card)


def predict(
    models: Models,
    features: NDArray[np.float64],
    keys: NDArray[np.int64],
    intensity: NDArray[np.float64],
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """Per event key: reconstructed energy (TeV) and gamma/hadron score in [0, 1]."""
    if features.shape[0] == 0:
        empty = np.zeros(0)
        return np.zeros(0, dtype=np.int64), empty, empty
    log_e = models.energy.predict(features)
    prob = models.gh.predict_proba(features)[:, 1]
    events, e_event = combine(keys, log_e, intensity)
    _, p_event = combine(keys, prob, intensity)
    return events, 10.0**e_event, np.clip(p_event, 0.0, 1.0)


def save(models: Models, path: Path) -> Path:
    temp = path.with_name(f".{path.name}.part")
    joblib.dump(
        {
            "format": FORMAT,
            "features": list(models.features),
            "energy": models.energy,
            "gh": models.gh,
            "card": models.card,
        },
        temp,
        compress=3,
    )
    temp.rename(path)
    return path


def load(path: Path) -> Models:
    """Load saved models; anything else (or another format version) is a clear error."""
    try:
        data = joblib.load(path)
    except Exception as exc:  # a pickle can fail in many ways; all mean "not our models"
        raise InvalidInput(f"{Path(path).name}: cannot load models: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidInput(f"{Path(path).name}: not DataPipe models ({FORMAT})")
    if tuple(data["features"]) != FEATURES:
        raise InvalidInput(
            f"{Path(path).name}: trained on features {data['features']}, this "
            f"version uses {list(FEATURES)}: retrain"
        )
    return Models(data["energy"], data["gh"], FEATURES, dict(data.get("card", {})))
