"""The ACADA ingestion queue (UC-110-1.1.1, UC-110-1.1.4): landing-area files into the archive.

``run_once`` scans the landing area for trigger files (those present before the daemon started
included), has a process pool verify and checksum the files, then registers them in place on
the on-site RSE in short batched transactions from the daemon's thread: file, replica,
``file.register`` event, the dataset of the file's directory (created on first use together
with its replication rules from the ``acada`` policy), the containers up the tree, the
attachments. Only after the commit does it remove the triggers. See ``ingestion_landing`` for
the file-system side and why this order makes a SIGKILL at any moment harmless:

* killed before the commit: nothing is in the catalog; the triggers are still there;
* killed after the commit, before the triggers went: the next run finds the files registered
  with the same checksums ("present"), skips them and removes the triggers;
* a file is registered at most once because names are unique in the catalog.

Transient failures (database locked or unreachable) are retried with exponential backoff and
jitter; after ``retry_attempts`` the run ends with ``Unavailable`` and the daemon runner tries
again later. Permanent failures are reported (event, metric, log) and left in place: a file
registered before with other content, or one whose inspection hit a bug.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Literal, TypeVar

from dpps.bdms.ingestion import landing as landing_mod
from dpps.bdms.ingestion.landing import Inspection, Quarantine, QuarantineRecord, Trigger
from dpps.bdms.ingestion.ledger import CatalogIngestLedger
from dpps.bdms.ingestion.metrics import QueueMetrics
from dpps.bdms.ingestion.records import IngestBatch, IngestLedger, IngestResult
from dpps.bdms.ingestion.settings import QueueSettings
from dpps.bdms.types import to_jsonable
from dpps.catalog.context import CatalogContext
from dpps.catalog.engine import Retry
from dpps.core.config import Config
from dpps.core.daemon import Daemon, DaemonContext
from dpps.core.errors import ConfigError

log = logging.getLogger("dpps.ingest")

DAEMON = "ingest"
#: Seconds a committed batch may wait for more results before it is written.
MAX_BATCH_DELAY_S = 0.25
#: Backoff of a file that failed permanently (conflict, bug): first and longest delay (s).
FAILED_BACKOFF_S = (60.0, 3600.0)

T = TypeVar("T")
Status = Literal["registered", "present", "quarantined", "conflict", "retry", "error"]


@dataclass(frozen=True, slots=True)
class FileOutcome:
    """What the queue did with one file."""

    path: str
    lfn: str | None
    status: Status
    reason: str = ""
    error_type: str = ""
    bytes: int | None = None
    latency_s: float | None = None


class _InlineExecutor(Executor):
    """Runs each task at submission: for one-off runs and tests (no process start-up)."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


