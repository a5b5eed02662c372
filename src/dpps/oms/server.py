"""Running the API: with the daemons (``dpps serve``) or in a background thread (tests, tools).

``serve`` is the embedded default: uvicorn answers in the main thread (it owns SIGTERM and
Ctrl-C), the daemons run in their threads beside it with their work and errors counted for
``/metrics``; when the API stops the daemons stop between two items, and a daemon that dies of
a bug stops the API too (a half-working archive that looks alive is worse). The API binds to
127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Self

import uvicorn
from uvicorn.supervisors.multiprocess import Multiprocess

from dpps.bdms import daemons as bdms_daemons
from dpps.bdms.archive import Archive
from dpps.catalog.heartbeats import DatabaseHeartbeats
from dpps.core import daemon as daemons
from dpps.core.config import ApiConfig
from dpps.core.daemon import DaemonContext, RunOnce
from dpps.core.errors import InvalidInput, Unavailable
from dpps.oms import metrics
from dpps.oms.api import create_app

LOOPBACK = "127.0.0.1"
#: Imported so that ``serve`` used as a library runs at least the archive's daemons (the CLI
#: also imports the WMS's and the pipelines' declarations before it serves).
DECLARING = (bdms_daemons,)
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
    announce: Callable[[str], None] | None = None,
    workers: int = 1,
) -> dict[str, DaemonContext]:
    """Serve the API (unless ``api`` is False) and run the daemons until stopped.

    With ``workers`` > 1 the API runs in that many processes sharing the socket (uvicorn's
    supervisor, each opening the workspace: Python runs one request at a time per process,
    so this is how the API uses more than one core); the daemons stay in this process.
    """
    if not api:
        return _run_daemons(archive, names, sleep_s, None)
    if workers < 1:
        raise InvalidInput(f"workers must be at least 1, not {workers}")
    server: uvicorn.Server | Multiprocess
    if workers == 1:
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(archive),
                host=host,
                port=port,
                log_level="info",
                access_log=False,
            )
        )
    else:
        server = _workers(archive, host, port, workers)
    stop = threading.Event()
    contexts: dict[str, DaemonContext] = {}
    failures: list[BaseException] = []

    def run_daemons() -> None:
        try:
            contexts.update(_run_daemons(archive, names, sleep_s, stop))
        except BaseException as exc:
            failures.append(exc)
            if isinstance(server, Multiprocess):
                server.should_exit.set()
            else:
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


def _run_daemons(
    archive: Archive, names: Sequence[str] | None, sleep_s: float, stop: threading.Event | None
) -> dict[str, DaemonContext]:
    """The daemons ``names`` (default: all registered), made from the archive's context,
    beating in its catalog, with their work counted for ``/metrics``."""
    return daemons.serve(
        archive.context,
        names,
        DatabaseHeartbeats(archive.sessions),
        sleep_s=sleep_s,
        stop=stop,
        wrap=_instrumented,
    )


def _workers(archive: Archive, host: str, port: int, workers: int) -> Multiprocess:
    """uvicorn's supervisor of ``workers`` API processes; each builds its app from the
    environment (``app_from_env``: the workspace of ``$DPPS_WORKSPACE``, whose ``dpps.yaml``
    and ``DPPS_*`` overrides give it the same ``api`` settings as this process)."""
    os.environ["DPPS_WORKSPACE"] = str(archive.config.workspace)
    config = uvicorn.Config(
        "dpps.oms.api:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=False,
        # a worker answers the supervisor's pings only once it has imported the app: on a
        # busy machine that takes longer than uvicorn's 5 s, and it would be killed forever
        timeout_worker_healthcheck=120,
    )
    return Multiprocess(config, sockets=[config.bind_socket()])


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class BackgroundServer:
    """The API on 127.0.0.1 in a thread of this process (tests, benchmarks, notebooks)."""

    def __init__(
        self, archive: Archive, *, port: int | None = None, settings: ApiConfig | None = None
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
