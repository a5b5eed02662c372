"""The embedded executor: a pool of worker processes on this machine, serving every site.

On the embedded deployment all RSEs are directories of one workspace, so this pool stands in
for the workers of every data center: a job matched to site S runs here as if at S (direct
access to S's replicas). Pool processes die with their parent (PR_SET_PDEATHSIG) and take
their tools' process groups with them, so a killed manager leaves nothing running; the jobs
they held are requeued when their leases expire.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import suppress
from typing import Any

from dpps.wms.executors.base import Task

_PR_SET_PDEATHSIG = 1


def _on_term(_signum: int, _frame: object) -> None:
    from dpps.wms.process import RUNNING_GROUPS, kill_group

    for pgid in list(RUNNING_GROUPS):
        kill_group(pgid, signal.SIGKILL)
    os._exit(143)


def _init_worker() -> None:
    if sys.platform.startswith("linux"):
        with suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the manager's to handle


def _warm(workers: int) -> int:
    import time

    import dpps.wms.runner  # noqa: F401  (the import is the point)

    time.sleep(0.05 * workers)  # hold this process so the next warm-up lands on another
    return os.getpid()


def _run(task: Task) -> dict[str, Any]:
    from dpps.wms.runner import run_task

    return run_task(task)


#: Idle pools, by size, kept for the next manager of this process (tests, --wait loops): a
#: spawned pool costs seconds of imports. Their processes serve any workspace.
_IDLE: dict[int, ProcessPoolExecutor] = {}


class LocalExecutor:
    name = "local"

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def _ensure(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = _IDLE.pop(self.workers, None)
        if self._pool is None:
            # spawn: forking a process that holds threads and database connections is unsafe.
            pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
            )
            # Start every process and import the runner before the first job is handed over,
            # so a dispatched job is taken at once rather than after seconds of start-up.
            warm = [pool.submit(_warm, self.workers) for _ in range(self.workers)]
            wait(warm, timeout=120)
            self._pool = pool
        return self._pool

    def capacity(self) -> dict[str | None, int]:
        self._ensure()  # started (and warm) before any job is marked MATCHED
        return {None: self.workers}

    def submit(self, task: Task) -> Future[dict[str, Any]]:
        pool = self._ensure()
        try:
            return pool.submit(_run, task)
        except BrokenProcessPool:
            # A worker process died (killed, out of memory): its jobs are requeued by the
            # manager; start a fresh pool for the rest.
            self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            return self._ensure().submit(_run, task)

    def submit_many(
        self, tasks: Sequence[Task], *, bundle: int = 1
    ) -> list[Future[dict[str, Any]]]:
        return [self.submit(task) for task in tasks]  # a pool process per job: no bundles

    def shutdown(self, *, cancel: bool = True) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if not cancel and not getattr(pool, "_broken", False) and self.workers not in _IDLE:
            _IDLE[self.workers] = pool  # nothing running: keep it warm for the next manager
            return
        processes = dict(getattr(pool, "_processes", None) or {})
        for proc in processes.values():
            with suppress(OSError):
                proc.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
