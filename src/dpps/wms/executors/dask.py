"""The distributed executor: a Dask scheduler whose workers declare their site.

Workers are started with ``--resources SITE_<NAME>=<slots>``; a task asks for one unit of its
site's resource, so Dask runs it only on a worker of that site. Slots per site come from the
scheduler's view of its workers. Job state never goes into Dask: a task only carries the job
id and its lease token, and the worker reports to the catalog.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import Executor as FuturesExecutor
from concurrent.futures import Future
from typing import Any

from distributed import Client

from dpps.core.errors import Unavailable
from dpps.wms.executors.base import Task

SITE_PREFIX = "SITE_"


def _run(task: Task) -> dict[str, Any]:
    from dpps.wms.runner import run_task

    return run_task(task)


class DaskExecutor:
    name = "dask"

    def __init__(self, address: str, *, timeout_s: float = 30.0) -> None:
        try:
            self.client = Client(address, timeout=timeout_s, set_as_default=False)  # type: ignore[no-untyped-call]
        except (OSError, TimeoutError) as exc:
            raise Unavailable(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        self._executors: dict[str, FuturesExecutor] = {}

    def capacity(self) -> dict[str | None, int]:
        slots: Counter[str | None] = Counter()
        for info in self.client.scheduler_info(n_workers=-1).get("workers", {}).values():
            for name, amount in (info.get("resources") or {}).items():
                if name.startswith(SITE_PREFIX):
                    slots[name[len(SITE_PREFIX) :]] += int(amount)
        return dict(slots)

    def submit(self, task: Task) -> Future[dict[str, Any]]:
        if task.site is None:
            raise Unavailable("the dask executor needs a site for every job")
        executor = self._executors.get(task.site)
        if executor is None:
            executor = self.client.get_executor(  # type: ignore[no-untyped-call]
                resources={f"{SITE_PREFIX}{task.site}": 1}, pure=False, retries=0
            )
            self._executors[task.site] = executor
        return executor.submit(_run, task)

    def shutdown(self, *, cancel: bool = True) -> None:
        # Tasks already on workers finish there (they own their leases); queued ones are
        # dropped with the client and requeued by lease expiry.
        self.client.close()  # type: ignore[no-untyped-call]
