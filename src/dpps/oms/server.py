"""Running the API: with the daemons (``dpps serve``) or in a background thread (tests, tools).

``serve`` is the embedded default: uvicorn answers in the main thread (it owns SIGTERM and
Ctrl-C), the daemons run in their threads beside it with their work and errors counted for
``/metrics``; when the API stops the daemons stop between two items, and a daemon that dies of
a bug stops the API too (a half-working archive that looks alive is worse). The API binds to
127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Self

import uvicorn

from dpps.bdms import daemons
from dpps.bdms.archive import Archive
from dpps.core.daemon import DaemonContext, RunOnce
from dpps.core.errors import Unavailable
from dpps.oms import metrics
from dpps.oms.api import create_app
from dpps.oms.api.deps import ApiSettings

LOOPBACK = "127.0.0.1"
Wrap = Callable[[RunOnce], RunOnce]


def _instrumented(run_once: RunOnce) -> RunOnce:
    return metrics.instrument(run_once, metrics.DAEMONS)


@contextmanager
def daemon_metrics(port: int | None, host: str = LOOPBACK) -> Iterator[Wrap | None]:
    """For a daemon run alone: its work and errors counted and served on host:port/metrics
    while it runs (no port: nothing counted, nothing served)."""
    if port is None:
        yield None
        return
    server, thread = metrics.serve_metrics(port, metrics.DAEMON_REGISTRY, host)
    try:
        yield _instrumented
    finally:
        server.shutdown()
        thread.join(timeout=10)


def serve(
    archive: Archive,
    names: Sequence[str] | None = None,
    *,
    sleep_s: float = 1.0,
    host: str = LOOPBACK,
    port: int = 8000,
    api: bool = True,
    settings: ApiSettings | None = None,
    announce: Callable[[str], None] | None = None,
) -> dict[str, DaemonContext]:
    """Serve the API (unless ``api`` is False) and run the daemons until stopped."""
    if not api:
        return daemons.serve(archive, names, sleep_s=sleep_s, wrap=_instrumented)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(archive, settings=settings),
            host=host,
            port=port,
            log_level="info",
            access_log=False,
        )
    )
    stop = threading.Event()
    contexts: dict[str, DaemonContext] = {}
    failures: list[BaseException] = []

    def run_daemons() -> None:
        try:
            contexts.update(
                daemons.serve(archive, names, sleep_s=sleep_s, stop=stop, wrap=_instrumented)
            )
        except BaseException as exc:
            failures.append(exc)
            server.should_exit = True

    worker = threading.Thread(target=run_daemons, name="dpps-daemons")
    worker.start()
    if announce is not None:
        announce(f"serving http://{host}:{port}/ (dashboard /ui/, API /api/v1/, /metrics)")
    try:
        server.run()
    finally:
        stop.set()
        worker.join(timeout=30)
    if failures:
        raise failures[0]
    return contexts


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class BackgroundServer:
    """The API on 127.0.0.1 in a thread of this process (tests, benchmarks, notebooks)."""

    def __init__(
        self, archive: Archive, *, port: int | None = None, settings: ApiSettings | None = None
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        config = uvicorn.Config(
            create_app(archive, settings=settings),
            host=LOOPBACK,
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="dpps-api", daemon=True)

    def start(self, timeout_s: float = 60.0) -> Self:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise Unavailable(f"the API server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=timeout_s)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object | TracebackType | None) -> None:
        self.stop()
