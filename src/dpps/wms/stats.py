"""The workload manager's aggregates: jobs, workflows and campaigns by state, job activities.

Read by the dashboard, ``dpps report`` and ``/metrics`` (the archive's own aggregates are
``dpps.bdms.stats``, which knows nothing of the WMS). Each function takes a session and only
reads.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from dpps.bdms.stats import count_by
from dpps.catalog.models_wms import CampaignRow, JobRow, WorkflowRow


def jobs_by_state(session: Session) -> dict[str, int]:
    return count_by(session, JobRow.state)


def workflows_by_state(session: Session) -> dict[str, int]:
    return count_by(session, WorkflowRow.state)


def campaigns_by_state(session: Session) -> dict[str, int]:
    """Campaign records by state (QUEUED, RUNNING, DONE, FAILED)."""
    return count_by(session, CampaignRow.state)


def job_activities(session: Session) -> list[str]:
    """Every activity a job was ever submitted under, in order (the dashboard's filter)."""
    return list(session.scalars(select(JobRow.activity).distinct().order_by(JobRow.activity)))
