"""The archive's daemons by name: ``dpps daemon NAME`` runs one, ``dpps serve`` runs them all.

A daemon is registered as ``"module:function"``, imported only when it is started, so that
listing daemons imports nothing heavy and no module has to import its siblings. The function
takes the ``Archive`` and returns the daemon's ``run_once`` (a callable ``(DaemonContext) ->
int``); when that object also has a ``close()`` method (a thread pool to shut down, say), it is
called once the daemon stops; a ``drain()`` method is called after a ``--once`` pass (a
daemon that hands work to others, the WMS job manager, finishes it there). Everything else -
looping, sleeping, heartbeats in the catalog, SIGTERM - is ``dpps.core.daemon.run_daemon``.
Other packages' daemons (the WMS's, which bdms must not import) are registered into
``REGISTRY`` by the layer that combines them, the CLI.

To add a daemon, append one ``register(...)`` line at the bottom of this file.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from dpps.catalog.heartbeats import DatabaseHeartbeats
from dpps.core.daemon import DaemonContext, RunOnce, run_daemon, stop_on_signals
from dpps.core.errors import ConfigError, NotFound

if TYPE_CHECKING:
    from dpps.bdms.archive import Archive

log = logging.getLogger("dpps.daemon")

Factory = Callable[["Archive"], RunOnce]


@dataclass(frozen=True, slots=True)
class DaemonSpec:
    name: str
    target: str  # "package.module:function" returning the run_once
    summary: str

    def factory(self) -> Factory:
        module, _, attr = self.target.partition(":")
        fn: Factory = getattr(importlib.import_module(module), attr)
        return fn


REGISTRY: dict[str, DaemonSpec] = {}


def register(name: str, target: str, summary: str) -> None:
    if name in REGISTRY:
        raise ConfigError(f"daemon {name!r} is registered twice")
    if ":" not in target:
        raise ConfigError(f"daemon {name!r}: target {target!r} is not 'module:function'")
    REGISTRY[name] = DaemonSpec(name, target, summary)


def spec(name: str) -> DaemonSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY)) or "none"
        raise NotFound(f"no daemon named {name!r} (known: {known})") from None


def run(
    archive: Archive,
    name: str,
    *,
    once: bool = False,
    sleep_s: float = 1.0,
    max_sleep_s: float = 30.0,
    stop: threading.Event | None = None,
    wrap: Callable[[RunOnce], RunOnce] | None = None,
) -> DaemonContext:
    """Run one daemon in this thread until stopped (SIGTERM/SIGINT in the main thread).

    ``wrap`` decorates the run_once (the operations layer counts work and errors with it)."""
    run_once = spec(name).factory()(archive)
    if wrap is not None:
        run_once = _wrapped(run_once, wrap)
    # A daemon may keep its own cadence (the ingestion queue polls every poll_interval_s).
    sleep_s = getattr(run_once, "sleep_s", sleep_s)
    max_sleep_s = getattr(run_once, "max_sleep_s", max_sleep_s)
    try:
        context = run_daemon(
            name,
            run_once,
            DatabaseHeartbeats(archive.sessions),
            once=once,
            sleep_s=sleep_s,
            max_sleep_s=max_sleep_s,
            stop=stop,
        )
        drain = getattr(run_once, "drain", None)
        if once and callable(drain):
            drain()
        return context
    finally:
        _close(run_once)


def serve(
    archive: Archive,
    names: Sequence[str] | None = None,
    *,
    sleep_s: float = 1.0,
    max_sleep_s: float = 30.0,
    stop: threading.Event | None = None,
    wrap: Callable[[RunOnce], RunOnce] | None = None,
) -> dict[str, DaemonContext]:
    """Run several daemons, one thread each, until stopped; the embedded default in one process.

    A daemon that dies of a bug stops the others too: a half-running archive that looks alive
    is worse than one that stopped and says why (the exception is re-raised here).
    """
    chosen = list(names) if names else sorted(REGISTRY)
    for name in chosen:
        spec(name)
    stop = stop or threading.Event()
    contexts: dict[str, DaemonContext] = {}
    failures: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            contexts[name] = run(
                archive, name, sleep_s=sleep_s, max_sleep_s=max_sleep_s, stop=stop, wrap=wrap
            )
        except BaseException as exc:
            log.exception("daemon %s died; stopping the others", name)
            failures.append(exc)
            stop.set()

    threads = [threading.Thread(target=worker, args=(n,), name=f"dpps-{n}") for n in chosen]
    with stop_on_signals(stop):
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            for thread in threads:
                thread.join(timeout=0.2)
    if failures:
        raise failures[0]
    return contexts


def _wrapped(run_once: RunOnce, wrap: Callable[[RunOnce], RunOnce]) -> RunOnce:
    """``wrap(run_once)`` keeping the daemon's own cadence and ``close`` (read by ``run``)."""
    outer: Any = wrap(run_once)
    for attr in ("sleep_s", "max_sleep_s", "close", "drain"):
        if hasattr(run_once, attr) and not hasattr(outer, attr):
            setattr(outer, attr, getattr(run_once, attr))
    return cast(RunOnce, outer)


def _close(run_once: Any) -> None:
    close = getattr(run_once, "close", None)
    if callable(close):
        close()


register(
    "evaluator",
    "dpps.bdms.replication.evaluator:daemon",
    "Turn replication rules into the transfers and locks they still need; mark rules "
    "OK, REPLICATING or STUCK.",
)
register(
    "transfer",
    "dpps.bdms.transfer.daemon:daemon",
    "Copy files between RSEs with checksum verification, retries with backoff and per-link "
    "limits.",
)
register(
    "stager",
    "dpps.bdms.staging.stager:daemon",
    "Complete tape stage requests after the RSE's staging delay; expire buffer copies.",
)
register(
    "reaper",
    "dpps.bdms.preservation.reaper:daemon",
    "Delete replicas past their retention: expired rules and lifetimes, on-site copies once "
    "preserved off-site, tombstones.",
)
register(
    "auditor",
    "dpps.bdms.preservation.auditor:daemon",
    "Re-read replicas oldest-verified first (rate-limited); mark damaged ones BAD, alarm on "
    "lost files.",
)
register(
    "ingest",
    "dpps.bdms.ingestion.queue:daemon",
    "Take ACADA files from the landing area (trigger files) into the archive in place, with "
    "datasets, rules and quarantine.",
)
