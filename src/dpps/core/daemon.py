"""The one daemon contract and its runner: loop, sleep, heartbeats, stop, work split, ``--once``.

A daemon is a ``Daemon``: ``run_once(ctx) -> int`` (the number of items it handled) and nothing
else about looping, plus what it declares about itself - its idle cadence (``sleep_s``,
``max_sleep_s``), what finishes a ``--once`` pass (``drain``) and what it gives back when it
stops (``close``); the base class has the defaults, so the runner reads declared attributes,
never guesses with ``getattr``. The runner calls ``run_once`` until stopped: immediately again
while there is work, with a growing sleep while there is none. Several instances of a daemon
split the work by the slot their heartbeat gives them (``ctx.slot``), and whatever they claim
they claim with a lease in the database, so any instance can be killed at any moment and
another one finishes its work. SIGTERM and SIGINT stop the loop between two items; anything but
``Unavailable`` raised by ``run_once`` is a bug and ends the daemon (and, under ``serve``, the
others).

Daemons are known by name in ``REGISTRY`` (``dpps daemon NAME``, ``dpps serve``). Each package
declares its own in its ``daemons`` module (``dpps.bdms.daemons``, ``dpps.wms.daemons``,
``dpps.pipelines.daemons``) with ``register``; the registry lives here, at the bottom, so every
layer can fill it without importing the layers above, and whoever runs "all daemons" (the CLI)
imports the declaring modules it combines. A registration names its daemon as
``"module:attribute"``, imported only when the daemon starts, so listing daemons imports
nothing heavy; the attribute (a ``Daemon`` subclass, or a function returning one) is called
with the dependencies the runner was given - for the archive's daemons a
``dpps.catalog.context.CatalogContext``, which this module never looks into.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import signal
import socket
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, Self

from dpps.core.errors import ConfigError, NotFound, Unavailable

log = logging.getLogger("dpps.daemon")


@dataclass(frozen=True, slots=True)
class WorkerSlot:
    """This instance is number ``number`` (0-based) of ``total`` live instances."""

    number: int = 0
    total: int = 1

    def owns(self, key: int) -> bool:
        """Hash partitioning: the instance responsible for an item with integer ``key``."""
        return key % self.total == self.number


class Heartbeats(Protocol):
    def beat(self, daemon: str, instance: str, details: Mapping[str, Any]) -> WorkerSlot: ...

    def forget(self, daemon: str, instance: str) -> None: ...


class NoHeartbeats:
    """For tests and one-off runs: always the only instance."""

    def beat(self, daemon: str, instance: str, details: Mapping[str, Any]) -> WorkerSlot:
        return WorkerSlot()

    def forget(self, daemon: str, instance: str) -> None:
        return None


def new_instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class DaemonContext:
    """What ``run_once`` gets: who it is, its share of the work, and the stop flag."""

    name: str
    instance: str = field(default_factory=new_instance_id)
    slot: WorkerSlot = field(default_factory=WorkerSlot)
    stop: threading.Event = field(default_factory=threading.Event)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def stopping(self) -> bool:
        return self.stop.is_set()


RunOnce = Callable[[DaemonContext], int]
#: Decorates a daemon's ``run_once`` (the operations layer counts work and errors with it).
Wrap = Callable[[RunOnce], RunOnce]


class Daemon(ABC):
    """The contract every daemon keeps; subclasses implement ``run_once`` and override what
    they need of the rest. Usable as a context manager (``close`` on the way out), which is
    how a test or a library caller runs one pass: ``with Evaluator(catalog) as d:
    d.run_once(DaemonContext("evaluator"))``."""

    @property
    def sleep_s(self) -> float | None:
        """Pause after a pass that found no work; ``None``: the runner's (``--sleep``). A
        daemon with a cadence of its own (the ingestion queue's poll interval) declares it."""
        return None

    @property
    def max_sleep_s(self) -> float | None:
        """Longest pause the idle backoff grows to; ``None``: the runner's."""
        return None

    @abstractmethod
    def run_once(self, ctx: DaemonContext) -> int:
        """One pass over the work due now; returns how many items it handled (0: idle)."""

    def drain(self) -> None:
        """After a ``--once`` pass: finish what the pass handed to others (the WMS manager
        runs the jobs it dispatched), so the command returns with the work done."""
        return None

    def close(self) -> None:
        """When the daemon stops, however it stops: shut pools down, give back leases."""
        return None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT set ``stop`` (main thread only; elsewhere this does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping after the current item", signum)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_daemon(
    name: str,
    run_once: RunOnce,
    heartbeats: Heartbeats | None = None,
    *,
    once: bool = False,
    sleep_s: float = 1.0,
    max_sleep_s: float = 30.0,
    stop: threading.Event | None = None,
    details: Mapping[str, Any] | None = None,
) -> DaemonContext:
    """Run ``run_once`` until stopped (or exactly once); returns the context with error counts.

    Transient failures (``Unavailable``, e.g. a locked or unreachable database or storage) are
    counted and retried after a backoff; anything else propagates, because a daemon that keeps
    looping over a bug only hides it.
    """
    beats = heartbeats or NoHeartbeats()
    ctx = DaemonContext(name=name, stop=stop or threading.Event())
    idle = sleep_s
    with stop_on_signals(ctx.stop):
        try:
            while not ctx.stopping:
                try:
                    ctx.slot = beats.beat(name, ctx.instance, details or {})
                    done = run_once(ctx)
                except Unavailable as exc:
                    ctx.errors[type(exc).__name__] += 1
                    log.warning("%s: transient failure, retrying: %s", name, exc)
                    done = 0
                if once:
                    break
                if done:
                    idle = sleep_s
                    continue
                ctx.stop.wait(idle)
                idle = min(idle * 2, max_sleep_s)
        finally:
            try:
                beats.forget(name, ctx.instance)
            except Exception:  # pragma: no cover - best effort on the way out
                log.exception("%s: could not remove heartbeat", name)
    return ctx


def sleep_until(deadline: float, stop: threading.Event) -> bool:
    """Sleep until ``deadline`` (time.monotonic) unless stopped; True if stopped."""
    return stop.wait(max(0.0, deadline - time.monotonic()))


# -- running a Daemon ---------------------------------------------------------------------------
def run(
    daemon: Daemon,
    name: str,
    heartbeats: Heartbeats | None = None,
    *,
    once: bool = False,
    sleep_s: float = 1.0,
    max_sleep_s: float = 30.0,
    stop: threading.Event | None = None,
    wrap: Wrap | None = None,
    details: Mapping[str, Any] | None = None,
) -> DaemonContext:
    """Run ``daemon`` in this thread until stopped (or once, then ``drain``); ``close`` it
    however it ends. Its declared cadence wins over ``sleep_s``/``max_sleep_s``; ``wrap``
    decorates only ``run_once``, so what the daemon declares is read from the daemon itself."""
    step = daemon.run_once if wrap is None else wrap(daemon.run_once)
    own_sleep, own_max = daemon.sleep_s, daemon.max_sleep_s
    try:
        context = run_daemon(
            name,
            step,
            heartbeats,
            once=once,
            sleep_s=sleep_s if own_sleep is None else own_sleep,
            max_sleep_s=max_sleep_s if own_max is None else own_max,
            stop=stop,
            details=details,
        )
        if once:
            daemon.drain()
        return context
    finally:
        daemon.close()


# -- the registry -------------------------------------------------------------------------------
_NAME = re.compile(r"[a-z][a-z0-9-]*\Z")
_TARGET = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*\Z")


@dataclass(frozen=True, slots=True)
class DaemonSpec:
    """A registered daemon: how to make it, and what ``dpps daemon list`` says of it."""

    name: str
    target: str  # "package.module:attribute": a Daemon subclass or a function returning one
    summary: str
    package: str

    def start(self, deps: object) -> Daemon:
        """Import the target and make the daemon from ``deps``; refuse anything but a
        ``Daemon`` (a bare function, an object with its own idea of the protocol)."""
        module, _, attr = self.target.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"daemon {self.name!r}: cannot load {self.target}: {exc}") from exc
        made = factory(deps)
        if not isinstance(made, Daemon):
            raise ConfigError(
                f"daemon {self.name!r}: {self.target} made a {type(made).__name__}, "
                "not a dpps.core.daemon.Daemon"
            )
        return made


