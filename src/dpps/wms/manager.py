"""The job manager daemon: stalls, workflow steps, waiting inputs, matching and dispatch.

``run_once`` does one round of each duty, every one a short transaction on rows claimed with a
lease, so several managers can run and any can be SIGKILLed:

1. reap finished executor futures (an executor-level crash requeues the job);
2. requeue jobs whose lease expired (worker died or hung), or fail them after max_attempts;
3. advance workflows flagged by a finished job (create the next steps' jobs);
4. re-check WAITING jobs whose inputs may have become readable;
5. match SUBMITTED jobs (by activity rank, priority, age) to a site with free slots and hand
   them to the executor.

A dispatched job carries a lease token; the worker that takes it renews the lease. The manager
keeps no state that matters: what it had in flight when it died is found again by lease
expiry.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections import Counter, deque
from concurrent import futures
from concurrent.futures import Future
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from dpps.catalog.engine import transaction
from dpps.catalog.leases import claim
from dpps.catalog.models_wms import JobRow, WorkflowRow
from dpps.core.clock import utcnow
from dpps.core.config import Config
from dpps.core.daemon import DaemonContext, new_instance_id
from dpps.core.errors import DppsError
from dpps.wms import jobs as job_repo
from dpps.wms import workflows
from dpps.wms.executors.base import Executor, Task
from dpps.wms.matching import check_inputs, choose_site, request_staging
from dpps.wms.states import JobState, WorkflowState

log = logging.getLogger("dpps.wms.manager")
ACCOUNT = "wms"
#: Tasks handed to the executor per slot at least (one running, one queued behind it).
PREFETCH = 2
#: ... and at most, for very short jobs (see ``JobManager.depth``).
MAX_PREFETCH = 16
#: Seconds of work queued per slot when jobs are short: deep enough that the manager refills
#: the queues with one transaction for many jobs, shallow enough that a job queued now
#: starts within about this long (far below the lease) and a new urgent job is not held up.
QUEUE_S = 1.0
#: Seconds of work per bundle of short jobs handed to a worker as one task (see
#: ``JobManager.bundle``): a job's outcome is recorded at the latest this long after it ended.
BUNDLE_S = 0.5
#: How often expired leases are looked for (leases last minutes; no need to ask every round).
STALL_CHECK_S = 1.0
#: How often workflows flagged by others (kill, retry, another manager's jobs) are looked for;
#: a job this manager saw finish triggers the check at once.
ADVANCE_CHECK_S = 0.5
#: How often the executor's slots are asked for (a Dask scheduler round trip).
CAPACITY_CHECK_S = 1.0


class JobManager:
    """One manager instance driving one executor."""

    def __init__(
        self,
        config: Config,
        sessions: sessionmaker[Session],
        executor: Executor,
        *,
        instance: str | None = None,
        batch: int = 500,
        waiting_every_s: float = 2.0,
    ) -> None:
        self.config = config
        self.sessions = sessions
        self.executor = executor
        self.instance = instance or new_instance_id()
        self.batch = batch
        self.waiting_every_s = waiting_every_s
        self._last_waiting = 0.0
        self._last_stalled = 0.0
        self._last_advance = 0.0
        self._advance_now = True
        self._capacity: dict[str | None, int] = {}
        self._capacity_at = -math.inf
        self._finished: deque[float] = deque(maxlen=64)  # when recent tasks ended
        self.inflight: dict[int, tuple[Future[dict[str, Any]], str | None, str]] = {}
        self._in_workflow: set[int] = set()  # jobs in flight that are a workflow's steps

    # -- the daemon's unit of work ---------------------------------------------------------
    def run_once(self, ctx: DaemonContext) -> int:
        """One round of each duty (the daemon contract's signature; ``ManagerDaemon`` runs it
        under the runner); nothing new is dispatched once ``ctx`` is stopping."""
        done = self.reap()
        if time.monotonic() - self._last_stalled >= STALL_CHECK_S:
            self._last_stalled = time.monotonic()
            done += self.requeue_stalled()
        if self._advance_now or time.monotonic() - self._last_advance >= ADVANCE_CHECK_S:
            self._advance_now = False
            self._last_advance = time.monotonic()
            done += self.advance_workflows()
        if time.monotonic() - self._last_waiting >= self.waiting_every_s:
            self._last_waiting = time.monotonic()
            done += self.recheck_waiting()
        if not ctx.stopping:
            done += self.dispatch()
        if not done and self.inflight:
            # Nothing to do but wait: wake up as soon as there is room for a batch of jobs
            # (or a slot may run dry), not a sleep later.
            done += self._wait_for_room(0.5)
        return done

    def _wait_for_room(self, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        reaped = 0
        while self.inflight and not self._advance_now:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            futures.wait(
                [f for f, _s, _t in self.inflight.values()],
                timeout=left,
                return_when=futures.FIRST_COMPLETED,
            )
            reaped += self.reap()
            if self._refill_due(self._free()):
                break
        return reaped

    def drain(self, timeout_s: float = 3600.0) -> None:
        """Wait for the jobs in flight to end."""
        deadline = time.monotonic() + timeout_s
        while self.inflight and time.monotonic() < deadline:
            futures.wait(
                [f for f, _s, _t in self.inflight.values()],
                timeout=1.0,
                return_when=futures.FIRST_COMPLETED,
            )
            self.reap()

    def run_queue(self, ctx: DaemonContext | None = None, timeout_s: float = 3600.0) -> int:
        """Run rounds until nothing is queued, in flight or ready to advance (``--once``: one
        pass finishes the work that was queued, and the workflow steps it makes ready)."""
        deadline = time.monotonic() + timeout_s
        total = 0
        ctx = ctx or DaemonContext("wms-manager", instance=self.instance)
        while time.monotonic() < deadline and not ctx.stopping:
            self._advance_now = True
            done = self.run_once(ctx)
            total += done
            if not done and not self.inflight:
                break
        self.drain(max(0.0, deadline - time.monotonic()))
        return total

    def close(self) -> None:
        """Stop the executor; give back what it held so another manager can run it now."""
        keeps_running = self.executor.name == "dask"
        self.reap()
        self.executor.shutdown(cancel=bool(self.inflight))
        states = [JobState.MATCHED] if keeps_running else [JobState.MATCHED, JobState.RUNNING]
        with transaction(self.sessions, serialise_on_sqlite=True) as s:
            for job_id, (_f, _site, token) in self.inflight.items():
                job_repo.guarded_update(
                    s,
                    job_id,
                    token,
                    states,
                    {
                        "state": JobState.SUBMITTED.value,
                        "lease_owner": None,
                        "lease_expires_at": None,
                        "attempts": JobRow.__table__.c.attempts - 1,
                    },
                    event={
                        "state": JobState.SUBMITTED.value,
                        "account": ACCOUNT,
                        "reason": "manager stopped; requeued",
                    },
                )
        self.inflight.clear()
        self._in_workflow.clear()

    # -- 1. futures ------------------------------------------------------------------------
    def reap(self) -> int:
        finished = [jid for jid, (f, _s, _t) in self.inflight.items() if f.done()]
        now = time.monotonic()
        for job_id in finished:
            future, _site, token = self.inflight.pop(job_id)
            self._finished.append(now)
            in_workflow = job_id in self._in_workflow
            self._in_workflow.discard(job_id)
            exc = future.exception() if not future.cancelled() else None
            if exc is None and not future.cancelled():
                if in_workflow:
                    self._advance_now = True  # its next steps may be ready
                continue
            reason = f"executor error: {type(exc).__name__}: {exc}" if exc else "cancelled"
            log.warning("job %s: %s", job_id, reason)
            with transaction(self.sessions, serialise_on_sqlite=True) as s:
                job = s.get(JobRow, job_id)
                final = job is not None and job.attempts >= job.max_attempts
                state = JobState.FAILED if final else JobState.SUBMITTED
                won = job_repo.guarded_update(
                    s,
                    job_id,
                    token,
                    [JobState.MATCHED, JobState.RUNNING],
                    {
                        "state": state.value,
                        "lease_owner": None,
                        "lease_expires_at": None,
                        "reason": reason,
                        **({"finished_at": utcnow()} if final else {}),
                    },
                    event={"state": state.value, "account": ACCOUNT, "reason": reason},
                )
                if won and final and job is not None:
                    workflows.flag(s, [job.workflow_id])
        return len(finished)

    # -- 2. stalled jobs -------------------------------------------------------------------
    def _any(self, *where: Any) -> bool:
        """A cheap read before taking the (SQLite: exclusive) write lock for nothing."""
        with self.sessions() as s:
            return s.scalar(select(JobRow.id).where(*where).limit(1)) is not None

    def requeue_stalled(self) -> int:
        now = utcnow()
        leased = JobRow.state.in_([JobState.MATCHED.value, JobState.RUNNING.value])
        if not self._any(leased, JobRow.lease_expires_at < now):
            return 0
        with transaction(self.sessions, serialise_on_sqlite=True) as s:
            stmt = (
                select(JobRow)
                .where(
                    JobRow.state.in_([JobState.MATCHED.value, JobState.RUNNING.value]),
                    JobRow.lease_expires_at < now,
                )
                .order_by(JobRow.id)
                .limit(self.batch)
            )
            if s.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            rows = list(s.scalars(stmt))
            for job in rows:
                seen = job.heartbeat_at.isoformat(timespec="seconds") if job.heartbeat_at else None
                what = (
                    f"stalled: no heartbeat since {seen}" if seen else "stalled: no worker took it"
                )
                details = {"host": job.host, "site": job.run_site}
                if job.state == JobState.MATCHED:
                    # Never started: the executor was slow or lost the task. Not the job's
                    # fault, so the attempt does not count.
                    job_repo.set_state(
                        s,
                        job,
                        JobState.SUBMITTED,
                        account=ACCOUNT,
                        reason=f"{what}; requeued",
                        details=details,
                        lease_owner=None,
                        lease_expires_at=None,
                        attempts=max(job.attempts - 1, 0),
                    )
                elif job.attempts >= job.max_attempts:
                    job_repo.set_state(
                        s,
                        job,
                        JobState.FAILED,
                        account=ACCOUNT,
                        details=details,
                        reason=f"{what} (attempt {job.attempts} of {job.max_attempts})",
                    )
                    workflows.flag(s, [job.workflow_id])
                else:
                    job_repo.set_state(
                        s,
                        job,
                        JobState.SUBMITTED,
                        account=ACCOUNT,
                        reason=f"{what}; rescheduled",
                        details=details,
                        lease_owner=None,
                        lease_expires_at=None,
                    )
                self.inflight.pop(job.id, None)
                self._in_workflow.discard(job.id)
        return len(rows)

    # -- 3. workflows ----------------------------------------------------------------------
    def advance_workflows(self) -> int:
        with self.sessions() as s:
            flagged = s.scalar(
                select(WorkflowRow.id)
                .where(
                    WorkflowRow.state == WorkflowState.RUNNING.value,
                    WorkflowRow.needs_advance.is_(True),
                )
                .limit(1)
            )
        if flagged is None:
            return 0
        with transaction(self.sessions, serialise_on_sqlite=True) as s:
            rows = claim(
                s,
                WorkflowRow,
                owner=self.instance,
                lease_s=self.config.wms.lease_s,
                where=[
                    WorkflowRow.state == WorkflowState.RUNNING.value,
                    WorkflowRow.needs_advance.is_(True),
                ],
                order_by=[WorkflowRow.id],
                limit=self.batch,
            )
            if not rows:
                return 0
            workflows.advance(s, self.config, rows, ACCOUNT)
            for row in rows:
                row.lease_owner = None
                row.lease_expires_at = None
        return len(rows)

    # -- 4. waiting jobs -------------------------------------------------------------------
    def recheck_waiting(self) -> int:
        if not self._any(
            JobRow.state == JobState.WAITING.value, JobRow.executor == self.executor.name
        ):
            return 0
        with transaction(self.sessions, serialise_on_sqlite=True) as s:
            rows = claim(
                s,
                JobRow,
                owner=self.instance,
                lease_s=60.0,
                where=[
                    JobRow.state == JobState.WAITING.value,
                    JobRow.executor == self.executor.name,
                ],
                order_by=[JobRow.updated_at, JobRow.id],
                limit=self.batch,
            )
            checks = check_inputs(s, self.config, [j.id for j in rows])
            woken = 0
            for job in rows:
                job.lease_owner = None
                job.lease_expires_at = None
                check = checks[job.id]
                if check.ready:
                    job_repo.set_state(
                        s, job, JobState.SUBMITTED, account=ACCOUNT, reason="inputs readable"
                    )
                    woken += 1
                    continue
                request_staging(s, self.config, check, ACCOUNT)
                if check.reason != job.reason:
                    job_repo.set_state(
                        s, job, JobState.WAITING, account=ACCOUNT, reason=check.reason
                    )
                else:
                    job.updated_at = utcnow()
        return woken

    # -- 5. dispatch -----------------------------------------------------------------------
    def capacity(self) -> dict[str | None, int]:
        """The executor's slots per site, asked for at most every ``CAPACITY_CHECK_S``."""
        if time.monotonic() - self._capacity_at >= CAPACITY_CHECK_S:
            self._capacity = self.executor.capacity()
            self._capacity_at = time.monotonic()
        return self._capacity

    def _rate_per_slot(self) -> float | None:
        """Jobs ended per second per slot lately (None until two have ended)."""
        slots = sum(self.capacity().values())
        if len(self._finished) < 2 or slots <= 0:
            return None
        span = max(time.monotonic() - self._finished[0], 1e-3)
        return len(self._finished) / span / slots

    def depth(self) -> int:
        """Tasks to keep queued per slot: ``PREFETCH``, more while jobs are short (about
        ``QUEUE_S`` of work per slot, from the rate at which recent tasks ended)."""
        rate = self._rate_per_slot()
        if rate is None:
            return PREFETCH
        return max(PREFETCH, min(MAX_PREFETCH, int(rate * QUEUE_S)))

    def bundle(self) -> int:
        """Jobs of a site per executor task: one while jobs are long, more while they are
        short (about ``BUNDLE_S`` of work), so a short job does not pay a scheduler round trip
        and two worker transactions of its own. At most half a slot's queue, so that a slot
        always has a bundle waiting."""
        rate = self._rate_per_slot()
        if rate is None:
            return 1
        return max(1, min(self.depth() // PREFETCH, int(rate * BUNDLE_S)))

    def _free(self) -> dict[str | None, int]:
        """Free places per site in the executor's queues (``depth`` tasks per slot): a worker
        that finishes a job finds the next one waiting instead of a round trip to the
        manager."""
        busy = Counter(site for _f, site, _t in self.inflight.values())
        depth = self.depth()
        capacity = {k: v * depth for k, v in self.capacity().items()}
        if None in capacity:
            return {None: capacity[None] - sum(busy.values())}
        return {site: slots - busy.get(site, 0) for site, slots in capacity.items()}

    def _refill_due(self, free: dict[str | None, int]) -> bool:
        """Dispatch now? When half the queues are free, or when a slot may have nothing left
        to run: one dispatch transaction serves many short jobs instead of one each."""
        slots = self.capacity()
        busy = Counter(site for _f, site, _t in self.inflight.values())
        if None in slots:
            if sum(busy.values()) < slots[None]:
                return True
        elif any(busy.get(site, 0) < n for site, n in slots.items()):
            return True
        room = sum(max(0, n) for n in free.values())
        total = sum(max(0, n) for n in slots.values()) * self.depth()
        return room > 0 and room * 2 >= total

    def dispatch(self) -> int:
        now = utcnow()
        ready = (
            JobRow.state == JobState.SUBMITTED.value,
            JobRow.executor == self.executor.name,
            or_(JobRow.not_before.is_(None), JobRow.not_before <= now),
        )
        # Idle: a cheap read first, so that an idle manager (``dpps serve``) does not even
        # start its executor. Busy: the queues' room first, which needs no database at all.
        if not self.inflight and not self._any(*ready):
            return 0
        free = self._free()
        room = sum(max(0, n) for n in free.values())
        if room <= 0 or not self._refill_due(free):
            return 0
        if self.inflight and not self._any(*ready):
            return 0
        now = utcnow()  # leases start now: starting the executor (above) may take seconds
        lease = dt.timedelta(seconds=self.config.wms.lease_s)
        tasks: list[Task] = []
        steps: set[int] = set()
        events: list[dict[str, Any]] = []
        with transaction(self.sessions, serialise_on_sqlite=True) as s:
            # Rows locked for this transaction (PostgreSQL: skipping those another manager
            # holds; SQLite: the write lock) are matched and leased before it commits.
            stmt = (
                select(JobRow)
                .where(*ready)
                .order_by(JobRow.activity_rank.desc(), JobRow.priority.desc(), JobRow.id)
                .limit(min(self.batch, room))
            )
            if s.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            rows = list(s.scalars(stmt))
            checks = check_inputs(s, self.config, [j.id for j in rows])
            for job in rows:
                check = checks[job.id]
                if not check.ready:
                    request_staging(s, self.config, check, ACCOUNT)
                    job_repo.set_state(
                        s,
                        job,
                        JobState.WAITING,
                        account=ACCOUNT,
                        reason=check.reason,
                        batch=events,
                    )
                    continue
                site, why = choose_site(job.site, check.site_bytes, free)
                if why is not None or free.get(site if None not in free else None, 0) <= 0:
                    if why is not None and why != job.reason:
                        job.reason = why  # stays SUBMITTED; tried again next round
                    continue
                free[site if None not in free else None] -= 1
                attempt = job.attempts + 1
                token = f"{self.instance}/{job.id}/{attempt}"
                job_repo.set_state(
                    s,
                    job,
                    JobState.MATCHED,
                    account=ACCOUNT,
                    batch=events,
                    details={"site": site, "executor": self.executor.name},
                    attempts=attempt,
                    lease_owner=token,
                    lease_expires_at=now + lease,
                    run_site=site,
                    not_before=None,
                )
                tasks.append(
                    Task(
                        job.id,
                        token,
                        attempt,
                        str(self.config.workspace),
                        site,
                        self.executor.name,
                    )
                )
                if job.workflow_id is not None:
                    steps.add(job.id)
            job_repo.add_events(s, events)
        if not tasks:
            return 0
        try:
            submitted = self.executor.submit_many(tasks, bundle=self.bundle())
        except DppsError as exc:
            log.warning("%d jobs: cannot submit: %s", len(tasks), exc)
            return 0  # their leases expire and the jobs are dispatched again
        for task, future in zip(tasks, submitted, strict=True):
            self.inflight[task.job_id] = (future, task.site, task.token)
        self._in_workflow |= steps
        return len(tasks)
