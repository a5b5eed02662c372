"""The one daemon runner: loop, sleep, heartbeats, graceful stop, work split, ``--once``.

Every daemon module exposes a ``run_once(ctx) -> int`` (the number of items it handled) and
nothing else about looping. The runner calls it until stopped: immediately again while there is
work, with a growing sleep while there is none. Several instances of a daemon split the work by
the slot their heartbeat gives them (``ctx.slot``), and whatever they claim they claim with a
lease in the database, so any instance can be killed at any moment and another one finishes
its work. SIGTERM and SIGINT stop the loop between two items.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from dpps.core.errors import Unavailable

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
