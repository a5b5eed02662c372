"""What reprocessing changed: the campaign's DL3 against the versions it superseded.

When a campaign's DL3 event lists are new versions of earlier ones (the same DL0, processed
before with other software or models), both sets are analysed the same way and reported side
by side, with their difference:

- the gamma/hadron separation of the models each set was made with, as ``datapipe-irf``
  measured it on its IRF's simulated runs (independent of the training): gamma efficiency,
  proton rejection, ROC AUC, and the quality factor Q = efficiency / sqrt(1 - rejection),
  the factor by which the cuts raise the significance per sqrt(hour) of a background-dominated
  observation (the flux sensitivity improves as 1/Q), with its statistical error from the
  simulated counts (binomial);
- the 1D ON/OFF analysis of each set with gammapy (as ``dpps night`` does it: reflected
  regions, WStat): ON, OFF, alpha, excess, Li & Ma significance, and the significance per
  sqrt(hour) of livetime;
- the point-source flux sensitivity of each set (``dpps.pipelines.datapipe.sensitivity``):
  per reconstructed-energy bin from its IRF's simulated runs (the ``SENSITIVITY`` table
  ``datapipe-irf`` writes, 50 h), and the one the night's own counts imply (its excess rate
  in ON, its background rate from OFF, scaled to 50 h); each with its error from the counts,
  and the ratio new / previous (the geometric mean over the bins both measured, for the IRF's).

Both versions are found through archive queries (the superseded version is the previous
version of the same LFN, its IRF the per-observation IRF of the same ``irf_id``): nothing is
taken from what the campaign believes it did.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

from dpps.bdms.archive import Archive
from dpps.bdms.types import FileInfo
from dpps.core.errors import DppsError, NotFound
from dpps.pipelines.campaign import chain
from dpps.pipelines.campaign.spec import CampaignSpec
from dpps.pipelines.night.workflow import Target

#: As the night analyses its DL3 (``dpps.scenarios.night.run``): five reflected regions at the
#: 0.5 deg wobble offset, the power law's reference energy near the decorrelation energy.
N_OFF_REGIONS = 5
REFERENCE_TEV = 0.3
#: The IRF header keywords (archive metadata) of the separation -> report names.
_SEPARATION = {
    "gheff": "gamma_efficiency",
    "protrej": "proton_rejection",
    "rocauc": "roc_auc",
    "ngtest": "test_gammas",
    "nptest": "test_protons",
}
#: Figures whose difference (new - previous) the comparison states.
_DIFFERENCES = (
    "gamma_efficiency",
    "proton_rejection",
    "roc_auc",
    "quality_factor",
    "n_on",
    "n_off",
    "alpha",
    "excess",
    "significance",
    "significance_per_sqrt_hour",
)


def quality_factor(
    efficiency: float, rejection: float, n_gammas: int, n_protons: int
) -> tuple[float, float]:
    """(Q, error) of Q = efficiency / sqrt(1 - rejection), the error binomial from the
    simulated counts behind both fractions. No proton passing: Q with one passing (a bound)."""
    passed_p = max(round((1.0 - rejection) * n_protons), 1)
    passed_g = max(round(efficiency * n_gammas), 1)
    f = passed_p / n_protons
    eff = passed_g / n_gammas
    q = eff / math.sqrt(f)
    relative = math.sqrt((1.0 - eff) / passed_g + (1.0 - f) / (4.0 * passed_p))
    return q, q * relative


def separation(archive: Archive, irf_id: str) -> dict[str, Any]:
    """The separation of the production IRF with this ``irf_id`` (its archive metadata)."""
    found = [
        f
        for f in archive.list_files(
            f'data_level=DL3 and product_type=irf and meta.irf_id="{irf_id}"',
            limit=None,
            all_versions=True,
        )
        if all(k in f.meta for k in _SEPARATION)
    ]
    if not found:
        return {"irf": None}
    irf = max(found, key=lambda f: (f.created_at, f.version))
    out: dict[str, Any] = {"irf": f"{irf.scope}:{irf.name}@v{irf.version}"}
    out |= {name: float(irf.meta[key]) for key, name in _SEPARATION.items()}
    out["test_gammas"], out["test_protons"] = int(out["test_gammas"]), int(out["test_protons"])
    q, error = quality_factor(
        out["gamma_efficiency"], out["proton_rejection"], out["test_gammas"], out["test_protons"]
    )
    out["quality_factor"], out["quality_factor_error"] = q, error
    return out


def _pinned(info: FileInfo) -> FileInfo:
    return replace(info, did=f"{info.scope}:{info.name}@v{info.version}")


def _irf_of(archive: Archive, events: FileInfo) -> FileInfo:
    """The per-observation IRF written with this event list (same obs_id, irf_id, category)."""
    irfs = [
        f
        for f in archive.list_files(
            f"data_level=DL3 and product_type=irf and obs_id={events.obs_id}",
            limit=None,
            all_versions=True,
        )
        if f.meta.get("irf_id") == events.meta.get("irf_id") and f.category == events.category
    ]
    if not irfs:
        raise NotFound(f"no IRF with the irf_id of {events.did}")
    return _pinned(max(irfs, key=lambda f: (f.created_at, f.version)))


def _analyse(
    archive: Archive, lists: list[FileInfo], target: Target, dest: Path
) -> dict[str, Any]:
    from dpps.pipelines.datapipe import sensitivity  # the DataPipe stack: not at import
    from dpps.pipelines.datapipe.dl3_analysis import (
        FoundObservation,
        fit_power_law,
        retrieve_observations,
    )

    found = [FoundObservation(int(e.obs_id or 0), _pinned(e), _irf_of(archive, e)) for e in lists]
    retrieve_observations(archive, found, dest)
    irf_sensitivity = _irf_sensitivity([dest / Path(f.irf.name).name for f in found])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fit_power_law(
            dest,
            target.ra_deg,
            target.dec_deg,
            n_off_regions=N_OFF_REGIONS,
            reference_tev=REFERENCE_TEV,
        )
    hours = fit.livetime_s / 3600.0
    measured = (
        sensitivity.implied_by_counts(fit.n_on, fit.n_off, fit.alpha, fit.livetime_s)
        if fit.livetime_s > 0
        else None
    )
    return {
        "sensitivity": {"irf": irf_sensitivity, "measured": measured},
        "n_on": fit.n_on,
        "n_off": fit.n_off,
        "alpha": fit.alpha,
        "excess": fit.excess,
        "significance": fit.significance,
        "livetime_s": fit.livetime_s,
        "significance_per_sqrt_hour": fit.significance / math.sqrt(hours) if hours else None,
        "index": fit.index,
        "index_error": fit.index_error,
        "fit_success": fit.success,
        "warnings": sorted({f"{w.category.__name__}: {w.message}" for w in caught}),
    }


def _irf_sensitivity(paths: list[Path]) -> dict[str, Any] | None:
    """The SENSITIVITY table of these (per-observation) IRFs; None if they have none (written
    before ``datapipe-irf`` computed it, or without protons) or several different ones (one
    version processed with several IRFs: no one sensitivity is its own, as for the
    separation)."""
    from astropy.io import fits

    from dpps.pipelines.datapipe import sensitivity  # the DataPipe stack: not at import

    tables = []
    for path in paths:
        with fits.open(path, memmap=False) as hdul:
            if sensitivity.EXTNAME in hdul:
                tables.append(sensitivity.table_from_hdu(hdul[sensitivity.EXTNAME], path.name))
    if not tables or any(t != tables[0] for t in tables[1:]) or len(tables) != len(paths):
        return None
    return tables[0]


def sensitivity_change(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """New / previous sensitivity (< 1: better), from the IRFs (geometric mean over the bins,
    and over all energies at once) and from the night's counts, each with its error; None
    where a version lacks it."""
    from dpps.pipelines.datapipe import sensitivity  # the DataPipe stack: not at import

    old, new = before["sensitivity"], after["sensitivity"]
    out: dict[str, Any] = {"irf": None, "irf_integral": None, "measured": None}
    if old["irf"] and new["irf"]:
        out["irf"] = sensitivity.figure_of_merit(old["irf"]["bins"], new["irf"]["bins"])
        whole_old = sensitivity.integral(old["irf"]["bins"])
        whole_new = sensitivity.integral(new["irf"]["bins"])
        out["irf_integral"] = {
            "previous": whole_old,
            "new": whole_new,
            **sensitivity.ratio_of(whole_old, whole_new),
        }
    if old["measured"] and new["measured"]:
        out["measured"] = sensitivity.ratio_of(old["measured"], new["measured"])
    return out


def _version(
    archive: Archive, lists: list[FileInfo], dest: Path, target: Target
) -> dict[str, Any]:
    software = {str((e.meta.get("provenance") or {}).get("software_version")) for e in lists}
    irf_ids = sorted({str(e.meta.get("irf_id")) for e in lists})
    out: dict[str, Any] = {
        "software_version": ", ".join(sorted(software)),
        "category": ", ".join(sorted({str(e.category) for e in lists})),
        "event_lists": [f"{e.scope}:{e.name}@v{e.version}" for e in lists],
        "separation": separation(archive, irf_ids[0]) if len(irf_ids) == 1 else {"irf": None},
    }
    out["analysis"] = _analyse(archive, lists, target, dest)
    out["sensitivity"] = out["analysis"].pop("sensitivity")
    return out


def _flat(version: dict[str, Any]) -> dict[str, Any]:
    return {**version["separation"], **version["analysis"]}


def compare(archive: Archive, spec: CampaignSpec) -> dict[str, Any] | None:
    """Previous vs new version of the campaign's DL3 event lists; None when they supersede
    nothing (the first processing of that DL0), ``{"error": ...}`` when the analysis fails."""
    new = [
        f
        for f in archive.list_files(
            f"meta.campaign = '{spec.name}' and data_level=DL3 and product_type='event list'",
            limit=None,
            all_versions=True,
        )
    ]
    previous = []
    for events in new:
        older = archive.list_files(
            f"name = '{events.name}' and version = {events.version - 1}", limit=None
        )
        previous += older
    if not new or len(previous) != len(new):
        return None
    target = chain.target(spec)
    try:
        with tempfile.TemporaryDirectory(prefix="dpps-campaign-compare-") as tmp:
            before = _version(archive, sorted(previous, key=_key), Path(tmp) / "previous", target)
            after = _version(archive, sorted(new, key=_key), Path(tmp) / "new", target)
    except (DppsError, ImportError, ValueError, RuntimeError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    old, now = _flat(before), _flat(after)
    difference = {
        k: now[k] - old[k]
        for k in _DIFFERENCES
        if isinstance(old.get(k), int | float) and isinstance(now.get(k), int | float)
    }
    if "quality_factor" in difference:
        error = math.hypot(old["quality_factor_error"], now["quality_factor_error"])
        difference["quality_factor_error"] = error
        difference["quality_factor_sigmas"] = difference["quality_factor"] / error
    return {
        "target": target.name,
        "observations": sorted({int(e.obs_id or 0) for e in new}),
        "previous": before,
        "new": after,
        "difference": difference,
        "sensitivity": sensitivity_change(before, after),
    }


def _key(info: FileInfo) -> tuple[int, str]:
    return (int(info.obs_id or 0), info.name)


__all__ = ["compare", "quality_factor", "sensitivity_change", "separation"]
