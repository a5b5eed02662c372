"""Request schemas of the workload endpoints (jobs, workflows, transformations).

Answers are the workload manager's own records (``JobInfo``, ``WorkflowInfo``,
``TransformationInfo``), which FastAPI serialises as they are: the remote CLI loads them back
into the same dataclasses. Documents travel in the library's JSON forms: a job as its
``JOB.yaml`` mapping, a workflow as a ``WorkflowSpec`` (what ``dpps.wms.cwl.load`` makes of
a CWL file; the client parses CWL locally, so no server file is ever read on a document's
behalf).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from dpps.oms.api.schemas import In, Out

Name = Annotated[str, Field(min_length=1, max_length=200)]


class SubmitOptionsIn(In):
    """How to run it; a JOB.yaml's own values apply where these are left at their default."""

    name: Name | None = None
    priority: Annotated[int, Field(ge=0, le=10)] = 3
    activity: Annotated[str, Field(min_length=1, max_length=64)] = "default"
    site: Annotated[str | None, Field(max_length=64)] = None
    executor: Annotated[str | None, Field(max_length=32)] = None
    max_attempts: Annotated[int | None, Field(ge=1, le=100)] = None


class JobSubmitIn(SubmitOptionsIn):
    job: Annotated[dict[str, Any], Field(description="A JOB.yaml document as JSON")]


class WorkflowSubmitIn(SubmitOptionsIn):
    spec: Annotated[dict[str, Any], Field(description="A WorkflowSpec (see docs/wms.md)")]
    inputs: dict[str, Any] = Field(default_factory=dict)


class TransformationIn(In):
    name: Name
    spec: Annotated[dict[str, Any], Field(description="The WorkflowSpec run per group")]
    filter: Annotated[str, Field(max_length=4000)] = ""
    input_from: Name | None = None
    input_port: Annotated[str | None, Field(max_length=200)] = None
    grouping: Annotated[str, Field(min_length=1, max_length=200)] = "file"
    inputs: dict[str, Any] = Field(default_factory=dict)
    settle_s: Annotated[float, Field(ge=0, le=10**7)] = 0.0
    max_task_attempts: Annotated[int, Field(ge=1, le=100)] = 2
    priority: Annotated[int, Field(ge=0, le=10)] = 3
    activity: Annotated[str, Field(min_length=1, max_length=64)] = "default"
    site: Annotated[str | None, Field(max_length=64)] = None
    executor: Annotated[str | None, Field(max_length=32)] = None


class KillIn(In):
    reason: Annotated[str | None, Field(max_length=2000)] = None


class SubmittedOut(Out):
    kind: str
    id: int
    name: str


class AffectedOut(Out):
    """How many jobs (or files) an action changed."""

    id: int | str
    count: int


class LogOut(Out):
    job: int
    log: str
