"""Step 4 of a campaign: one WMS job per observation block and step, submitted once.

Each job runs a DataPipe tool through ``dpps.pipelines.tool:wms_entry`` with the campaign's
software version, activity (``reprocessing``: dispatched after category-B processing) and
category, and registers its outputs as new versions (``layout``). A step reads the exact
versions the previous step produced (``@vN``), never "whatever is latest now".

Idempotence: before submitting, the campaign looks for what an earlier run of the same
campaign did: its products (``meta.campaign``) mean the step is done; a job of the same name
that is still running is waited for, a FAILED or KILLED one is retried, a DONE one's outputs
are used. Only when none exists is a job submitted, so a rerun never duplicates jobs or
products.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dpps.bdms.archive import Archive
from dpps.pipelines.campaign import layout
from dpps.pipelines.campaign.spec import CampaignSpec
from dpps.wms.api import WMS
from dpps.wms.builder import Output, tool_python
from dpps.wms.jobs import SubmitOptions
from dpps.wms.states import FINAL_JOB_STATES, JobState
from dpps.wms.types import JobInfo

ENTRY = "dpps.pipelines.tool:wms_entry"
TOOLS = {"dl1": "datapipe-dl1", "dl2": "datapipe-dl2", "dl3": "datapipe-dl3"}
Tick = Callable[[int, int], None]


@dataclass(slots=True)
class StepRun:
    """One (observation block, step) of the campaign and what became of it."""

    step: str
    obs_id: int
    name: str
    inputs: dict[str, list[str]]
    how: str = ""  # submitted | retried | waited | existing
    job_id: int | None = None
    state: str = ""
    reason: str | None = None
    outputs: list[str] = field(default_factory=list)
    supersedes: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.state == JobState.DONE.value and bool(self.outputs)


def job_name(spec: CampaignSpec, step: str, obs_id: int) -> str:
    return f"{spec.name}-obs{obs_id:06d}-{step}"


def pinned(archive: Archive, did: str) -> str:
    """``scope:/name@vN`` of a DID as it is now (a later version will not change it)."""
    info = archive.show(did, events_limit=0).file
    return f"{info.scope}:{info.name}@v{info.version}"


def existing_products(archive: Archive, spec: CampaignSpec, step: str, obs_id: int) -> list[str]:
    """Products an earlier run of this campaign registered for the step (pinned labels)."""
    level = layout.PORTS[step][0][2]
    found = archive.list_files(
        f"meta.campaign = '{spec.name}' and obs_id = {obs_id} and data_level = {level}",
        limit=None,
        all_versions=True,
    )
    wanted = {p[3] for p in layout.PORTS[step] if not p[4]}
    if not wanted <= {f.product_type for f in found}:
        return []
    return sorted(f"{f.scope}:{f.name}@v{f.version}" for f in found)


def make_tool(archive: Archive, spec: CampaignSpec, run: StepRun, night: object | None) -> Any:
    meta = {"category": spec.category, "campaign": spec.name,
            "software_version": spec.software_version}  # fmt: skip
    outputs = []
    directory: str | None = None
    for port, glob, level, product_type, array in layout.PORTS[run.step]:
        if array:
            lfn = f"{directory or layout.default_dir(level, run.obs_id, night)}/$(self.basename)"
        else:
            where = layout.target(archive, level, product_type, run.obs_id, night)
            lfn = where.lfn
            directory = directory or posixpath.dirname(lfn)
            if where.supersedes:
                run.supersedes[port] = where.supersedes
        outputs.append(Output.model_validate({
            "name": port, "glob": glob, "array": array, "lfn": lfn, "data_level": level,
            "meta": {**meta, "product_type": product_type}, "new_version": True}))  # fmt: skip
    return tool_python(run.name, ENTRY, inputs={k: "File[]" for k in run.inputs},
                       outputs=outputs, software_version=spec.software_version)  # fmt: skip


def check_configs(spec: CampaignSpec) -> None:
    """Every step's options, validated by the tool itself before anything is staged or
    submitted: a misspelled option is a ConfigError now, not N failed jobs later."""
    from dpps.pipelines.tool import get_tool

    for step in TOOLS:
        config = parameters(spec, step)["config"]
        get_tool(TOOLS[step]).from_mapping(config, {}, Path("."))


def parameters(spec: CampaignSpec, step: str) -> dict[str, Any]:
    config = spec.step_config(step)
    if step in ("dl2", "dl3"):
        config["category"] = spec.category
    return {"tool": TOOLS[step], "config": config}


def _jobs_by_name(wms: WMS, spec: CampaignSpec) -> dict[str, JobInfo]:
    jobs = wms.list_jobs(activity=spec.activity, limit=1_000_000)
    by_name: dict[str, JobInfo] = {}
    for job in sorted(jobs, key=lambda j: j.id):
        if job.name.startswith(f"{spec.name}-obs"):
            by_name[job.name] = job  # the newest of a name wins
    return by_name


def start(
    wms: WMS, spec: CampaignSpec, runs: Sequence[StepRun], nights: Mapping[int, object | None]
) -> None:
    """Submit (or find, or retry) the job of every run that has no products yet."""
    archive = wms.archive
    known = _jobs_by_name(wms, spec)
    for run in runs:
        found = existing_products(archive, spec, run.step, run.obs_id)
        if found:
            run.how, run.state, run.outputs = "existing", JobState.DONE.value, found
            continue
        job = known.get(run.name)
        if job is not None and job.state not in (JobState.FAILED, JobState.KILLED):
            run.how, run.job_id = "waited", job.id
            continue
        if job is not None:
            wms.retry(job.id)
            run.how, run.job_id = "retried", job.id
            continue
        opts = SubmitOptions(name=run.name, priority=spec.priority, activity=spec.activity,
                             max_attempts=spec.max_attempts)  # fmt: skip
        tool = make_tool(archive, spec, run, nights.get(run.obs_id))
        submitted = wms.submit_job(tool, run.inputs, opts=opts,
                                   parameters=parameters(spec, run.step))  # fmt: skip
        run.how, run.job_id = "submitted", submitted.id


def finish(wms: WMS, runs: Sequence[StepRun], *, timeout_s: float, tick: Tick | None) -> None:
    """Run the jobs here (a job manager in this process) until every one is final."""
    pending = [r for r in runs if r.job_id is not None and r.how != "existing"]

    def finished() -> bool:
        states = {r.job_id: wms.job(r.job_id).state for r in pending if r.job_id is not None}
        done = sum(1 for s in states.values() if s in FINAL_JOB_STATES)
        if tick is not None:
            tick(done, len(pending))
        return done == len(pending)

    if pending:
        wms.run_until(finished, timeout_s=timeout_s)
    for run in pending:
        assert run.job_id is not None
        info = wms.job(run.job_id)
        run.state, run.reason = info.state, info.reason
        run.outputs = [pinned(wms.archive, d) for d in info.outputs] if info.outputs else []
        if run.state == JobState.DONE.value and not run.outputs:
            run.reason = "the job finished without registering outputs"
