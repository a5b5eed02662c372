"""What a night left in the archive and the WMS, summarised for people and for ``--json``.

Every figure is read back from the catalog (not from what the night believes it did): files
and bytes per data level and site of their AVAILABLE replicas, the off-site copies of each
DL0 file, the transformation's jobs by step and state, and the QualPipe verdicts read from
the archived reports themselves.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dpps.core.errors import IntegrityFailure

if TYPE_CHECKING:
    from dpps.bdms.archive import Archive
    from dpps.wms.api import WMS


def volume(archive: Archive) -> dict[str, dict[str, dict[str, int]]]:
    """{data level: {site: {files, bytes}}} over AVAILABLE replicas of the latest files."""
    out: dict[str, dict[str, dict[str, int]]] = defaultdict(dict)
    for v in archive.views.stored(live_files_only=True):
        level = "other" if v.data_level == "none" else v.data_level
        out[level][v.site] = {"files": v.files, "bytes": v.bytes}
    return dict(out)


def offsite_sites(archive: Archive, lfn_prefix: str = "/ctao/dl0/") -> Counter[int]:
    """How many DL0 files have their AVAILABLE copies at N distinct off-site data centres."""
    return archive.views.files_by_offsite_sites(lfn_prefix)


def jobs(wms: WMS, workflow_ids: list[int]) -> dict[str, Any]:
    """Jobs of the given workflows: by step and state, attempts, CPU and wall time."""
    by_step: dict[str, Counter[str]] = defaultdict(Counter)
    attempts = cpu = wall = 0.0
    failed: list[dict[str, Any]] = []
    for wf in workflow_ids:
        for job in wms.list_jobs(workflow_id=wf, limit=1000):
            by_step[job.step or job.name][job.state] += 1
            attempts += job.attempts
            cpu += job.cpu_s
            wall += job.wall_s
            if job.state != "DONE" or job.attempts > 1:
                failed.append(
                    {
                        "job": job.id,
                        "step": job.step,
                        "state": job.state,
                        "attempts": job.attempts,
                        "reason": job.reason,
                    }
                )
    return {
        "by_step": {k: dict(v) for k, v in sorted(by_step.items())},
        "total": int(sum(sum(v.values()) for v in by_step.values())),
        "attempts": int(attempts),
        "cpu_s": round(cpu, 1),
        "wall_s": round(wall, 1),
        "retried_or_failed": failed,
    }


def quality_verdicts(
    archive: Archive, category: str, dest: Path, obs_ids: Sequence[int] | None = None
) -> dict[int, dict[str, Any]]:
    """obs_id -> {passed, failed checks} from the archived QualPipe reports (retrieved)."""
    reports = [
        f
        for f in archive.list_files(f"data_level=QUAL and category={category}", limit=None)
        if f.name.endswith(".json") and (obs_ids is None or f.obs_id in set(obs_ids))
    ]
    if not reports:
        return {}
    dest.mkdir(parents=True, exist_ok=True)  # one report is fetched into it, not as it
    got = archive.get([f.did for f in reports], dest, overwrite=True)
    if got.failed:
        raise IntegrityFailure(f"quality reports not retrieved: {got.failed[0].error}")
    verdicts: dict[int, dict[str, Any]] = {}
    for f in reports:
        report = json.loads((dest / Path(f.name).name).read_text(encoding="utf-8"))
        failed = [
            f"{c.get('metric')}" + (f" (tel {c['tel_id']})" if c.get("tel_id") else "")
            for c in report.get("checks", [])
            if c.get("status") == "fail"
        ]
        verdicts[int(f.obs_id or 0)] = {
            "passed": bool(report.get("passed")),
            "failed_checks": failed,
            "did": f.did,
        }
    return dict(sorted(verdicts.items()))
