"""``RemoteWMS``: the workload manager's methods the ``dpps wms`` commands use, over REST.

With ``DPPS_URL`` set the commands get one of these instead of a ``dpps.wms.api.WMS``; it
sends its requests through the one ``RemoteArchive`` client (same token, same error mapping,
same exit codes) and returns the same records. Documents are read here, on the client: a
JOB.yaml travels as its mapping, a CWL file as the ``WorkflowSpec`` the local parser makes of
it (so files it refers to are read where they are, never on the server). ``wait`` polls the
server: there the daemons of ``dpps serve`` run the jobs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dpps.bdms.types import Page
from dpps.client.views import Transport, load, paged_total
from dpps.core.errors import InvalidInput, Unavailable
from dpps.wms.builder import read_yaml, single_tool_workflow
from dpps.wms.spec import Tool, WorkflowSpec
from dpps.wms.states import FINAL_JOB_STATES, FINAL_WORKFLOW_STATES, TransformationState
from dpps.wms.types import (
    AccountingRow,
    JobInfo,
    SubmitOptions,
    Submitted,
    TransformationInfo,
    WorkflowInfo,
)

Progress = Callable[[int, int], None]
PAGE = 1000
POLL_S = 0.5


def _options(opts: SubmitOptions | None) -> dict[str, Any]:
    return asdict(opts or SubmitOptions())


def _spec(template: WorkflowSpec | Tool | Path) -> dict[str, Any]:
    if isinstance(template, Path):
        from dpps.wms import cwl  # the CWL parser is heavy: only when a CWL file is given

        template = cwl.load(template)
    if isinstance(template, Tool):
        template = single_tool_workflow(template)
    return template.model_dump(mode="json")


class RemoteWMS:
    """``WMSAPI`` (``dpps.wms.api_types``) spoken to a dpps server."""

    def __init__(self, remote: Transport) -> None:
        self.remote = remote

    # -- submission ------------------------------------------------------------------------
    def submit(
        self,
        path: Path,
        inputs: Path | Mapping[str, Any] | None = None,
        *,
        opts: SubmitOptions | None = None,
    ) -> Submitted:
        """A ``JOB.yaml`` becomes a job; a ``.cwl`` document a workflow on ``inputs``."""
        if path.suffix == ".cwl":
            given = read_yaml(inputs, "inputs") if isinstance(inputs, Path) else (inputs or {})
            if not isinstance(given, Mapping):
                raise InvalidInput(f"{inputs}: the inputs must be a mapping of name: value")
            body = {**_options(opts), "spec": _spec(path), "inputs": dict(given)}
            return load(Submitted, self.remote._json("POST", "/api/v1/workflows", json=body))
        if inputs is not None:
            raise InvalidInput("--inputs belongs to a CWL workflow; a JOB.yaml holds its inputs")
        data = read_yaml(path, "job")
        if isinstance(data, Mapping) and "cwlVersion" in data:
            raise InvalidInput(f"{path} is a CWL document: give it a .cwl name")
        body = {**_options(opts), "job": data}
        return load(Submitted, self.remote._json("POST", "/api/v1/jobs", json=body))

    def wait(
        self,
        submitted: Submitted,
        *,
        run: bool = True,
        executor: str | None = None,
        scheduler: str | None = None,
        timeout_s: float = 3600.0,
        progress: Progress | None = None,
    ) -> str:
        """Until the job or workflow is final, run by the server's daemons (``run`` and the
        executor options only apply locally)."""
        deadline = time.monotonic() + timeout_s
        final: frozenset[str]
        while True:
            if submitted.kind == "job":
                state = self.job(submitted.id).state
                done, total, final = int(state in FINAL_JOB_STATES), 1, FINAL_JOB_STATES
            else:
                wf = self.workflow(submitted.id)
                state, total, final = wf.state, len(wf.jobs), FINAL_WORKFLOW_STATES
                done = sum(j.state in FINAL_JOB_STATES for j in wf.jobs)
            if progress is not None:
                progress(done, total)
            if state in final:
                return state
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"{submitted.kind} {submitted.id} still running after {timeout_s:.0f} s"
                )
            time.sleep(POLL_S)

    # -- status ----------------------------------------------------------------------------
    def job(self, job_id: int) -> JobInfo:
        return load(JobInfo, self.remote._json("GET", f"/api/v1/jobs/{int(job_id)}"))

    def workflow(self, workflow_id: int) -> WorkflowInfo:
        return load(WorkflowInfo, self.remote._json("GET", f"/api/v1/workflows/{workflow_id}"))

    def list_jobs(
        self,
        *,
        state: str | None = None,
        workflow_id: int | None = None,
        site: str | None = None,
        activity: str | None = None,
        limit: int = 100,
    ) -> list[JobInfo]:
        return self.job_listing(
            state=state, workflow_id=workflow_id, site=site, activity=activity, limit=limit
        ).items

    def job_listing(
        self,
        *,
        state: str | None = None,
        workflow_id: int | None = None,
        site: str | None = None,
        activity: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[JobInfo]:
        filters = {"state": state, "workflow_id": workflow_id, "site": site, "activity": activity}
        params: dict[str, Any] = {k: v for k, v in filters.items() if v is not None}
        items, total = paged_total(self.remote, "/api/v1/jobs", params, limit, offset, page=PAGE)
        return Page(load(list[JobInfo], items), total, offset, limit)

    def accounting(
        self, by: Sequence[str] = ("site", "activity", "software_version")
    ) -> list[AccountingRow]:
        """The server's accounting of the jobs that ran (the library's rows, same order)."""
        data = self.remote._json("GET", "/api/v1/accounting", params={"by": ",".join(by)})
        return load(list[AccountingRow], data)

    def logs(self, job_id: int) -> str:
        return str(self.remote._json("GET", f"/api/v1/jobs/{int(job_id)}/log")["log"])

    # -- control ---------------------------------------------------------------------------
    def kill(self, job_id: int, reason: str | None = None) -> str:
        self.remote._json("POST", f"/api/v1/jobs/{int(job_id)}/kill", json={"reason": reason})
        return "KILLED"

    def kill_workflow(self, workflow_id: int, reason: str | None = None) -> int:
        path = f"/api/v1/workflows/{int(workflow_id)}/kill"
        return int(self.remote._json("POST", path, json={"reason": reason})["count"])

    def retry(self, job_id: int) -> None:
        self.remote._json("POST", f"/api/v1/jobs/{int(job_id)}/retry")

    def retry_workflow(self, workflow_id: int) -> int:
        path = f"/api/v1/workflows/{int(workflow_id)}/retry"
        return int(self.remote._json("POST", path)["count"])

    # -- transformations -------------------------------------------------------------------
    def add_transformation(
        self,
        name: str,
        template: WorkflowSpec | Tool | Path,
        *,
        filter_text: str = "",
        input_from: str | None = None,
        input_port: str | None = None,
        grouping: str = "file",
        inputs: Mapping[str, Any] | None = None,
        opts: SubmitOptions | None = None,
        settle_s: float = 0.0,
        max_task_attempts: int = 2,
    ) -> TransformationInfo:
        o = opts or SubmitOptions()
        body = {
            "name": name,
            "spec": _spec(template),
            "filter": filter_text,
            "input_from": input_from,
            "input_port": input_port,
            "grouping": grouping,
            "inputs": dict(inputs or {}),
            "settle_s": settle_s,
            "max_task_attempts": max_task_attempts,
            "priority": o.priority,
            "activity": o.activity,
            "site": o.site,
            "executor": o.executor,
        }
        data = self.remote._json("POST", "/api/v1/transformations", json=body)
        return load(TransformationInfo, data)

    def transformations(self) -> list[TransformationInfo]:
        out: list[TransformationInfo] = []
        while True:
            page = self.remote._json(
                "GET", "/api/v1/transformations", params={"limit": PAGE, "offset": len(out)}
            )
            out.extend(load(list[TransformationInfo], page["items"]))
            if len(out) >= page["total"] or not page["items"]:
                return out

    def transformation(self, name: str) -> TransformationInfo:
        data = self.remote._json("GET", f"/api/v1/transformations/{quote(name, safe='')}")
        return load(TransformationInfo, data)

    def set_transformation_state(self, name: str, state: TransformationState) -> None:
        verb = "pause" if state == TransformationState.PAUSED else "resume"
        self.remote._json("POST", f"/api/v1/transformations/{quote(name, safe='')}/{verb}")

    def retry_problematic(self, name: str) -> int:
        path = f"/api/v1/transformations/{quote(name, safe='')}/retry"
        return int(self.remote._json("POST", path)["count"])
