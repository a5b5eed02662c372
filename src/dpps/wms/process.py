"""Running one tool process: its own process group, logs to files, resource usage, kill.

The tool runs in a new session so that killing a job kills everything it started (a shell and
its children). ``os.wait4`` gives the CPU time of exactly this process tree, also when several
jobs run in threads of one Dask worker. Peak memory is sampled (resident set of the tree, every
100 ms): the kernel's ``ru_maxrss`` would report the worker's own size, which the child
inherits at fork, for every job. A job that must stop (killed, lease
lost, worker shutting down) gets SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import psutil

#: Process groups of the tools running in this process (for the worker's SIGTERM handler).
RUNNING_GROUPS: set[int] = set()
_GRACE_S = 3.0
_SAMPLE_S = 0.1


def _tree_rss(pid: int, children: bool) -> int:
    """Resident bytes of a process (and its descendants) now; 0 once it is gone. Listing
    descendants reads every process of the machine, so it is done only now and then."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *(proc.children(recursive=True) if children else ())]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        with suppress(psutil.Error):
            total += p.memory_info().rss
    return total


@dataclass(frozen=True, slots=True)
class ProcessResult:
    exit_code: int
    stopped: bool  # we stopped it (job killed, lease lost, shutdown)
    cpu_s: float
    max_rss_mb: float
    wall_s: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.stopped

    def describe(self) -> str:
        if self.stopped:
            return "stopped by the WMS"
        if self.exit_code < 0:
            return f"killed by signal {-self.exit_code}"
        if self.exit_code == 127:
            return "exit code 127 (command not found?)"
        return f"exit code {self.exit_code}"


def kill_group(pgid: int, sig: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def run(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    stdout: Path,
    stderr: Path,
    stop: threading.Event,
) -> ProcessResult:
    """Run ``argv`` to completion (or until ``stop`` is set) and account for it."""
    started = time.monotonic()
    with open(stdout, "ab") as out, open(stderr, "ab") as err:
        try:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=dict(env),
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            err.write(f"dpps: cannot start {argv[0]!r}: {exc}\n".encode())
            return ProcessResult(127, False, 0.0, 0.0, time.monotonic() - started)
    pgid = proc.pid
    RUNNING_GROUPS.add(pgid)
    finished = threading.Event()
    stopped = threading.Event()

    peak = [0]

    def watch() -> None:
        samples = 0
        while True:
            peak[0] = max(peak[0], _tree_rss(pgid, children=samples % 10 == 9))
            samples += 1
            if finished.wait(_SAMPLE_S):
                return
            if stop.is_set():
                stopped.set()
                kill_group(pgid, signal.SIGTERM)
                if not finished.wait(_GRACE_S):
                    kill_group(pgid, signal.SIGKILL)
                return

    watcher = threading.Thread(target=watch, name=f"watch-{pgid}", daemon=True)
    watcher.start()
    try:
        _pid, status, usage = os.wait4(proc.pid, 0)
    finally:
        finished.set()
        RUNNING_GROUPS.discard(pgid)
    proc.returncode = os.waitstatus_to_exitcode(status)
    # Whatever the tool left running in its group goes with it.
    kill_group(pgid, signal.SIGKILL)
    watcher.join(timeout=_GRACE_S + 1)
    return ProcessResult(
        exit_code=proc.returncode,
        stopped=stopped.is_set(),
        cpu_s=usage.ru_utime + usage.ru_stime,
        max_rss_mb=peak[0] / 2**20,
        wall_s=time.monotonic() - started,
    )


def tail(path: Path, limit: int = 16_384) -> str:
    """The end of a log file, for the catalog (the whole file stays in the sandbox)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            if size > limit:
                fh.seek(size - limit)
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    return ("[...]\n" + text) if size > limit else text
