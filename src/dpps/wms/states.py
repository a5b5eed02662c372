"""States of jobs, workflows, transformations and of the files a transformation books."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    SUBMITTED = "SUBMITTED"  # waits for the manager to match it
    WAITING = "WAITING"  # an input has no readable replica yet (missing, on tape only)
    MATCHED = "MATCHED"  # given to an executor, not yet taken by a worker
    RUNNING = "RUNNING"  # a worker holds its lease and sends heartbeats
    DONE = "DONE"
    FAILED = "FAILED"
    KILLED = "KILLED"


#: States a job never leaves (except by an explicit ``retry``).
FINAL_JOB_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.KILLED})
#: States in which a lease says who is responsible for the job right now.
LEASED_JOB_STATES = frozenset({JobState.MATCHED, JobState.RUNNING})


class WorkflowState(StrEnum):
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    KILLED = "KILLED"


FINAL_WORKFLOW_STATES = frozenset({WorkflowState.DONE, WorkflowState.FAILED, WorkflowState.KILLED})


class TransformationState(StrEnum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"


class FileStatus(StrEnum):
    """A file's bookkeeping status within one transformation."""

    NEW = "NEW"  # matched the filter, not yet in a task (its group is not complete)
    ASSIGNED = "ASSIGNED"  # in a running task
    PROCESSED = "PROCESSED"  # its task finished DONE
    PROBLEMATIC = "PROBLEMATIC"  # its task failed max_task_attempts times: needs a person


class CampaignState(StrEnum):
    QUEUED = "QUEUED"  # waits for a runner (the campaign daemon of ``dpps serve``)
    RUNNING = "RUNNING"  # a runner holds its lease; an expired lease means it died
    DONE = "DONE"  # finished, every block processed and verified
    FAILED = "FAILED"  # finished with failures (listed in its report) or stopped by an error


FINAL_CAMPAIGN_STATES = frozenset({CampaignState.DONE, CampaignState.FAILED})
