"""A whole observing night on one archive: what ``dpps night`` runs (UC-000-4).

A scenario, not a pipeline: it plays the site (ACADA), the archive's daemons and the WMS in
one process, through their public APIs only (``Archive``, ``WMS``, the daemon registry), and
uses the night's pipeline definitions (``dpps.pipelines.night``); pipelines never import it.

1. models and IRF: found in the archive, or produced first through WMS (``models``);
2. the category-B transformation, created once (``transformation``);
3. ACADA writes the night (wobble blocks on a point source, calibration, monitoring);
4. the ingestion queue registers it in place on the on-site RSE;
5. the rule evaluator and transfer daemon replicate it off site while the WMS transformation
   turns each block into DL3 and a quality report (they run interleaved in this process);
6. gammapy analyses the night's DL3 found through archive queries (reflected regions);
7. the report is read back from the catalog.

``StageFn`` lets a caller show progress: ``stage(name, total)`` returns ``update(done, total)``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dpps.acada import wobble
from dpps.acada.observing import NightPlan
from dpps.bdms.types import FileInfo, PageRequest
from dpps.core.errors import DppsError, NotFound, Unavailable
from dpps.core.laps import Laps
from dpps.pipelines.night.models import ProductionSize, ensure_models
from dpps.pipelines.night.transformation import ensure_transformation
from dpps.pipelines.night.workflow import SOFTWARE_VERSION, Target
from dpps.scenarios.night import acquisition, report
from dpps.wms.listings import WorkflowFilter

if TYPE_CHECKING:
    from dpps.bdms.archive import Archive
    from dpps.wms.api import WMS

Update = Callable[[int, int], None]
StageFn = Callable[[str, int], Update]


PRODUCTS_POLICY = "products"


def quiet(_name: str, _total: int) -> Update:
    return lambda _done, _total: None


def _process(
    wms: WMS, archive: Archive, name: str, expected: int, stage: StageFn, timeout_s: float
) -> float:
    """Replicate and let the transformation process every block, interleaved; seconds.

    The catalog is polled at most twice a second (``run_until`` loops every 50 ms when idle:
    asking for the transformation's counts that often would cost the jobs CPU)."""
    started = time.perf_counter()
    update = stage("replicate + process", 1)
    state = {"polled": 0.0, "replicated": False, "done": False}

    def tick() -> None:
        now = time.monotonic()
        if now - float(state["polled"]) < 0.5:
            return
        state["polled"] = now
        if not state["replicated"]:
            acquisition.replication_step(archive)
            state["replicated"] = acquisition.replication_done(archive)
        files = wms.transformation(name).files
        settled = int(files.get("PROCESSED", 0)) + int(files.get("PROBLEMATIC", 0))
        open_ = int(files.get("NEW", 0)) + int(files.get("ASSIGNED", 0))
        state["done"] = bool(state["replicated"]) and sum(files.values()) >= expected and not open_
        update(settled + int(bool(state["replicated"])) * expected, 2 * expected)

    wms.run_until(
        lambda: bool(state["done"]), with_transformations=True, tick=tick, timeout_s=timeout_s
    )
    return time.perf_counter() - started


#: OFF regions per observation: five reflected regions fit at the 0.5 deg wobble offset
#: without touching the ON region or each other (regions up to 0.25 deg in radius).
N_OFF_REGIONS = 5
#: Reference energy of the fitted power law (TeV): near the decorrelation energy of the
#: night's spectrum (most excess events lie at 0.1-0.5 TeV), so the amplitude's error is the
#: flux normalisation's and not the index's lever arm to 1 TeV.
REFERENCE_TEV = 0.3


def analyse(
    archive: Archive,
    target: Target,
    category: str,
    dest: Path,
    obs_ids: Sequence[int] | None = None,
    n_off_regions: int = N_OFF_REGIONS,
    reference_tev: float = REFERENCE_TEV,
) -> dict[str, Any]:
    """The night's DL3 of the target, from archive queries, through gammapy.

    ON/OFF counts, alpha and the Li & Ma (WStat) significance are gammapy's own, of the
    stacked datasets. Warnings raised meanwhile are kept in the result (``warnings``) instead
    of reaching the terminal, so a report states them and a test can require none."""
    from dpps.pipelines.datapipe.dl3_analysis import (
        find_observations,
        fit_power_law,
        retrieve_observations,
    )

    found = find_observations(archive, target.name, category=category)
    if obs_ids is not None:  # this night's blocks, not every night's of the target
        found = [f for f in found if f.obs_id in set(obs_ids)]
    if not found:
        raise NotFound(f"no DL3 event list of {target.name} for observations {obs_ids}")
    retrieve_observations(archive, found, dest)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fit_power_law(
            dest,
            target.ra_deg,
            target.dec_deg,
            n_off_regions=n_off_regions,
            reference_tev=reference_tev,
        )
    result = asdict(fit)
    result["warnings"] = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    return {"observations": [f.obs_id for f in found], "directory": str(dest), **result}


def check_against_truth(
    archive: Archive, analysis: dict[str, Any], irf: FileInfo, source: wobble.Source, dest: Path
) -> dict[str, Any]:
    """The analysis against the simulation: OFF counts against the background IRF's
    prediction (the production's IRF: its protons were weighted to this night's cosmic-ray
    flux), fitted index and amplitude against the simulated spectrum at the fit's reference
    energy; pulls beyond 3 sigma flagged."""
    from dpps.pipelines.datapipe.dl3_analysis import OffExposure, SpectrumFit
    from dpps.pipelines.datapipe.dl3_truth import check, predict_off, read_background

    dest.mkdir(parents=True, exist_ok=True)
    got = archive.get([irf.did], dest, overwrite=True)
    if got.failed:
        raise DppsError(f"IRF {irf.did} not retrieved: {got.failed[0].error}")
    fields = {k: v for k, v in analysis.items() if k in SpectrumFit.__dataclass_fields__}
    exposures = tuple(OffExposure(**x) for x in fields.pop("off_exposure"))
    fit = SpectrumFit(**fields, off_exposure=exposures)
    background = predict_off(read_background(dest / Path(irf.name).name), exposures)
    amplitude_1tev, index = wobble.source_flux(source)
    amplitude = amplitude_1tev * fit.reference_tev ** (-index)
    truth = check(fit, index, amplitude, background)
    return {
        "simulated_index": index,
        "simulated_amplitude": amplitude,
        "reference_tev": fit.reference_tev,
        "index_pull": truth.index_pull,
        "amplitude_pull": truth.amplitude_pull,
        "background": asdict(truth.background),
        "flags": list(truth.flags),
    }


def _replicate_products(archive: Archive, policy: str, stage: StageFn, timeout_s: float) -> None:
    """Rule evaluator and transfers until every product rule of the night is OK."""
    update = stage("replicate products", 1)
    deadline = time.monotonic() + timeout_s
    while not acquisition.replication_done(archive, policy):
        if time.monotonic() > deadline:
            raise DppsError(
                f"products not replicated after {timeout_s:.0f} s: "
                f"{acquisition.rule_states(archive, policy)}"
            )
        if not acquisition.replication_step(archive):
            time.sleep(0.2)
    update(1, 1)


def run_night(
    archive: Archive,
    workdir: Path,
    plan: NightPlan | None = None,
    *,
    size: ProductionSize | None = None,
    software_version: str = SOFTWARE_VERSION,
    category: str = "B",
    stage: StageFn = quiet,
    timeout_s: float = 1800.0,
) -> dict[str, Any]:
    """Run the night; returns the report (JSON-ready)."""
    from dpps.wms.api import WMS

    plan = plan or NightPlan()
    wms = WMS(archive)
    src = plan.source
    target = Target(src.name, src.ra_deg, src.dec_deg)
    laps = Laps()
    lap, seconds = laps.lap, laps.seconds

    # the cuts are optimised for this night's source against this night's cosmic rays, and
    # the background IRF is computed for them: what the OFF regions are compared with
    size = size or ProductionSize()
    if size.gamma_flux is None and size.proton_flux is None:
        size = replace(
            size, gamma_flux=wobble.source_flux(src), proton_flux=wobble.hadron_flux(src)
        )
    models = ensure_models(
        wms, size, software_version, progress=stage("models + IRF", 1), timeout_s=timeout_s
    )
    lap("models")
    # the products get two off-site copies where the workspace defines the policy (older
    # workspaces' dpps.yaml may not)
    policy = PRODUCTS_POLICY if PRODUCTS_POLICY in archive.config.policies else None
    tf = ensure_transformation(
        wms,
        models,
        category=category,
        software_version=software_version,
        target=target,
        policy=policy,
    )
    update = stage("ACADA simulation", plan.blocks)
    files = acquisition.simulate_night(
        archive, plan, on_block=lambda i: update(i + 1, plan.blocks)
    )
    lap("simulate")
    registered = acquisition.ingest(archive)
    lap("ingest")
    _process(wms, archive, tf.name, len(files), stage, timeout_s)
    lap("replicate_process")
    if policy is not None:
        _replicate_products(archive, policy, stage, timeout_s)
        lap("replicate_products")
    info = wms.transformation(tf.name)
    if info.files.get("PROCESSED", 0) == 0:
        problems = "; ".join(p.reason or "" for p in info.problematic[:3])
        raise DppsError(f"no block was processed by {tf.name}: {problems}")
    truth: dict[str, Any] = {}
    try:
        analysis: dict[str, Any] = analyse(
            archive, target, category, workdir / "analysis", plan.obs_ids()
        )
        truth = check_against_truth(archive, analysis, models.irf, src, workdir / "irf")
    except (DppsError, Unavailable) as exc:
        analysis = {"error": str(exc)}
    lap("analysis")
    amplitude, index = wobble.source_flux(src)
    workflow_ids = sorted({wf for wf in _workflows(wms, tf.id)})
    return {
        "workspace": str(archive.config.workspace),
        "plan": {
            "blocks": plan.blocks,
            "block_s": plan.duration_s,
            "obs_ids": plan.obs_ids(),
            "target": target.__dict__,
            "wobble_deg": src.wobble_offset_deg,
        },
        "models": {
            "produced": models.produced,
            "models": models.models.did,
            "irf": models.irf.did,
            # measured by datapipe-irf on the IRF's own simulated runs, not the training ones
            "separation": separation_of(models.irf),
        },
        "acada": {
            "files": len(files),
            "registered": registered,
            "bytes": sum(p.stat().st_size for p in files),
        },
        "replication": {
            "rules": acquisition.rule_states(archive),
            "product_rules": acquisition.rule_states(archive, policy) if policy else {},
            "dl0_files_by_offsite_sites": dict(report.offsite_sites(archive)),
        },
        "transformation": {
            "name": tf.name,
            "files": info.files,
            "tasks": info.tasks,
            "problematic": [p.reason for p in info.problematic],
        },
        "jobs": report.jobs(wms, workflow_ids),
        "volume": report.volume(archive),
        "quality": report.quality_verdicts(archive, category, workdir / "quality", plan.obs_ids()),
        "analysis": analysis,
        "truth": truth,
        "simulated": {"index": index, "amplitude": amplitude, "reference_tev": 1.0},
        "seconds": seconds,
    }


#: The gamma/hadron separation ``datapipe-irf`` writes into the IRF's header (the archive's
#: metadata of the file): report name -> keyword.
_SEPARATION = {
    "gamma_efficiency": "gheff",
    "proton_rejection": "protrej",
    "roc_auc": "rocauc",
    "test_gammas": "ngtest",
    "test_protons": "nptest",
}


def separation_of(irf: FileInfo) -> dict[str, float]:
    """Gamma efficiency and proton rejection at the IRF's cuts and the ROC AUC, measured on
    the IRF's simulated runs (independent of the training); empty for older IRFs."""
    return {k: float(irf.meta[v]) for k, v in _SEPARATION.items() if v in irf.meta}


def _workflows(wms: WMS, transformation_id: int) -> list[int]:
    """Ids of the workflows the transformation made (its tasks), through the WMS's listing."""
    where = WorkflowFilter(transformation_id=transformation_id)
    ids: list[int] = []
    while True:
        page = wms.workflows_page(where, PageRequest(offset=len(ids), limit=1000))
        ids += [w.id for w in page.items]
        if not page.items or len(ids) >= page.total:
            return ids
