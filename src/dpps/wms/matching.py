"""Matching: can a job's inputs be read now, and at which site should it run?

The observatory's rule is to move jobs to the data: a job runs at the site it asks for, else at
the site holding most of its input bytes on AVAILABLE disk replicas, and only on workers of
that site. A job whose input has no AVAILABLE replica, or only one on tape, WAITs with the
reason; for an input only on tape the manager asks the stager (``dpps.bdms.staging.stager``) for a
recall, and the job runs once the copy is READY in the staging buffer, from which the worker
reads it.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from dpps.bdms.staging.stager import StageState
from dpps.bdms.staging.stager import request_stage as stage_request
from dpps.catalog.models import DIDRow, ReplicaRow, RSERow, StageRequestRow
from dpps.catalog.models_wms import JobFileRow
from dpps.core.clock import utcnow
from dpps.core.config import Config
from dpps.core.states import ReplicaState, RSEKind


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
    """One query for a batch of jobs: their input files' replicas and the RSEs they are on."""
    checks = {job_id: InputCheck() for job_id in job_ids}
    if not job_ids:
        return checks
    stmt = (
        select(
            JobFileRow.job_id,
            DIDRow.id,
            DIDRow.scope,
            DIDRow.name,
            DIDRow.bytes,
            ReplicaRow.state,
            RSERow.name,
            RSERow.site,
            RSERow.kind,
            RSERow.available,
        )
        .join(DIDRow, DIDRow.id == JobFileRow.did_id)
        .outerjoin(ReplicaRow, ReplicaRow.did_id == DIDRow.id)
        .outerjoin(RSERow, RSERow.id == ReplicaRow.rse_id)
        .where(JobFileRow.job_id.in_(job_ids), JobFileRow.role == "input")
    )
    files: dict[tuple[int, int], list[tuple[str | None, ...]]] = defaultdict(list)
    labels: dict[int, tuple[str, int]] = {}
    for job_id, did_id, scope, name, size, state, rse, site, kind, available in session.execute(
        stmt
    ):
        labels[did_id] = (f"{scope}:{name}", int(size or 0))
        usable = state == ReplicaState.AVAILABLE.value and bool(available) and rse in config.rses
        files[(job_id, did_id)].append((rse, site, kind) if usable else (None, None, None))
    staged = _staged(session, list(labels))
    for (job_id, did_id), replicas in files.items():
        check = checks[job_id]
        label, size = labels[did_id]
        disk_sites = {s for r, s, k in replicas if r is not None and k == RSEKind.DISK.value}
        tape = sorted(str(r) for r, _s, k in replicas if r is not None and k == RSEKind.TAPE.value)
        if disk_sites:
            for where in disk_sites:
                check.site_bytes[str(where)] = check.site_bytes.get(str(where), 0) + size
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


def _staged(session: Session, did_ids: Sequence[int]) -> set[int]:
    """Files with a READY copy in the staging buffer that is not about to expire."""
    if not did_ids:
        return set()
    soon = utcnow() + dt.timedelta(seconds=60)
    return set(
        session.scalars(
            select(StageRequestRow.did_id).where(
                StageRequestRow.did_id.in_(did_ids),
                StageRequestRow.state == StageState.READY.value,
                StageRequestRow.expires_at > soon,
            )
        )
    )


def request_staging(session: Session, config: Config, check: InputCheck, account: str) -> None:
    """Ask the stager for every tape-only input (joins an open request: asking twice is free)."""
    for did_id in check.stage:
        row = session.get(DIDRow, did_id)
        if row is not None:
            stage_request(session, config, row, account=account)


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
        served = [s for s in site_bytes if s in free]
        if not served:
            return None, (
                f"the inputs are at {', '.join(sorted(site_bytes))}, where no worker runs"
            )
        return max(served, key=lambda s: (site_bytes[s], free[s], s)), None
    sites = [s for s in free if s is not None]
    if not sites:
        return None, "no worker is connected"
    return max(sites, key=lambda s: (free[s], s)), None
