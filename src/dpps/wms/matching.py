"""Matching: can a job's inputs be read now, and at which site should it run?

The observatory's rule is to move jobs to the data: a job runs at the site it asks for, else at
the site holding most of its input bytes on AVAILABLE disk replicas, and only on workers of
that site. A job whose input has no AVAILABLE replica, or only one on tape, WAITs with the
reason; for an input only on tape the manager asks the archive for a recall
(``dpps.bdms.availability.request_staging``), and the job runs once the copy is READY in the
staging buffer, from which the worker reads it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from dpps.bdms import availability
from dpps.bdms.types import ReplicaSite
from dpps.catalog.models_wms import JobFileRow
from dpps.core.config import Config
from dpps.core.states import RSEKind


@dataclass(slots=True)
class InputCheck:
    """Whether a job's inputs are readable, and how many of their bytes each site holds."""

    ready: bool = True
    reason: str | None = None
    site_bytes: dict[str, int] = field(default_factory=dict)
    #: Inputs only on tape and not staged yet: the manager asks the stager for them.
    stage: list[int] = field(default_factory=list)


def check_inputs(
    session: Session, config: Config, job_ids: Sequence[int]
) -> dict[int, InputCheck]:
    """One query for a batch of jobs: their input files' readable replicas (the archive's one
    definition, ``bdms.availability``) and the sites and kinds of the RSEs they are on."""
    checks = {job_id: InputCheck() for job_id in job_ids}
    if not job_ids:
        return checks
    inputs = select(JobFileRow.job_id).where(
        JobFileRow.job_id.in_(job_ids), JobFileRow.role == "input"
    )
    files: dict[tuple[int, int], list[ReplicaSite | None]] = defaultdict(list)
    labels: dict[int, tuple[str, int]] = {}
    for row, ref, where in availability.with_readable_replicas(
        session, config, inputs, JobFileRow.did_id
    ):
        labels[ref.id] = (f"{ref.scope}:{ref.name}", int(ref.bytes or 0))
        files[(row[0], ref.id)].append(where)
    staged = availability.staged(session, list(labels))
    for (job_id, did_id), replicas in files.items():
        check = checks[job_id]
        label, size = labels[did_id]
        disk_sites = {r.site for r in replicas if r is not None and r.kind == RSEKind.DISK.value}
        tape = sorted(r.rse for r in replicas if r is not None and r.kind == RSEKind.TAPE.value)
        if disk_sites:
            for site in disk_sites:
                check.site_bytes[site] = check.site_bytes.get(site, 0) + size
        elif tape and did_id in staged:
            continue  # read from the staging buffer (the worker's retrieval finds it READY)
        elif tape:
            check.stage.append(did_id)
            if check.ready:
                check.ready = False
                check.reason = f"input {label} is only on tape ({', '.join(tape)}): staging"
        elif check.ready:
            check.ready = False
            check.reason = f"input {label} has no AVAILABLE replica"
    return checks


def request_staging(session: Session, config: Config, check: InputCheck, account: str) -> None:
    """Ask the stager for every tape-only input (joins an open request: asking twice is free)."""
    availability.request_staging(session, config, check.stage, account=account)


def choose_site(
    requested: str | None,
    site_bytes: Mapping[str, int],
    free: Mapping[str | None, int],
) -> tuple[str | None, str | None]:
    """(site, None) to run there, or (None, reason) when no worker may take the job now.

    ``free`` maps sites to free slots; the key None means one pool serving every site.
    """
    any_site = None in free
    if requested is not None:
        if any_site or requested in free:
            return requested, None
        return None, f"no worker serves the requested site {requested}"
    if any_site:
        best = max(site_bytes.items(), key=lambda kv: (kv[1], kv[0]), default=None)
        return (best[0] if best else None), None
    if site_bytes:
        # only a site holding the most bytes: a worker elsewhere would pull them over the WAN
        most = max(site_bytes.values())
        top = sorted(s for s, n in site_bytes.items() if n == most)
        served = [s for s in top if s in free]
        if not served:
            return None, (
                f"most of the inputs' bytes are at {', '.join(top)}, where no worker runs"
                f" (inputs at {', '.join(sorted(site_bytes))})"
            )
        return max(served, key=lambda s: (free[s], s)), None
    sites = [s for s in free if s is not None]
    if not sites:
        return None, "no worker is connected"
    return max(sites, key=lambda s: (free[s], s)), None