#: Every daemon of the processes this one combines, by name (filled by ``register``).
REGISTRY: dict[str, DaemonSpec] = {}


def register(name: str, target: str, summary: str, *, package: str | None = None) -> None:
    """Declare a daemon; called by the ``daemons`` module of the package it belongs to.

    A name is registered once (two packages claiming one name is a bug to see at import, not
    a daemon silently replaced); it must be usable as a command name (``dpps daemon NAME``)
    and the target must be ``module:attribute``. ``package`` (default: the second component
    of the target's module, ``dpps.wms...`` -> ``wms``) is what ``dpps daemon list`` shows."""
    if not _NAME.match(name):
        raise ConfigError(f"daemon name {name!r}: lower case letters, digits and '-' only")
    if name in REGISTRY:
        raise ConfigError(f"daemon {name!r} is registered twice")
    if not _TARGET.match(target):
        raise ConfigError(f"daemon {name!r}: target {target!r} is not 'module:attribute'")
    if package is None:
        parts = target.partition(":")[0].split(".")
        package = parts[1] if len(parts) > 1 else parts[0]
    REGISTRY[name] = DaemonSpec(name, target, summary, package)


def spec(name: str) -> DaemonSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY)) or "none"
        raise NotFound(f"no daemon named {name!r} (known: {known})") from None


def run_registered(
    name: str,
    deps: object,
    heartbeats: Heartbeats | None = None,
    *,
    once: bool = False,
    sleep_s: float = 1.0,
    max_sleep_s: float = 30.0,
    stop: threading.Event | None = None,
    wrap: Wrap | None = None,
) -> DaemonContext:
    """Make the registered daemon ``name`` from ``deps`` and ``run`` it in this thread."""
    daemon = spec(name).start(deps)
    return run(
        daemon,
        name,
        heartbeats,
        once=once,
        sleep_s=sleep_s,
        max_sleep_s=max_sleep_s,
        stop=stop,
        wrap=wrap,
    )


def serve(
    deps: object,
    names: Sequence[str] | None = None,
    heartbeats: Heartbeats | None = None,
    *,
    sleep_s: float = 1.0,
    max_sleep_s: float = 30.0,
    stop: threading.Event | None = None,
    wrap: Wrap | None = None,
) -> dict[str, DaemonContext]:
    """Run several registered daemons (default: all), one thread each, until stopped.

    A daemon that dies of a bug stops the others too: a half-running archive that looks alive
    is worse than one that stopped and says why (the exception is re-raised here). Each daemon
    is made in its own thread, so one that cannot start stops the others the same way.
    """
    chosen = list(names) if names else sorted(REGISTRY)
    for name in chosen:
        spec(name)
    stop = stop or threading.Event()
    contexts: dict[str, DaemonContext] = {}
    failures: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            contexts[name] = run_registered(
                name,
                deps,
                heartbeats,
                sleep_s=sleep_s,
                max_sleep_s=max_sleep_s,
                stop=stop,
                wrap=wrap,
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
