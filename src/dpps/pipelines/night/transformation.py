"""The next-day processing as a standing WMS production: one task per observation block.

The transformation's filter selects observed DL0 (``DL0_FILTER``: ACADA's ``/ctao/dl0`` tree,
not simulations); grouping ``by:obs_id`` with a settle time makes one task per block once no
file of it arrived for ``settle_s`` seconds; the task is ``build_block_workflow`` bound to the
block's files and to the models and IRF found for the night. Each file is booked once per
transformation (a unique constraint), so a block that arrives twice is processed once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dpps.core.errors import NotFound
from dpps.pipelines.night.models import NightModels
from dpps.pipelines.night.workflow import SOFTWARE_VERSION, Target, build_block_workflow
from dpps.wms.types import SubmitOptions

if TYPE_CHECKING:
    from dpps.wms.api import WMS
    from dpps.wms.types import TransformationInfo

DL0_FILTER = 'data_level=DL0 and name like "/ctao/dl0/%" and category != SIM'
ACTIVITY = {"B": "cat-b", "C": "reprocessing"}


def transformation_name(category: str = "B", software_version: str = SOFTWARE_VERSION) -> str:
    from dpps.pipelines.night.workflow import version_slug

    return f"night-cat{category.lower()}-{version_slug(software_version)}".replace(".", "_")


def ensure_transformation(
    wms: WMS,
    models: NightModels,
    *,
    category: str = "B",
    software_version: str = SOFTWARE_VERSION,
    target: Target | None = None,
    settle_s: float = 1.0,
    max_task_attempts: int = 2,
    filter_text: str = DL0_FILTER,
    policy: str | None = None,
) -> TransformationInfo:
    """The night's transformation, created on first use (a later night finds it)."""
    name = transformation_name(category, software_version)
    try:
        return wms.transformation(name)
    except NotFound:
        pass
    spec = build_block_workflow(None, category, software_version, target=target, policy=policy)
    return wms.add_transformation(
        name,
        spec,
        filter_text=filter_text,
        input_port="dl0",
        grouping="by:obs_id",
        inputs=models.inputs(),
        settle_s=settle_s,
        max_task_attempts=max_task_attempts,
        opts=SubmitOptions(activity=ACTIVITY.get(category, "default"), priority=5),
    )


def pending(wms: WMS, name: str) -> int:
    """Files of the transformation not yet settled (NEW or in a running task)."""
    files = wms.transformation(name).files
    return int(files.get("NEW", 0)) + int(files.get("ASSIGNED", 0))
