"""The selections the tests expect, written down independently of the code under test."""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.coordinates import angular_separation
from astropy.table import QTable


def gh_pass(events: QTable, gh: QTable, multiplicity: int) -> np.ndarray:
    """Gamma-like: in a reco-energy bin of ``gh``, score >= its cut, enough telescopes."""
    edges = np.append(gh["low"].to_value(u.TeV), gh["high"][-1].to_value(u.TeV))
    energy = events["reco_energy"].to_value(u.TeV)
    index = np.searchsorted(edges, energy, side="right") - 1
    inside = (index >= 0) & (index < len(gh))
    cut = np.asarray(gh["cut"])[np.clip(index, 0, len(gh) - 1)]
    score = np.asarray(events["gh_score"])
    return inside & (score >= cut) & (np.asarray(events["multiplicity"]) >= multiplicity)


def theta_deg(events: QTable) -> np.ndarray:
    """Angle between reconstructed and true direction."""
    angle = angular_separation(
        events["reco_az"], events["reco_alt"], events["true_az"], events["true_alt"]
    )
    return np.asarray(u.Quantity(angle).to_value(u.deg))
