"""The processing chain of one block: the observing night's workflow, adapted to a campaign.

The chain is not written twice: ``dpps.pipelines.night.build_block_workflow`` (calibration ->
DL1 -> DL2 -> DL3, and QualPipe) is built with the campaign's category and software version;
this module only changes what a campaign must change in it:

- where outputs go: each product becomes the next version of the product it supersedes
  (``layout``), others go to the campaign's default layout; every output carries
  ``meta.campaign``, ``meta.software_version`` and its product type;
- the steps' tool options: ``--set STEP.OPTION`` merged into the step's configuration;
- the steps that cannot run: without models no DL2, DL3 or quality; without an IRF no DL3.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from typing import Any

from dpps.bdms.archive import Archive
from dpps.pipelines.campaign import layout
from dpps.pipelines.campaign.spec import CampaignSpec
from dpps.pipelines.night.workflow import Target, build_block_workflow
from dpps.wms.spec import OutputPort, Step, WorkflowSpec

#: (step, port) -> (level, product type) of the products that supersede earlier ones.
PRODUCTS: dict[tuple[str, str], tuple[str, str]] = {
    ("dl1", "dl1"): ("DL1", "image parameters"),
    ("dl2", "dl2"): ("DL2", "reconstructed events"),
    ("dl3", "events"): ("DL3", "event list"),
    ("dl3", "irf"): ("DL3", "irf"),
}
#: Steps (of the night's workflow) that need the models, and the IRF.
NEEDS_MODELS = ("dl2", "dl3", "quality")
NEEDS_IRF = ("dl3",)
#: The campaign's step options apply to these steps of the workflow.
OPTION_STEPS = {
    "dl1": "dl1",
    "dl2": "dl2",
    "dl3": "dl3",
    "camera": "camera",
    "atmosphere": "atmosphere",
    "quality": "quality",
}


def target(spec: CampaignSpec) -> Target:
    given = dict(spec.step_config("dl2").get("target") or {})
    default = Target()
    return Target(
        name=str(given.get("name", default.name)),
        ra_deg=float(given.get("ra_deg", default.ra_deg)),
        dec_deg=float(given.get("dec_deg", default.dec_deg)),
    )


def block_workflow(
    archive: Archive,
    spec: CampaignSpec,
    obs_id: int,
    night: object | None,
    *,
    models: bool,
    irf: bool,
    supersedes: dict[str, str],
) -> WorkflowSpec:
    """The night's workflow for one block, with the campaign's outputs, options and steps."""
    base = build_block_workflow(obs_id, spec.category, spec.software_version, target=target(spec))
    dropped = {s for s in NEEDS_MODELS if not models} | {s for s in NEEDS_IRF if not irf}
    meta = {
        "category": spec.category,
        "campaign": spec.name,
        "software_version": spec.software_version,
    }
    steps = [
        _adapt(archive, spec, step, obs_id, night, meta, supersedes)
        for step in base.steps
        if step.name not in dropped
    ]
    inputs = [
        p for p in base.inputs if (p.name != "models" or models) and (p.name != "irf" or irf)
    ]
    outputs = {k: v for k, v in base.outputs.items() if v.split("/")[0] not in dropped}
    return WorkflowSpec.model_validate(
        {
            "name": f"{spec.name}-obs{obs_id:06d}",
            "inputs": [p.model_dump() for p in inputs],
            "outputs": outputs,
            "steps": [s.model_dump() for s in steps],
        }
    )


def _adapt(
    archive: Archive,
    spec: CampaignSpec,
    step: Step,
    obs_id: int,
    night: object | None,
    meta: Mapping[str, Any],
    supersedes: dict[str, str],
) -> Step:
    outputs = []
    for port in step.tool.outputs:
        product = PRODUCTS.get((step.name, port.name))
        if product is not None:
            where = layout.target(archive, product[0], product[1], obs_id, night)
            lfn, product_type = where.lfn, product[1]
            if where.supersedes:
                supersedes[f"{step.name}/{port.name}"] = where.supersedes
        else:
            level = port.data_level or "OTHER"
            lfn = f"{layout.default_dir(level, obs_id, night)}/$(self.basename)"
            product_type = None
        extra = dict(meta) | ({"product_type": product_type} if product_type else {})
        outputs.append(_relocated(port, lfn, extra))
    tool = step.tool.model_copy(update={"outputs": tuple(outputs)})
    inputs = dict(step.inputs)
    options = spec.step_config(OPTION_STEPS.get(step.name, ""))
    options.pop("target", None)  # the night's workflow takes the target as a parameter
    if options and "config" in inputs:
        config = json.loads(str(inputs["config"].default or "{}"))
        config.update(options)
        inputs["config"] = inputs["config"].model_copy(
            update={"default": json.dumps(config, sort_keys=True)}
        )
    return step.model_copy(update={"tool": tool, "inputs": inputs})


def _relocated(port: OutputPort, lfn: str, meta: Mapping[str, Any]) -> OutputPort:
    if port.array and "$(self.basename)" not in lfn:
        lfn = f"{posixpath.dirname(lfn)}/$(self.basename)"
    return port.model_copy(update={"lfn": lfn, "meta": {**port.meta, **meta}, "new_version": True})
