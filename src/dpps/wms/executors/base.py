"""The one executor interface: submit a job's task to a worker of a site, count free slots.

An executor only moves tasks to workers; it knows nothing about job state, which the worker
reads and writes in the catalog itself (``dpps.wms.runner``). That is why a manager can be
killed with tasks in flight: the workers carry on, and what never started is found by its
expired lease and dispatched again.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Task:
    """What a worker needs to run one attempt of a job: everything else is in the catalog."""

    job_id: int
    token: str
    attempt: int
    workspace: str
    site: str | None
    executor: str


class Executor(Protocol):
    name: str

    def capacity(self) -> dict[str | None, int]:
        """Slots per site; the key None means "any site" (the local executor)."""
        ...

    def submit(self, task: Task) -> Future[dict[str, Any]]: ...

    def submit_many(
        self, tasks: Sequence[Task], *, bundle: int = 1
    ) -> list[Future[dict[str, Any]]]:
        """``submit`` for a dispatch round's tasks at once (one scheduler message, not one per
        job); up to ``bundle`` short jobs of one site may share a worker task (an executor
        may run each job on its own). The futures are in the order of ``tasks``."""
        ...

    def shutdown(self, *, cancel: bool = True) -> None:
        """Stop taking tasks; with ``cancel`` stop running ones too (their jobs are requeued
        by the manager). Without ``cancel`` an idle executor may keep its workers for reuse."""
        ...
