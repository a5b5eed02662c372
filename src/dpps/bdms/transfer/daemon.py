"""The transfer daemon: copy files between RSEs until every rule's transfers are done.

One instance keeps its thread pool fed with claimed transfers (up to ``transfers.batch`` or
twice ``transfers.threads``, claimed in batches; copies are I/O and kernel work, hashing
releases the GIL), while its main thread claims the next transfers and records finished ones
in short batched transactions. Any number of instances may run: transfers are claimed with
leases (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), leases are renewed while a copy runs, and a
transfer whose instance was killed is redone by another once its lease expires - at once by an
instance on the same host, which sees that the process holding it is gone (a restarted daemon
takes back its predecessor's copies: ``dpps.catalog.leases``). A stop request (SIGTERM)
aborts running copies within one chunk and gives their transfers back untouched, so shutdown
takes seconds even in the middle of large files.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

from dpps.bdms.transfer.ledger import CatalogLedger
from dpps.bdms.transfer.records import Job, Outcome, TransferLedger
from dpps.catalog.context import CatalogContext
from dpps.core.config import Config
from dpps.core.daemon import Daemon, DaemonContext
from dpps.core.errors import DppsError
from dpps.storage.copy import SourceCorrupt, copy_replica
from dpps.storage.posix import fsync_dir
from dpps.storage.rse import CopyInterrupted, StorageElement

log = logging.getLogger("dpps.transfer")

#: run_once returns after this long (heartbeat) even with work left; the runner calls it again.
MAX_RUN_S = 20.0
#: Outcomes are recorded at least this often, and as soon as a batch is complete.
FLUSH_S = 1.0
#: Rules whose copies completed are checked for OK at most this often (and at the end of a
#: pass): the check scans the rule's locks.
SETTLE_S = 2.0


class TransferDaemon(Daemon):
    """The transfer daemon (``dpps daemon transfer``) with its thread pool, which ``close()``
    shuts down. One pass without the runner: ``with TransferDaemon(archive.context) as d:
    d.run_once(ctx)``.

    Made from a catalog context (the catalog in this process: ``CatalogLedger``) or, for a
    site's agent that reaches the catalog through the central API, from its own configuration
    (its RSEs' paths) and a ``TransferLedger`` (``dpps.client.agent.RemoteLedger``)."""

    def __init__(
        self,
        catalog: CatalogContext | None = None,
        *,
        config: Config | None = None,
        ledger: TransferLedger | None = None,
    ) -> None:
        if catalog is not None:
            config, ledger = catalog.config, CatalogLedger(catalog)
        if config is None or ledger is None:
            raise TypeError("TransferDaemon needs a catalog context, or a config and a ledger")
        self.config = config
        self.ledger = ledger
        cfg = self.config.transfers
        self.pool = ThreadPoolExecutor(cfg.threads, thread_name_prefix="dpps-transfer")
        # Claimed and queued here: the pool never runs dry while the next batch is claimed,
        # and claims come in batches (each claim is a write transaction).
        self.capacity = max(2 * cfg.threads, cfg.batch)
        self._storages: dict[str, StorageElement] = {}
        self._unsettled: set[int] = set()
        self._last_settle = 0.0

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def run_once(self, ctx: DaemonContext) -> int:
        """Copy what is due; returns the number of transfers that reached an outcome."""
        cfg = self.config.transfers
        inflight: dict[Future[Outcome], Job] = {}
        done: queue.SimpleQueue[Future[Outcome]] = queue.SimpleQueue()
        results: list[Outcome] = []
        handled = 0
        started = last_flush = last_renew = time.monotonic()
        next_claim = started
        while True:
            now = time.monotonic()
            if (
                not ctx.stopping
                and now - started < MAX_RUN_S
                and len(inflight) <= self.capacity // 2
                and now >= next_claim
            ):
                want = min(cfg.batch, self.capacity - len(inflight))
                jobs = self._claim(ctx, want)
                for job in jobs:
                    future = self.pool.submit(self._copy, job, ctx.stop)
                    inflight[future] = job
                    future.add_done_callback(done.put)
                if len(jobs) < want:
                    next_claim = now + FLUSH_S  # nothing more due now: look again in a while
            if not inflight:
                handled += self._record(ctx, results)
                self._settle(force=True)
                return handled
            try:  # a queue of finished copies: wait() on every future costs O(in flight)
                future = done.get(timeout=0.2)
                while True:
                    inflight.pop(future)
                    results.append(future.result())
                    future = done.get_nowait()
            except queue.Empty:
                pass
            now = time.monotonic()
            if results and (len(results) >= cfg.batch or now - last_flush >= FLUSH_S):
                handled += self._record(ctx, results)
                results = []
                last_flush = now
            if now - last_renew >= cfg.lease_s / 3:
                self.ledger.renew(ctx.instance, [j.transfer_id for j in inflight.values()])
                last_renew = now

    # -- steps -------------------------------------------------------------------------------

    def _claim(self, ctx: DaemonContext, limit: int) -> list[Job]:
        jobs = self.ledger.claim(ctx.instance, limit)
        for job in jobs:  # build storages here, not in the worker threads
            self._storage(job.source_rse)
            self._storage(job.dest_rse)
        return jobs

    def _record(self, ctx: DaemonContext, results: list[Outcome]) -> int:
        if not results:
            return 0
        # Published files become durable before the catalog says they exist: one directory
        # fsync for all the files a batch put in it (the files themselves were fsynced).
        for directory in sorted({o.unsynced_dir for o in results if o.unsynced_dir}):
            fsync_dir(directory)
        summary = self.ledger.record(ctx.instance, results)
        if summary.done:
            self._unsettled |= summary.rules
            self._settle(force=False)
        if summary.failed or summary.lost:
            log.warning(
                "transfers: %d done, %d to retry, %d FAILED, %d lost to another instance",
                summary.done,
                summary.retried,
                summary.failed,
                summary.lost,
            )
        return summary.done + summary.retried + summary.failed

    def _settle(self, *, force: bool) -> None:
        if not self._unsettled or (not force and time.monotonic() - self._last_settle < SETTLE_S):
            return
        rule_ids, self._unsettled = self._unsettled, set()
        self.ledger.settle(rule_ids)
        self._last_settle = time.monotonic()

    def _storage(self, name: str) -> StorageElement:
        rse = self._storages.get(name)
        if rse is None:
            rse = self._storages[name] = StorageElement.from_config(name, self.config)
        return rse

    def _copy(self, job: Job, stop: threading.Event) -> Outcome:
        """Worker thread: one copy, whatever happens turned into an Outcome."""
        started = time.perf_counter()
        try:
            result = copy_replica(
                self._storages[job.source_rse],
                job.source_path,
                self._storages[job.dest_rse],
                job.dest_path,
                job.expected,
                size=job.bytes,
                redo=job.redo,
                stop=stop,
                max_bytes_s=self.config.transfers.max_mb_s * 1e6,
                sync_dir=False,
            )
        except CopyInterrupted:
            return Outcome(job, "interrupted")
        except SourceCorrupt as exc:
            return Outcome(job, "failed", error=str(exc), bad_source=True)
        except DppsError as exc:
            return Outcome(job, "failed", error=str(exc))
        except Exception as exc:  # a storage library's own error: log it, retry later
            log.exception("transfer %d: unexpected error", job.transfer_id)
            return Outcome(job, "failed", error=f"{type(exc).__name__}: {exc}")
        return Outcome(
            job,
            "done",
            method=result.method,
            seconds=time.perf_counter() - started,
            unsynced_dir=result.unsynced_dir,
        )