class IngestionQueue(Daemon):
    """One landing area feeding one on-site RSE: the ``ingest`` daemon (its cadence is the
    poll interval; ``close`` stops its pool and gives the landing area's lock back)."""

    def __init__(
        self,
        catalog: CatalogContext | None,
        settings: QueueSettings,
        *,
        config: Config | None = None,
        ledger: IngestLedger | None = None,
    ) -> None:
        """From the catalog (``CatalogIngestLedger``), or for a telescope site whose queue
        reaches the catalog through the central API from its own configuration and a
        ``dpps.client.agent.RemoteIngestLedger``."""
        if catalog is not None:
            config = catalog.config
            ledger = CatalogIngestLedger(catalog, settings.account, self._retry(settings))
        if config is None or ledger is None:
            raise TypeError("IngestionQueue needs a catalog context, or a config and a ledger")
        self.config = config
        self.ledger = ledger
        self.settings = settings
        self.rse_id = ledger.rse_id(settings.rse)
        self.spec = landing_mod.WorkSpec(
            settings.rse,
            config.rse_url(settings.rse),
            settings.scope,
            self.rse_id,
            tuple(config.checksums),
            settings.required_keys,
        )
        self.metrics = QueueMetrics()
        self.metrics_port: int | None = None
        self.quarantine = Quarantine(settings.quarantine)
        self.latencies: deque[float] = deque(maxlen=100_000)
        self._lock = landing_mod.LandingLock(settings.landing)
        self._pool: Executor | None = None
        self._client: Any = None  # a distributed.Client with the dask executor
        self._waiting: dict[str, tuple[float, float]] = {}  # rel -> (retry at, last delay)
        self._reported: set[str] = set()
        self._started = False

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Take the landing area's lock and start the metrics endpoint (idempotent)."""
        if self._started:
            return
        self.settings.landing.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        if self.settings.metrics_port is not None:
            self.metrics_port = self.metrics.serve(self.settings.metrics_port)
            log.info("metrics on http://127.0.0.1:%d/metrics", self.metrics_port)
        self._started = True

    def close(self) -> None:
        """Stop the pool at once (its work is idempotent), the endpoint, and the lock."""
        self._drop_pool()
        self.metrics.close()
        self._lock.release()
        self._started = False

    @property
    def sleep_s(self) -> float:
        """The runner's pause when idle: a fixed poll interval, no growing backoff, because
        the trigger-to-registered latency is what the site is promised."""
        return self.settings.poll_interval_s

    @property
    def max_sleep_s(self) -> float:
        """The same: polling does not back off."""
        return self.settings.poll_interval_s

    def _executor(self) -> Executor:
        if self._pool is None:
            kind = self.settings.executor
            if kind == "inline":
                self._pool = _InlineExecutor()
            elif kind == "dask":
                from distributed import Client  # optional: only when asked for

                address = self.config.wms.dask_scheduler
                if not address:
                    raise ConfigError("executor dask needs wms.dask_scheduler in the config")
                self._client = Client(address)  # type: ignore[no-untyped-call]
                self._pool = self._client.get_executor()
            else:
                self._pool = ProcessPoolExecutor(
                    self.settings.workers,
                    mp_context=get_context("spawn"),
                    initializer=landing_mod.worker_init,
                    initargs=(os.getpid(),),
                )
        return self._pool

    def _drop_pool(self) -> None:
        pool, self._pool = self._pool, None
        if isinstance(pool, ProcessPoolExecutor):
            workers = list(getattr(pool, "_processes", {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for process in workers:  # a worker may be mid-way through a 1 GiB file
                process.terminate()
            for process in workers:
                process.join(5.0)
        elif pool is not None:
            pool.shutdown(wait=False)
        client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- the unit of work -------------------------------------------------------------------
    def run_once(self, ctx: DaemonContext) -> int:
        """Take in what the landing area holds now; returns how many files were handled."""
        self.start()
        now = time.monotonic()
        triggers = [
            t
            for t in landing_mod.scan_triggers(self.settings.landing)
            if self._waiting.get(t.rel, (0.0, 0.0))[0] <= now
        ]
        self.metrics.queue_length.set(len(triggers))
        handled = 0
        size = self.settings.batch_size
        for start in range(0, len(triggers), size):
            if ctx.stopping:
                break
            outcomes = self.process(triggers[start : start + size], ctx.stop)
            handled += sum(o.status != "retry" for o in outcomes)
        return handled

    def ingest_files(self, paths: Sequence[Path]) -> list[FileOutcome]:
        """The same per-file logic, once, over files named by the user (trigger or not)."""
        self.start()
        batch = [landing_mod.trigger_for(self.settings.landing, p) for p in paths]
        order = {str(t.file): i for i, t in enumerate(batch)}
        outcomes = self.process(batch, threading.Event())
        return sorted(outcomes, key=lambda o: order.get(o.path, len(order)))

    def process(self, batch: Sequence[Trigger], stop: threading.Event) -> list[FileOutcome]:
        """Inspect a batch in the pool; write to the catalog as results come in."""
        pool = self._executor()
        futures: dict[Future[Inspection], Trigger] = {}
        for trig in batch:
            lfn = self._lfn(trig.rel)
            futures[pool.submit(landing_mod.inspect, self.spec, str(trig.file), lfn)] = trig
        ready: list[tuple[Trigger, Inspection]] = []
        outcomes: list[FileOutcome] = []
        first_ready = 0.0
        while futures:
            if stop.is_set():  # abandon the rest: their triggers stay for the next run
                for future in futures:
                    future.cancel()
                break
            done, _ = wait(futures, timeout=0.1, return_when=FIRST_COMPLETED)
            for future in done:
                if not ready:
                    first_ready = time.monotonic()
                ready.append((futures.pop(future), self._result(future)))
            late = time.monotonic() - first_ready >= MAX_BATCH_DELAY_S
            if ready and (not futures or late or len(ready) >= self.settings.batch_size):
                outcomes += self._commit(ready, stop)
                ready = []
        if ready:
            outcomes += self._commit(ready, stop)
        return outcomes

    def _lfn(self, rel: str) -> str:
        return f"{self.settings.lfn_prefix}/{rel}"

    def _result(self, future: Future[Inspection]) -> Inspection:
        try:
            return future.result()
        except BrokenProcessPool as exc:  # a worker died (OOM killer...): new pool, retry
            self._drop_pool()
            return Inspection("transient", reason=f"worker died: {exc}", error_type="Unavailable")

    # -- catalog side -----------------------------------------------------------------------
    def _commit(
        self, ready: Sequence[tuple[Trigger, Inspection]], stop: threading.Event
    ) -> list[FileOutcome]:
        by_status: dict[str, list[tuple[Trigger, Inspection]]] = {}
        for trig, insp in ready:
            by_status.setdefault(insp.status, []).append((trig, insp))
        quarantined: list[tuple[Trigger, QuarantineRecord | None, bool]] = []
        for trig, insp in by_status.get("quarantine", []):
            lfn = self._lfn(trig.rel)
            record = self.quarantine.put(trig.file, trig.rel, insp.reason, insp.error_type, lfn)
            quarantined.append((trig, record, False))
        quarantined += self._missing(by_status.get("missing", []), stop)
        ok = [(t, i.new_file) for t, i in by_status.get("ok", []) if i.new_file is not None]
        batch = IngestBatch(
            scope=self.settings.scope,
            lfn_prefix=self.settings.lfn_prefix,
            policy=self.settings.policy,
            rse=self.settings.rse,
            files=[(t.rel, to_jsonable(f)) for t, f in ok],
            report_conflicts=[t.rel for t, _ in ok if t.rel not in self._reported],
            quarantined=[
                (_record_fields(record), recovered)
                for _, record, recovered in quarantined
                if record is not None
            ],
        )
        results = (
            {r.rel: r for r in self.ledger.register(batch, stop)} if ok or quarantined else {}
        )
        outcomes = [self._done(t, self._file_outcome(t, results[t.rel])) for t, _ in ok]
        outcomes += self._after_commit(quarantined)
        for trig, insp in by_status.get("transient", []):
            self.metrics.transient.inc()
            self._wait(trig.rel, self.settings.retry_base_s, self.settings.retry_max_s)
            outcomes.append(FileOutcome(str(trig.file), None, "retry", insp.reason))
        for trig, insp in by_status.get("error", []):
            outcomes.append(self._failed(trig, "error", insp.reason, insp.error_type))
        return outcomes

    def _missing(
        self, items: Sequence[tuple[Trigger, Inspection]], stop: threading.Event
    ) -> list[tuple[Trigger, QuarantineRecord | None, bool]]:
        """Triggers whose file is gone: a quarantine to finish, a file already taken in (its
        trigger removal was lost), or a trigger for nothing (quarantined itself)."""
        if not items:
            return []
        names = [self._lfn(t.rel) for t, _ in items]
        present = self.ledger.present(self.settings.scope, names, stop)
        out: list[tuple[Trigger, QuarantineRecord | None, bool]] = []
        for trig, _ in items:
            record = self.quarantine.find(trig.rel)
            if record is not None:
                out.append((trig, record, True))
            elif self._lfn(trig.rel) in present:
                out.append((trig, None, True))
            elif os.path.lexists(trig.trigger):
                reason = "trigger names a file that does not exist"
                rel = trig.rel + landing_mod.TRIGGER_SUFFIX
                record = self.quarantine.put(trig.trigger, rel, reason, "NotFound", None)
                out.append((trig, record, False))
        return out

    def _retry(self, s: QueueSettings) -> Retry:
        """Transient failures retried with backoff; a container two queues made at once: up
        to 3 attempts, then the IntegrityError."""
        return Retry(
            attempts=s.retry_attempts,
            base_s=s.retry_base_s,
            max_s=s.retry_max_s,
            jitter=(0.5, 1.5),
            on="transient",
            integrity_attempts=3,
            on_retry=self._transient,
        )

    def _file_outcome(self, trig: Trigger, result: IngestResult) -> FileOutcome:
        status: Status = result.status
        return FileOutcome(
            str(trig.file), result.lfn, status, result.message, result.error_type, result.bytes
        )

    def _transient(self, attempt: int, exc: Exception) -> None:
        self.metrics.transient.inc()
        log.warning("transient failure (try %d), retrying: %s", attempt, exc)

    def _done(self, trig: Trigger, outcome: FileOutcome) -> FileOutcome:
        """After the commit: remove the trigger of a file taken in, count, time it."""
        if outcome.status not in ("registered", "present"):
            return self._failed(trig, outcome.status, outcome.reason, outcome.error_type)
        _unlink(trig.trigger)
        self._waiting.pop(trig.rel, None)
        if outcome.status == "present":
            self.metrics.count("skipped")
            return outcome
        latency = max(0.0, time.time() - trig.created)
        self.metrics.count("succeeded")
        self.metrics.bytes.inc(outcome.bytes or 0)
        self.metrics.latency.observe(latency)
        self.latencies.append(latency)
        return replace(outcome, latency_s=latency)

    def _after_commit(
        self, quarantined: Sequence[tuple[Trigger, QuarantineRecord | None, bool]]
    ) -> list[FileOutcome]:
        outcomes: list[FileOutcome] = []
        for trig, record, _ in quarantined:
            _unlink(trig.trigger)
            status: Status = "quarantined" if record is not None else "present"
            self.metrics.count("quarantined" if record is not None else "skipped")
            reason = record.reason if record is not None else "taken in earlier"
            etype = record.error_type if record is not None else ""
            outcomes.append(
                FileOutcome(str(trig.file), self._lfn(trig.rel), status, reason, etype)
            )
        return outcomes

    def _failed(self, trig: Trigger, status: Status, reason: str, etype: str) -> FileOutcome:
        if trig.rel not in self._reported:
            log.error("%s: %s (left in place)", trig.rel, reason)
            self._reported.add(trig.rel)
        self.metrics.count("failed")
        self._wait(trig.rel, *FAILED_BACKOFF_S)
        return FileOutcome(str(trig.file), self._lfn(trig.rel), status, reason, etype)

    def _wait(self, rel: str, first: float, longest: float) -> None:
        previous = self._waiting.get(rel, (0.0, 0.0))[1]
        delay = min(longest, previous * 2 if previous else first)
        self._waiting[rel] = (time.monotonic() + delay * random.uniform(0.5, 1.5), delay)


def _record_fields(record: QuarantineRecord) -> dict[str, Any]:
    return {**asdict(record), "dest": str(record.dest)}


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def from_config(catalog: CatalogContext) -> IngestionQueue:
    """The registered daemon (``dpps daemon ingest``, ``dpps serve``): the queue the
    configuration's ``acada`` section describes."""
    return IngestionQueue(catalog, QueueSettings.from_config(catalog.config))
