"""The distributed executor: a Dask scheduler whose workers declare their site.

Workers are started with ``--resources SITE_<NAME>=<slots>``; a task asks for one unit of its
site's resource, so Dask runs it only on a worker of that site. Slots per site come from the
scheduler's view of its workers. Job state never goes into Dask: a task only carries the job
id and its lease token, and the worker reports to the catalog.

Per job this costs what a raw Dask task costs and no more: a round's tasks go to the scheduler
in one message per site (``client.map``), and a finished task is settled from the status the
scheduler pushes to the client, without fetching its result (the catalog holds the outcome;
only a task that raised costs the round trip for its exception).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from concurrent.futures import CancelledError, Future
from contextlib import suppress
from functools import partial
from typing import Any

from distributed import Client
from distributed import Future as DaskFuture

from dpps.core.errors import Unavailable
from dpps.wms.executors.base import Task

SITE_PREFIX = "SITE_"


def _run(tasks: list[Task]) -> list[dict[str, Any]]:
    from dpps.wms.runner import run_tasks

    return run_tasks(tasks)


def _settle(
    bundle: Sequence[Task],
    done: DaskFuture[list[dict[str, Any]]],
    *,
    futures: Sequence[Future[dict[str, Any]]],
) -> None:
    """Carry a Dask task's end over to its jobs' futures (on Dask's callback thread)."""
    try:
        if done.status == "finished":
            for task, future in zip(bundle, futures, strict=True):
                future.set_result({"job_id": task.job_id})
            return
        if done.status == "error":
            exc = done.exception()  # type: ignore[no-untyped-call]
            error = exc if isinstance(exc, BaseException) else RuntimeError(exc)
        else:  # cancelled, or lost with its worker: the manager requeues the jobs
            error = CancelledError(f"dask task {done.status}")
    except BaseException as exc:  # the client closed under us: still end the futures
        error = exc
    finally:
        with suppress(RuntimeError):  # a closed client has nothing left to release
            done.release()  # type: ignore[no-untyped-call]
    for future in futures:
        if not future.done():
            future.set_exception(error)


class DaskExecutor:
    name = "dask"

    def __init__(self, address: str, *, timeout_s: float = 30.0) -> None:
        try:
            self.client = Client(address, timeout=timeout_s, set_as_default=False)  # type: ignore[no-untyped-call]
        except (OSError, TimeoutError) as exc:
            raise Unavailable(f"cannot reach the Dask scheduler at {address}: {exc}") from None

    def capacity(self) -> dict[str | None, int]:
        slots: Counter[str | None] = Counter()
        for info in self.client.scheduler_info(n_workers=-1).get("workers", {}).values():
            for name, amount in (info.get("resources") or {}).items():
                if name.startswith(SITE_PREFIX):
                    slots[name[len(SITE_PREFIX) :]] += int(amount)
        return dict(slots)

    def submit(self, task: Task) -> Future[dict[str, Any]]:
        return self.submit_many([task])[0]

    def submit_many(
        self, tasks: Sequence[Task], *, bundle: int = 1
    ) -> list[Future[dict[str, Any]]]:
        """One scheduler message per site for the whole round; ``bundle`` jobs of a site per
        Dask task, run one after the other by one worker thread. The futures are in the order
        of ``tasks``."""
        if any(task.site is None for task in tasks):
            raise Unavailable("the dask executor needs a site for every job")
        out: list[Future[dict[str, Any]]] = [Future() for _ in tasks]
        for future in out:
            future.set_running_or_notify_cancel()
        by_site: dict[str, list[int]] = {}
        for i, task in enumerate(tasks):
            by_site.setdefault(str(task.site), []).append(i)
        size = max(1, bundle)
        for site, where in by_site.items():
            groups = [where[k : k + size] for k in range(0, len(where), size)]
            bundles = [[tasks[i] for i in group] for group in groups]
            submitted = self.client.map(
                _run,
                bundles,
                key=[f"dpps-jobs-{b[0].token}-{len(b)}" for b in bundles],
                resources={f"{SITE_PREFIX}{site}": 1},
                pure=False,
                retries=0,
            )
            for group, jobs, done in zip(groups, bundles, submitted, strict=True):
                done.add_done_callback(partial(_settle, jobs, futures=[out[i] for i in group]))  # type: ignore[no-untyped-call]
        return out

    def shutdown(self, *, cancel: bool = True) -> None:
        # Tasks already on workers finish there (they own their leases); queued ones are
        # dropped with the client and requeued by lease expiry.
        self.client.close()  # type: ignore[no-untyped-call]
