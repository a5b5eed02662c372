"""Step 4 of a campaign: one WMS workflow per observation block, submitted once.

The workflow is the observing night's block chain (``chain``) with the campaign's software
version, activity (``reprocessing``: dispatched after category-B processing) and category.
Each of its jobs reads the exact versions (``@vN``) of the block's DL0 and of the models and
IRF, and registers its products as new versions (``layout``).

Idempotence: before submitting, the campaign looks for what an earlier run of the same
campaign did: the block's products (``meta.campaign``) mean the block is done; a workflow of
the same name still running is waited for, a FAILED or KILLED one has its failed jobs retried.
Only when none exists is a workflow submitted, so a rerun never duplicates jobs or products.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dpps.bdms.archive import Archive
from dpps.core.errors import DppsError
from dpps.pipelines.campaign import chain
from dpps.pipelines.campaign.spec import CampaignSpec
from dpps.wms.api import WMS
from dpps.wms.states import FINAL_WORKFLOW_STATES, JobState, WorkflowState
from dpps.wms.types import SubmitOptions

Tick = Callable[[int, int], None]
#: The campaign's step options go to these pipeline tools (``--set STEP.OPTION=...``).
TOOLS = {
    "camera": "calibpipe-camera",
    "atmosphere": "calibpipe-atmosphere",
    "dl1": "datapipe-dl1",
    "dl2": "datapipe-dl2",
    "dl3": "datapipe-dl3",
    "quality": "qualpipe-report",
}


@dataclass(slots=True)
class StepRun:
    """One job of a block's workflow (or the block's earlier products) and its outcome."""

    step: str
    obs_id: int
    name: str
    inputs: dict[str, list[str]]
    how: str = ""  # submitted | retried | waited | existing
    job_id: int | None = None
    state: str = ""
    reason: str | None = None
    outputs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.state == JobState.DONE.value and bool(self.outputs)


@dataclass(slots=True)
class BlockRun:
    """One observation block's workflow."""

    obs_id: int
    name: str
    inputs: dict[str, object]
    how: str = ""
    workflow_id: int | None = None
    state: str = ""
    reason: str | None = None
    steps: list[StepRun] = field(default_factory=list)
    supersedes: dict[str, str] = field(default_factory=dict)


def workflow_name(spec: CampaignSpec, obs_id: int) -> str:
    return f"{spec.name}-obs{obs_id:06d}"


def pinned(archive: Archive, did: str) -> str:
    """``scope:/name@vN`` of a DID as it is now (a later version will not change it)."""
    info = archive.show(did, events_limit=0).file
    return f"{info.scope}:{info.name}@v{info.version}"


def expected_types(models: bool, irf: bool) -> set[str]:
    """The product types a finished block has (what the chain can make with what exists)."""
    steps = {"dl1"} | ({"dl2"} if models else set()) | ({"dl3"} if models and irf else set())
    return {t for (step, _port), (_l, t) in chain.PRODUCTS.items() if step in steps}


def existing_products(
    archive: Archive, spec: CampaignSpec, obs_id: int, wanted: set[str]
) -> list[str]:
    """Products an earlier run of this campaign registered for the block (pinned labels)."""
    found = archive.list_files(
        f"meta.campaign = '{spec.name}' and obs_id = {obs_id}", limit=None, all_versions=True
    )
    if not wanted <= {f.product_type for f in found}:
        return []
    return sorted(f"{f.scope}:{f.name}@v{f.version}" for f in found)


def check_configs(spec: CampaignSpec) -> None:
    """Every step's options, validated by the tool itself before anything is staged or
    submitted: a misspelled option is a ConfigError now, not N failed jobs later."""
    from dpps.pipelines.tool import get_tool

    for step, config in spec.configs.items():
        get_tool(TOOLS[step]).from_mapping(dict(config), {}, Path("."))


def _workflows_by_name(wms: WMS, spec: CampaignSpec) -> dict[str, tuple[int, str]]:
    found: dict[str, tuple[int, str]] = {}
    ids = {j.workflow_id for j in wms.list_jobs(activity=spec.activity, limit=1_000_000)}
    for wid in sorted(i for i in ids if i is not None):
        info = wms.workflow(wid)
        if info.name.startswith(f"{spec.name}-obs"):
            found[info.name] = (wid, info.state)  # the newest of a name wins
    return found


def start(
    wms: WMS,
    spec: CampaignSpec,
    blocks: Sequence[BlockRun],
    nights: dict[int, object | None],
    *,
    models: bool,
    irf: bool,
) -> None:
    """Submit (or find, or retry) the workflow of every block that has no products yet."""
    archive = wms.archive
    known = _workflows_by_name(wms, spec)
    wanted = expected_types(models, irf)
    for block in blocks:
        found = existing_products(archive, spec, block.obs_id, wanted)
        if found:
            block.how, block.state = "existing", WorkflowState.DONE.value
            block.steps = [
                StepRun(
                    "block",
                    block.obs_id,
                    block.name,
                    {},
                    "existing",
                    state=JobState.DONE.value,
                    outputs=found,
                )
            ]
            continue
        earlier = known.get(block.name)
        if earlier is not None and earlier[1] not in FINAL_WORKFLOW_STATES:
            block.how, block.workflow_id = "waited", earlier[0]
            continue
        if earlier is not None and earlier[1] != WorkflowState.DONE:
            wms.retry_workflow(earlier[0])
            block.how, block.workflow_id = "retried", earlier[0]
            continue
        workflow = chain.block_workflow(
            archive,
            spec,
            block.obs_id,
            nights.get(block.obs_id),
            models=models,
            irf=irf,
            supersedes=block.supersedes,
        )
        opts = SubmitOptions(
            name=block.name,
            priority=spec.priority,
            activity=spec.activity,
            max_attempts=spec.max_attempts,
        )
        block.workflow_id = wms.submit_workflow(workflow, block.inputs, opts=opts).id
        block.how = "submitted"


def finish(wms: WMS, blocks: Sequence[BlockRun], *, timeout_s: float, tick: Tick | None) -> None:
    """Run the jobs here (a job manager in this process) until every workflow is final."""
    pending = [b for b in blocks if b.workflow_id is not None]

    def finished() -> bool:
        states = [wms.workflow(b.workflow_id).state for b in pending if b.workflow_id]
        done = sum(1 for s in states if s in FINAL_WORKFLOW_STATES)
        if tick is not None:
            tick(done, len(pending))
        return done == len(pending)

    if pending:
        wms.run_until(finished, timeout_s=timeout_s)
    for block in pending:
        assert block.workflow_id is not None
        info = wms.workflow(block.workflow_id)
        block.state, block.reason = info.state, info.reason
        for job in info.jobs:
            details = wms.job(job.id)
            try:
                outputs = [pinned(wms.archive, d) for d in details.outputs]
            except DppsError as exc:  # an output vanished since: verification reports it
                outputs, block.reason = [], str(exc)
            block.steps.append(
                StepRun(
                    job.step or job.name,
                    block.obs_id,
                    job.name,
                    {"inputs": list(details.inputs)},
                    block.how,
                    job.id,
                    job.state,
                    job.reason,
                    outputs,
                )
            )
