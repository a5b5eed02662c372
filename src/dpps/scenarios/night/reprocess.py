"""Reprocessing shows its worth: the night's DL0 again, with a retrained classifier.

After a night (``run_night``) its DL0 is reprocessed by a campaign (``dpps.pipelines.campaign``,
with its record, as ``dpps campaign reprocess`` runs it) whose new software version uses
models trained on four times the simulated showers (``models.RETRAINED``). The retrained
production reuses the DL1 of the night production's IRF runs, so both versions' separation
is measured on the same simulated events, and it is archived like the night's (category SIM,
``night_production``). The campaign's DL3 become new versions of the night's; its report
compares them with the versions they superseded (``compare``: separation, quality factor,
ON/OFF, excess, Li & Ma significance).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from dpps.acada import wobble
from dpps.acada.observing import NightPlan
from dpps.pipelines.campaign import CampaignSpec
from dpps.pipelines.campaign.record import run_here
from dpps.pipelines.night.models import RETRAINED, ProductionSize, ensure_models, production_name
from dpps.pipelines.night.workflow import SOFTWARE_VERSION
from dpps.scenarios.night.run import StageFn, quiet, separation_of

if TYPE_CHECKING:
    from dpps.bdms.archive import Archive

#: The new software version: the night's, with the retrained models.
RETRAINED_VERSION = f"{SOFTWARE_VERSION} retrained"


def campaign_spec(
    plan: NightPlan, models: str, irf: str, software_version: str = RETRAINED_VERSION
) -> CampaignSpec:
    """The campaign over the night's blocks with the given models and IRF (category C)."""
    src = plan.source
    obs_ids = plan.obs_ids()
    return CampaignSpec(
        query=f"obs_id in ({', '.join(map(str, obs_ids))})",
        software_version=software_version,
        name=f"retrained-obs{obs_ids[0]}-{obs_ids[-1]}",
        configs={
            "dl2": {"target": {"name": src.name, "ra_deg": src.ra_deg, "dec_deg": src.dec_deg}}
        },
        models=models,
        irf=irf,
    )


def reprocess_night(
    archive: Archive,
    plan: NightPlan | None = None,
    *,
    night_software_version: str = SOFTWARE_VERSION,
    software_version: str = RETRAINED_VERSION,
    size: ProductionSize = RETRAINED,
    stage: StageFn = quiet,
    timeout_s: float = 1800.0,
) -> dict[str, Any]:
    """Retrain (once), reprocess the night's blocks, compare; returns the report (JSON-ready):
    the retrained models and the campaign's report (its ``comparison``: previous vs new)."""
    from dpps.wms.api import WMS

    plan = plan or NightPlan()
    src = plan.source
    if size.gamma_flux is None and size.proton_flux is None:
        size = replace(
            size, gamma_flux=wobble.source_flux(src), proton_flux=wobble.hadron_flux(src)
        )
    models = ensure_models(
        WMS(archive),
        size,
        software_version,
        reuse_from=production_name(night_software_version),
        progress=stage("retrained models + IRF", 1),
        timeout_s=timeout_s,
    )
    spec = campaign_spec(plan, models.models.did, models.irf.did, software_version)
    update = stage("reprocessing campaign", 1)
    report = run_here(archive, replace(spec, timeout_s=timeout_s), tick=update)
    return {
        "models": {
            "produced": models.produced,
            "models": models.models.did,
            "irf": models.irf.did,
            "separation": separation_of(models.irf),
        },
        "campaign": report.to_mapping(),
    }
