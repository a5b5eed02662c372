"""Workload submissions from JSON documents, for the REST API.

``WMS.submit`` reads a JOB.yaml from a path; a server receives the document itself. This is
the smallest function missing from ``dpps.wms.api`` for that (the same merge of the job's own
options with the submitter's), plus the event-log record of workload writes: the WMS keeps
its own job history, and the archive's event log must name who submitted, killed or retried.
Move ``submit_job_data`` into ``dpps.wms.api`` (``WMS.submit`` taking a mapping) when its
owners can.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dpps.catalog import events
from dpps.catalog.engine import transaction
from dpps.core.errors import InvalidInput
from dpps.wms.api import WMS, Submitted
from dpps.wms.builder import load_job
from dpps.wms.jobs import SubmitOptions
from dpps.wms.spec import WorkflowSpec, validated


def submit_job_data(wms: WMS, data: Mapping[str, Any], opts: SubmitOptions) -> Submitted:
    """Submit a JOB.yaml document given as a mapping (as ``WMS.submit`` does for a file)."""
    if "cwlVersion" in data:
        raise InvalidInput("this is a CWL document: submit it as a workflow")
    tool, values, job = load_job(data, "job")
    merged = SubmitOptions(
        name=opts.name or job.name,
        priority=job.priority if opts.priority == 3 else opts.priority,
        activity=job.activity if opts.activity == "default" else opts.activity,
        site=opts.site or job.site,
        executor=opts.executor,
        max_attempts=opts.max_attempts or job.max_attempts,
    )
    return wms.submit_job(tool, values, opts=merged, parameters=job.parameters)


def workflow_spec(data: Mapping[str, Any], what: str = "workflow") -> WorkflowSpec:
    return validated(WorkflowSpec, data, what)


def record(wms: WMS, action: str, **details: Any) -> None:
    """One event naming the account of a workload write (``job.submit``, ``job.kill``...)."""
    with transaction(wms.sessions) as session:
        events.record(session, account=wms.account, action=action, details=details)
