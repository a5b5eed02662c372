"""A real Dask cluster on loopback for tests and benchmarks: one scheduler, workers per site.

Every listener is bound to 127.0.0.1 explicitly (``--host 127.0.0.1 --dashboard-address
127.0.0.1:0``; ``--no-dashboard`` alone was seen to bind all interfaces). Each worker declares
its site as a resource, ``SITE_<NAME>=<slots>``, which is how the WMS routes a job to the site
holding its data. Workers run without a nanny, so killing one (a fault test) really removes it.
Everything is started as a subprocess and stopped by its PID, never by name.

    with DaskCluster(tmp_path, {"PIC": 1, "DESY": 1}) as cluster:
        cluster.address           # tcp://127.0.0.1:NNNNN
        pid = cluster.start_worker("PIC")
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from dpps.core.errors import Unavailable

__all__ = ["DaskCluster"]


def _terminate(procs: list[subprocess.Popen[bytes]], grace_s: float = 10.0) -> None:
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


class DaskCluster:
    def __init__(
        self,
        workdir: Path,
        sites: dict[str, int] | None = None,
        *,
        slots: int = 2,
        timeout_s: float = 120.0,
    ) -> None:
        self.workdir = Path(workdir)
        self.sites = dict(sites if sites is not None else {"PIC": 1, "DESY": 1})
        self.slots = slots
        self.timeout_s = timeout_s
        self.address = ""
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}  # name -> process
        self._count = 0

    def _log(self, name: str) -> int:
        return os.open(self.workdir / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def start(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        info = self.workdir / "scheduler.json"
        info.unlink(missing_ok=True)
        log = self._log("scheduler")
        try:
            self.scheduler = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "distributed.cli.dask_scheduler",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--dashboard-address",
                    "127.0.0.1:0",
                    "--scheduler-file",
                    str(info),
                    "--idle-timeout",
                    "3600",
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
            )
        finally:
            os.close(log)
        deadline = time.monotonic() + self.timeout_s
        while not info.is_file() or not info.read_text().strip():
            self._check(self.scheduler, "scheduler", deadline)
            time.sleep(0.1)
        self.address = json.loads(info.read_text())["address"]
        for site, count in self.sites.items():
            for _ in range(count):
                self.start_worker(site, wait=False)
        self.wait_for_workers(sum(self.sites.values()))
        return self

    def start_worker(self, site: str, *, wait: bool = True) -> int:
        """Start one more worker of ``site``; returns its PID."""
        self._count += 1
        name = f"{site}-{self._count}"
        local = self.workdir / name
        local.mkdir(exist_ok=True)
        log = self._log(name)
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "distributed.cli.dask_worker",
                    self.address,
                    "--host",
                    "127.0.0.1",
                    "--dashboard-address",
                    "127.0.0.1:0",
                    "--no-nanny",
                    "--nthreads",
                    str(self.slots),
                    "--resources",
                    f"SITE_{site}={self.slots}",
                    "--name",
                    name,
                    "--local-directory",
                    str(local),
                    "--death-timeout",
                    "60",
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                cwd=local,
            )
        finally:
            os.close(log)
        self.workers[name] = proc
        if wait:
            self.wait_for_workers(len(self.live_workers()))
        return proc.pid

    def live_workers(self) -> dict[str, int]:
        return {n: p.pid for n, p in self.workers.items() if p.poll() is None}

    def wait_for_workers(self, n: int) -> None:
        from distributed import Client

        with Client(self.address, timeout=self.timeout_s, set_as_default=False) as client:  # type: ignore[no-untyped-call]
            deadline = time.monotonic() + self.timeout_s
            while len(client.scheduler_info(n_workers=-1).get("workers", {})) < n:
                for name, proc in self.workers.items():
                    self._check(proc, name, deadline)
                time.sleep(0.2)

    def _check(self, proc: subprocess.Popen[bytes] | None, name: str, deadline: float) -> None:
        if proc is not None and proc.poll() is not None and name == "scheduler":
            raise Unavailable(
                f"dask {name} exited with {proc.returncode}; see {self.workdir / (name + '.log')}"
            )
        if time.monotonic() > deadline:
            raise Unavailable(
                f"dask cluster not ready after {self.timeout_s:.0f} s; see {self.workdir}"
            )

    def kill_worker(self, pid: int) -> None:
        """SIGKILL one worker (a fault test): no goodbye to the scheduler."""
        for proc in self.workers.values():
            if proc.pid == pid:
                proc.kill()
                proc.wait(timeout=30)
                return
        raise ValueError(f"{pid} is not a worker of this cluster")

    def stop(self) -> None:
        """Workers first (while the scheduler can still say goodbye), then the scheduler."""
        _terminate([p for p in self.workers.values() if p.poll() is None])
        if self.scheduler is not None:
            _terminate([self.scheduler])
        self.workers.clear()
        self.scheduler = None

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object | TracebackType | None) -> None:
        self.stop()
