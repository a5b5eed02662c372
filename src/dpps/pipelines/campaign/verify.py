"""Step 5 of a campaign: check what it produced before calling it done.

For every job: each expected product exists with an AVAILABLE replica, its bytes match the
catalog's checksums (it is downloaded and verified, like any retrieval), it has the campaign's
category, and its provenance names the campaign's software version and exactly the inputs the
job was given. For every product that became a new version, every earlier version is still
there and readable: reprocessing adds, it never replaces.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dpps.bdms.archive import Archive
from dpps.core.errors import DppsError
from dpps.pipelines.campaign import chain
from dpps.pipelines.campaign.jobs import StepRun
from dpps.pipelines.campaign.spec import CampaignSpec

_VERSION = re.compile(r"@v\d+$")


@dataclass(slots=True)
class Verification:
    products: int = 0
    checksums_verified: int = 0
    previous_versions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _plain(label: str) -> str:
    return _VERSION.sub("", label.removeprefix("lfn:"))


def verify(archive: Archive, spec: CampaignSpec, runs: Sequence[StepRun]) -> Verification:
    result = Verification()
    with tempfile.TemporaryDirectory(prefix="dpps-campaign-verify-") as tmp:
        for run in runs:
            if run.ok:
                _verify_run(archive, spec, run, Path(tmp), result)
    return result


def _verify_run(
    archive: Archive, spec: CampaignSpec, run: StepRun, tmp: Path, result: Verification
) -> None:
    where = f"{run.name}"
    wanted = {t for (step, _port), (_level, t) in chain.PRODUCTS.items() if step == run.step}
    inputs = {_plain(d) for values in run.inputs.values() for d in values}
    seen: set[str] = set()
    for label in run.outputs:
        result.products += 1
        try:
            details = archive.show(label, events_limit=0)
        except DppsError as exc:
            result.problems.append(f"{where}: output {label} is not in the archive: {exc}")
            continue
        info = details.file
        seen.add(info.product_type or "")
        if not any(r.state == "AVAILABLE" for r in details.replicas):
            result.problems.append(f"{where}: {label} has no AVAILABLE replica")
        if info.category != spec.category:
            result.problems.append(
                f"{where}: {label} is category {info.category}, not {spec.category} (identical "
                "bytes to an earlier version are not registered again)"
            )
        prov = info.meta.get("provenance") or {}
        if str(prov.get("software_version")) != spec.software_version:
            result.problems.append(
                f"{where}: {label} provenance names software "
                f"{prov.get('software_version')!r}, not {spec.software_version!r}"
            )
        if run.how != "existing" and {_plain(d) for d in prov.get("inputs", [])} != inputs:
            result.problems.append(f"{where}: {label} provenance inputs differ from the job's")
        target = tmp / f"{run.job_id}-{result.products}"
        report = archive.get([label], target)
        if report.failed:
            result.problems.append(f"{where}: {label}: {report.failed[0].error}")
        else:
            result.checksums_verified += 1
        for version in details.versions:
            if version < info.version:
                _check_previous(archive, f"{info.scope}:{info.name}@v{version}", where, result)
    missing = wanted - seen
    if missing:
        result.problems.append(f"{where}: expected products missing: {sorted(missing)}")


def _check_previous(archive: Archive, label: str, where: str, result: Verification) -> None:
    try:
        location = archive.locate(label)
    except DppsError as exc:
        result.problems.append(f"{where}: earlier version {label} is gone: {exc}")
        return
    if not location.available:
        result.problems.append(f"{where}: earlier version {label} has no readable replica")
    result.previous_versions.append(label)
