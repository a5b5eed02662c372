"""Workflows and transformations: inspect, submit, kill, retry; add, pause, resume.

Thin handlers over ``dpps.wms.api.WMS`` with the rights of ``routers/wms.py``: ``wms.write``
to submit, retry, add and steer transformations, ``wms.kill`` to kill. Workflows arrive as a
``WorkflowSpec`` (the remote CLI parses the CWL file on the client's side).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status

from dpps.bdms.types import PageRequest, to_jsonable
from dpps.oms.api.deps import Reader
from dpps.oms.api.problems import PROBLEM_RESPONSES
from dpps.oms.api.routers.wms import Id, Killer, Submitter, Workload, options
from dpps.oms.api.schemas import Page
from dpps.oms.api.schemas_wms import (
    AffectedOut,
    KillIn,
    SubmittedOut,
    TransformationIn,
    WorkflowSubmitIn,
)
from dpps.oms.wms_submit import record, workflow_spec
from dpps.wms.api import TransformationInfo, WorkflowInfo
from dpps.wms.listings import WorkflowFilter
from dpps.wms.states import TransformationState
from dpps.wms.types import SubmitOptions

workflows = APIRouter(prefix="/api/v1/workflows", tags=["workflows"], responses=PROBLEM_RESPONSES)
transformations = APIRouter(
    prefix="/api/v1/transformations", tags=["transformations"], responses=PROBLEM_RESPONSES
)
TrName = Annotated[str, Path(min_length=1, max_length=200)]


@workflows.get("", response_model=Page[dict[str, Any]], summary="Workflows, newest first")
def list_workflows(
    wms: Workload,
    _who: Reader,
    state: Annotated[str | None, Query(max_length=16)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> Page[dict[str, Any]]:
    page = wms.workflows_page(WorkflowFilter(state=state), PageRequest(offset, limit))
    items = [to_jsonable(w) for w in page.items]
    return Page[dict[str, Any]](items=items, total=page.total, limit=limit, offset=offset)


@workflows.get("/{workflow_id}", response_model=WorkflowInfo, summary="One workflow and jobs")
def get_workflow(workflow_id: Id, wms: Workload, _who: Reader) -> WorkflowInfo:
    return wms.workflow(workflow_id)


@workflows.post(
    "",
    response_model=SubmittedOut,
    status_code=status.HTTP_201_CREATED,
    summary="Submit a workflow on its inputs",
)
def submit_workflow(body: WorkflowSubmitIn, wms: Workload, _who: Submitter) -> SubmittedOut:
    sub = wms.submit_workflow(workflow_spec(body.spec), body.inputs, opts=options(body))
    record(wms, "workflow.submit", workflow_id=sub.id, name=sub.name)
    return SubmittedOut(kind=sub.kind, id=sub.id, name=sub.name)


@workflows.post("/{workflow_id}/kill", response_model=AffectedOut, summary="Kill a workflow")
def kill_workflow(
    workflow_id: Id, wms: Workload, _who: Killer, body: KillIn | None = None
) -> AffectedOut:
    reason = body.reason if body else None
    killed = wms.kill_workflow(workflow_id, reason)
    record(wms, "workflow.kill", workflow_id=workflow_id, jobs=killed, reason=reason)
    return AffectedOut(id=workflow_id, count=killed)


@workflows.post("/{workflow_id}/retry", response_model=AffectedOut, summary="Retry its jobs")
def retry_workflow(workflow_id: Id, wms: Workload, _who: Submitter) -> AffectedOut:
    retried = wms.retry_workflow(workflow_id)
    record(wms, "workflow.retry", workflow_id=workflow_id, jobs=retried)
    return AffectedOut(id=workflow_id, count=retried)


@transformations.get(
    "", response_model=Page[TransformationInfo], summary="Transformations with file counts"
)
def list_transformations(
    wms: Workload,
    _who: Reader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> Page[TransformationInfo]:
    every = wms.transformations()
    return Page[TransformationInfo](
        items=every[offset : offset + limit], total=len(every), limit=limit, offset=offset
    )


@transformations.get("/{name}", response_model=TransformationInfo, summary="One, by name")
def get_transformation(name: TrName, wms: Workload, _who: Reader) -> TransformationInfo:
    return wms.transformation(name)


@transformations.post(
    "",
    response_model=TransformationInfo,
    status_code=status.HTTP_201_CREATED,
    summary="Add a transformation (a standing production)",
)
def add_transformation(
    body: TransformationIn, wms: Workload, _who: Submitter
) -> TransformationInfo:
    info = wms.add_transformation(
        body.name,
        workflow_spec(body.spec, "transformation template"),
        filter_text=body.filter,
        input_from=body.input_from,
        input_port=body.input_port,
        grouping=body.grouping,
        inputs=body.inputs,
        settle_s=body.settle_s,
        max_task_attempts=body.max_task_attempts,
        opts=SubmitOptions(None, body.priority, body.activity, body.site, body.executor),
    )
    record(wms, "transformation.add", name=info.name, transformation_id=info.id)
    return info


def _steer(name: str, wms: Workload, state: TransformationState, verb: str) -> TransformationInfo:
    wms.set_transformation_state(name, state)
    record(wms, f"transformation.{verb}", name=name)
    return wms.transformation(name)


@transformations.post("/{name}/pause", response_model=TransformationInfo, summary="Pause")
def pause(name: TrName, wms: Workload, _who: Submitter) -> TransformationInfo:
    return _steer(name, wms, TransformationState.PAUSED, "pause")


@transformations.post("/{name}/resume", response_model=TransformationInfo, summary="Resume")
def resume(name: TrName, wms: Workload, _who: Submitter) -> TransformationInfo:
    return _steer(name, wms, TransformationState.ACTIVE, "resume")


@transformations.post(
    "/{name}/retry", response_model=AffectedOut, summary="Process PROBLEMATIC files again"
)
def retry_problematic(name: TrName, wms: Workload, _who: Submitter) -> AffectedOut:
    count = wms.retry_problematic(name)
    record(wms, "transformation.retry", name=name, files=count)
    return AffectedOut(id=name, count=count)
