"""The campaign as one call: select, report volume, stage, reprocess, verify, release.

``run_campaign`` is what ``dpps campaign reprocess`` calls; every step is a module of this
package. It owns no transaction: each step goes through the archive's and the WMS's public
APIs, which own theirs, so the campaign can be interrupted anywhere and run again (see
``jobs`` for why that never duplicates work).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dpps.bdms.archive import Archive
from dpps.pipelines.campaign import jobs, selection, staging
from dpps.pipelines.campaign.compare import compare
from dpps.pipelines.campaign.jobs import BlockRun, StepRun
from dpps.pipelines.campaign.selection import Block, Volume
from dpps.pipelines.campaign.spec import CampaignSpec
from dpps.pipelines.campaign.staging import StagingReport
from dpps.pipelines.campaign.verify import Verification, verify
from dpps.wms.api import WMS
from dpps.wms.states import JobState, WorkflowState

#: ``phase(name)`` announces a step; ``tick(done, total)`` reports progress within it.
Phase = Callable[[str], None]
Tick = Callable[[int, int], None]

#: Defaults for models and IRF: the newest of their kind. Production IRFs (``datapipe-irf``)
#: carry their cut mode (header CUTMODE); the per-observation copies DL3 writes do not.
MODELS_QUERY = "product_type = 'reconstruction models'"
IRF_QUERY = "data_level = DL3 and product_type = irf and meta.cutmode in (optimised, fixed)"


@dataclass(slots=True)
class CampaignReport:
    """The one summary of a campaign (``--json`` prints it)."""

    name: str
    query: str
    software_version: str
    category: str
    activity: str
    dry_run: bool
    volume: Volume
    models: str | None = None
    irf: str | None = None
    staging: StagingReport = field(default_factory=StagingReport)
    blocks: list[BlockRun] = field(default_factory=list)
    steps: list[StepRun] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    verification: Verification = field(default_factory=Verification)
    #: Previous vs new version of the DL3 it superseded (``compare``), None if it superseded
    #: no DL3 event list.
    comparison: dict[str, Any] | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures and self.verification.ok

    def to_mapping(self) -> dict[str, Any]:
        """The report as JSON-able data: what ``--json`` prints, the campaign record keeps and
        the remote CLI receives (so local and remote print from the same mapping)."""
        from dpps.bdms.types import to_jsonable

        out = to_jsonable(self)
        assert isinstance(out, dict)
        out["verification"]["ok"] = self.verification.ok
        return {"ok": self.ok, "counts": self.counts(), **out}

    def counts(self) -> dict[str, dict[str, int]]:
        """Per step: how many runs were submitted, retried, waited for, already done, failed."""
        out: dict[str, dict[str, int]] = {}
        for run in self.steps:
            row = out.setdefault(run.step, {"runs": 0, "ok": 0, "failed": 0})
            row["runs"] += 1
            row["ok" if run.ok else "failed"] += 1
            row[run.how] = row.get(run.how, 0) + 1
        return out


def _newest(archive: Archive, given: str | None, query: str) -> str | None:
    if given is not None:
        info = archive.show(given, events_limit=0).file  # NotFound names the DID
        return f"{info.scope}:{info.name}@v{info.version}"
    found = archive.list_files(query, limit=None)
    if not found:
        return None
    best = max(found, key=lambda f: (f.created_at, f.version))
    return f"{best.scope}:{best.name}@v{best.version}"


def run_campaign(
    archive: Archive,
    spec: CampaignSpec,
    *,
    dry_run: bool = False,
    phase: Phase | None = None,
    tick: Tick | None = None,
) -> CampaignReport:
    started = time.monotonic()
    say = phase or (lambda _name: None)
    say("selecting DL0")
    jobs.check_configs(spec)
    chosen = selection.select(archive, spec.query)
    report = CampaignReport(
        spec.name,
        spec.query,
        spec.software_version,
        spec.category,
        spec.activity,
        dry_run,
        chosen.volume,
    )
    report.models = _newest(archive, spec.models, MODELS_QUERY)
    report.irf = _newest(archive, spec.irf, IRF_QUERY)
    if dry_run:
        report.seconds = round(time.monotonic() - started, 3)
        return report
    wms = WMS(archive)
    blocks = _readable(chosen.blocks, report)
    wanted = jobs.expected_types(report.models is not None, report.irf is not None)
    todo = [b for b in blocks if not jobs.existing_products(archive, spec, b.obs_id, wanted)]
    tape = [f for b in todo for f in b.inputs if not f.on_disk]
    say(f"staging {len(tape)} tape-only files")
    report.staging = staging.stage(
        archive,
        [f.did for f in tape],
        [f.info.bytes or 0 for f in tape],
        timeout_s=spec.timeout_s,
        progress=tick,
    )
    if report.staging.failed:
        report.failures += [{"step": "staging", "error": e} for e in report.staging.failed]
    try:
        _process(wms, spec, blocks, report, say, tick)
        say("verifying outputs")
        report.verification = verify(archive, spec, report.steps)
        if report.ok and report.irf is not None:
            say("comparing with the previous version")
            report.comparison = compare(archive, spec)
    finally:
        say("releasing the staging buffer")
        staging.release(archive, report.staging, spec.name)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _readable(blocks: list[Block], report: CampaignReport) -> list[Block]:
    good = []
    for block in blocks:
        lost = [f.did for f in block.inputs if not f.location.available]
        if lost:
            report.failures.append(
                {
                    "step": "staging",
                    "obs_id": block.obs_id,
                    "inputs": lost,
                    "error": "no AVAILABLE replica of these inputs",
                }
            )
        else:
            good.append(block)
    return good


def _pin(f: selection.DL0File) -> str:
    return f"lfn:{f.info.scope}:{f.info.name}@v{f.info.version}"


def _process(
    wms: WMS,
    spec: CampaignSpec,
    blocks: list[Block],
    report: CampaignReport,
    say: Phase,
    tick: Tick | None,
) -> None:
    if report.models is None:
        report.skipped.append(
            "dl2, dl3 and quality skipped: no reconstruction models in the archive (give --models)"
        )
    elif report.irf is None:
        report.skipped.append("dl3 skipped: no IRF in the archive (give --irf)")
    runs = []
    for block in blocks:
        values: dict[str, object] = {"dl0": [_pin(f) for f in block.inputs]}
        if report.models is not None:
            values["models"] = f"lfn:{report.models}"
        if report.irf is not None:
            values["irf"] = f"lfn:{report.irf}"
        runs.append(BlockRun(block.obs_id, jobs.workflow_name(spec, block.obs_id), values))
    models, irf = report.models is not None, report.irf is not None
    say(f"processing {len(runs)} observation block(s)")
    jobs.start(wms, spec, runs, {b.obs_id: b.night for b in blocks}, models=models, irf=irf)
    jobs.finish(wms, runs, timeout_s=spec.timeout_s, tick=tick)
    report.blocks = runs
    for run in runs:
        report.steps += run.steps
        for step in run.steps:
            if step.state in (JobState.FAILED.value, JobState.KILLED.value):
                report.failures.append(
                    {
                        "step": step.step,
                        "obs_id": run.obs_id,
                        "job": step.job_id,
                        "inputs": step.inputs["inputs"],
                        "error": step.reason or step.state,
                    }
                )
        if run.state not in (WorkflowState.DONE.value, "") and not any(
            s.state in (JobState.FAILED.value, JobState.KILLED.value) for s in run.steps
        ):
            report.failures.append(
                {
                    "step": "workflow",
                    "obs_id": run.obs_id,
                    "workflow": run.workflow_id,
                    "error": run.reason or run.state,
                }
            )


__all__ = ["CampaignReport", "run_campaign"]
