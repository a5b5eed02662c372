"""What the workload manager offers its users, written once: ``WMS`` (local) and
``dpps.client.wms.RemoteWMS`` (over REST) both satisfy ``WMSAPI``, and mypy checks it
(``dpps.cli.common``, where the CLI chooses one of them).

Only record and document types are imported here (``wms.types``, ``wms.spec``, ``wms.states``),
so the client can name this Protocol without loading the catalog.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from dpps.bdms.types import Page
from dpps.wms.spec import Tool, WorkflowSpec
from dpps.wms.states import TransformationState
from dpps.wms.types import (
    AccountingRow,
    JobInfo,
    SubmitOptions,
    Submitted,
    TransformationInfo,
    WorkflowInfo,
)

Progress = Callable[[int, int], None]


class WMSAPI(Protocol):
    """Jobs, workflows and transformations: ``dpps wms``, the same locally and over REST."""

    # -- submission
    def submit(
        self,
        path: Path,
        inputs: Path | Mapping[str, Any] | None = None,
        *,
        opts: SubmitOptions | None = None,
    ) -> Submitted: ...

    def wait(
        self,
        submitted: Submitted,
        *,
        run: bool = True,
        executor: str | None = None,
        scheduler: str | None = None,
        timeout_s: float = 3600.0,
        progress: Progress | None = None,
    ) -> str: ...

    # -- status
    def job(self, job_id: int) -> JobInfo: ...

    def workflow(self, workflow_id: int) -> WorkflowInfo: ...

    def list_jobs(
        self,
        *,
        state: str | None = None,
        workflow_id: int | None = None,
        site: str | None = None,
        activity: str | None = None,
        limit: int = 100,
    ) -> list[JobInfo]: ...

    def job_listing(
        self,
        *,
        state: str | None = None,
        workflow_id: int | None = None,
        site: str | None = None,
        activity: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[JobInfo]: ...

    def accounting(
        self, by: Sequence[str] = ("site", "activity", "software_version")
    ) -> list[AccountingRow]: ...

    def logs(self, job_id: int) -> str: ...

    # -- control
    def kill(self, job_id: int, reason: str | None = None) -> str: ...

    def kill_workflow(self, workflow_id: int, reason: str | None = None) -> int: ...

    def retry(self, job_id: int) -> None: ...

    def retry_workflow(self, workflow_id: int) -> int: ...

    # -- transformations
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
    ) -> TransformationInfo: ...

    def transformations(self) -> list[TransformationInfo]: ...

    def transformation(self, name: str) -> TransformationInfo: ...

    def set_transformation_state(self, name: str, state: TransformationState) -> None: ...

    def retry_problematic(self, name: str) -> int: ...
