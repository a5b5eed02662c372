"""One thread per worker process renews the leases of all the jobs it runs, and one removes
finished sandboxes.

A thread per job for each of these cost more than the bookkeeping of a short job itself:
``Thread.start`` waits until the new thread has been scheduled, which on a busy machine is a
scheduling round for every job. These two threads start with the first job of the process and
live as long as it (daemon threads: a worker that exits takes them along; a lease it held then
expires and the manager requeues the job, as for any dead worker).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dpps.catalog.engine import transaction
from dpps.core.clock import utcnow
from dpps.wms import jobs as job_repo
from dpps.wms.executors.base import Task
from dpps.wms.states import JobState

if TYPE_CHECKING:
    from dpps.wms.worker_context import WorkerContext

log = logging.getLogger("dpps.wms.runner")
#: Longest sleep of the renewer: how soon a newly held lease is looked at at the latest.
_TICK_S = 0.2


@dataclass(eq=False)
class Held:
    """A lease this process renews; ``lost`` is set when the job is no longer the attempt's
    (killed, or requeued as stalled), and the tool must stop."""

    ctx: WorkerContext
    task: Task
    interval: float
    due: float
    lost: threading.Event = field(default_factory=threading.Event)


class Renewer:
    """Renews every held lease each ``interval`` (a quarter of the lease, 0.2 to 15 s)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, Held] = {}
        self._thread: threading.Thread | None = None

    def hold(self, ctx: WorkerContext, task: Task) -> Held:
        interval = max(0.2, min(ctx.config.wms.lease_s / 4.0, 15.0))
        held = Held(ctx, task, interval, time.monotonic() + interval)
        with self._lock:
            self._held[task.token] = held
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="wms-leases", daemon=True)
                self._thread.start()
        return held

    def release(self, held: Held) -> None:
        with self._lock:
            self._held.pop(held.task.token, None)

    def _run(self) -> None:
        while True:
            now = time.monotonic()
            with self._lock:
                due = [h for h in self._held.values() if h.due <= now]
            for held in due:
                held.due = time.monotonic() + held.interval
                if not self._renew(held):
                    held.lost.set()
                    self.release(held)
            with self._lock:
                nxt = min((h.due for h in self._held.values()), default=now + _TICK_S)
            time.sleep(min(max(nxt - time.monotonic(), 0.01), _TICK_S))

    @staticmethod
    def _renew(held: Held) -> bool:
        """True while the attempt still owns its job (a transient error counts as owning:
        a database hiccup must not kill the job; the next round tries again)."""
        lease = dt.timedelta(seconds=held.ctx.config.wms.lease_s)
        try:
            with transaction(held.ctx.sessions, serialise_on_sqlite=True) as s:
                now = utcnow()
                return job_repo.guarded_update(
                    s,
                    held.task.job_id,
                    held.task.token,
                    [JobState.RUNNING],
                    {"heartbeat_at": now, "lease_expires_at": now + lease},
                )
        except Exception as exc:
            log.warning("job %s: heartbeat failed: %s", held.task.job_id, exc)
            return True


class Remover:
    """Removes finished sandboxes in the background: nobody waits for it."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Path] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def remove(self, path: Path) -> None:
        self._queue.put(path)
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="wms-sandbox-cleanup", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            path = self._queue.get()
            if not _remove_plain(path):
                shutil.rmtree(path, ignore_errors=True)


def _remove_plain(sandbox: Path) -> bool:
    """Remove a sandbox as a short tool leaves it (its two logs, perhaps an empty ``out``) in
    three or four calls, without the directory walk of ``rmtree``; False if it holds anything
    else."""
    try:
        for name in ("stdout.log", "stderr.log"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(sandbox / name)
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(sandbox / "out")
        os.rmdir(sandbox)
    except OSError:
        return False
    return True


#: This process's renewer and remover.
RENEWER = Renewer()
REMOVER = Remover()
