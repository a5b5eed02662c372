"""Running one tool process: its own process group, logs to files, resource usage, kill.

The tool runs in a new session so that killing a job kills everything it started (a shell and
its children). ``os.wait4`` gives the CPU time of exactly this process tree, also when several
jobs run in threads of one Dask worker. Peak memory is sampled (resident set of the tree, every
100 ms): the kernel's ``ru_maxrss`` would report the worker's own size, which the child
inherits at fork, for every job. A job that must stop (killed, lease
lost, worker shutting down) gets SIGTERM, then SIGKILL after a grace period. The calling
thread does the watching itself, on a pidfd (Linux), so a job costs no extra thread.
"""

from __future__ import annotations

import math
import os
import select
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
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _tree_rss(pid: int, children: bool) -> int:
    """Resident bytes of a process (and its descendants) now; 0 once it is gone. Listing
    descendants reads every process of the machine, so it is done only now and then; the
    process alone is one read of ``/proc/PID/statm`` (psutil's process object costs several
    reads more, paid by every job for its first sample)."""
    if not children:
        try:
            with open(f"/proc/{pid}/statm", "rb") as fh:
                return int(fh.read().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            pass  # not Linux, or already gone: psutil decides
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
    try:
        peak, stopped = _watch(proc.pid, stop)
        _pid, status, usage = os.wait4(proc.pid, 0)
    finally:
        RUNNING_GROUPS.discard(pgid)
    proc.returncode = os.waitstatus_to_exitcode(status)
    # Whatever the tool left running in its group goes with it.
    kill_group(pgid, signal.SIGKILL)
    return ProcessResult(
        exit_code=proc.returncode,
        stopped=stopped,
        cpu_s=usage.ru_utime + usage.ru_stime,
        max_rss_mb=peak / 2**20,
        wall_s=time.monotonic() - started,
    )


def _watch(pid: int, stop: threading.Event) -> tuple[int, bool]:
    """Until the process ends: sample its memory every ``_SAMPLE_S``, and stop it (SIGTERM,
    SIGKILL after a grace period) once ``stop`` is set. Returns (peak bytes, stopped).

    Waits on a pidfd in the calling thread: no watcher thread per job (starting one waits for
    the scheduler, which on a busy machine costs more than a short job's bookkeeping).
    """
    fd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        peak, samples, stopped = _tree_rss(pid, children=False), 1, False
        kill_at: float | None = None
        while not poller.poll(_SAMPLE_S * 1000):
            if kill_at is not None:
                if time.monotonic() >= kill_at:
                    kill_group(pid, signal.SIGKILL)
                    kill_at = math.inf
                continue
            peak = max(peak, _tree_rss(pid, children=samples % 10 == 9))
            samples += 1
            if stop.is_set():
                stopped = True
                kill_group(pid, signal.SIGTERM)
                kill_at = time.monotonic() + _GRACE_S
        return peak, stopped
    finally:
        os.close(fd)


def tail(path: Path, limit: int = 16_384) -> str:
    """The end of a log file, for the catalog (the whole file stays in the sandbox)."""
    try:
        size = path.stat().st_size
        if size == 0:  # most short tools print nothing: no open, no read
            return ""
        with open(path, "rb") as fh:
            if size > limit:
                fh.seek(size - limit)
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    return ("[...]\n" + text) if size > limit else text
