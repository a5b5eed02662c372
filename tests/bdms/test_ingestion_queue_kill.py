"""SIGKILL the ingestion daemon at random moments, restart it: every file exactly once.

The daemon runs as a real ``dpps daemon ingest`` process with its process pool, against a
landing area that keeps filling with simulated ACADA files (a few of them corrupt), on SQLite
and PostgreSQL (UC-110-1.1.4, UC-110-1.1.1).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dpps.bdms.archive import Archive
from dpps.bdms.samples import corrupt_bytes
from dpps.catalog.heartbeats import DatabaseHeartbeats
from tests.acada.helpers import (
    assert_exactly_once,
    lfn_of,
    simulate_untriggered,
    small,
    trigger,
    triggers_left,
)

KILLS = 5
SEED = 20261121
DPPS = str(Path(sys.executable).with_name("dpps"))


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_gone(pids: set[int], deadline_s: float = 30.0) -> set[int]:
    deadline = time.monotonic() + deadline_s
    while (alive := {p for p in pids if _alive(p)}) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def _wait_ready(
    archive: Archive, proc: subprocess.Popen[bytes], deadline_s: float = 120.0
) -> None:
    """Wait for ``proc``'s first heartbeat: from then on its SIGTERM handler is installed."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and proc.poll() is None:
        with archive.sessions() as session:
            if any(
                row.pid == proc.pid for row in DatabaseHeartbeats(archive.sessions).live(session)
            ):
                return
        time.sleep(0.1)
    raise AssertionError(f"daemon {proc.pid} never sent a heartbeat (exit code {proc.poll()})")


def _start(ws: Path, log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115 - closed with the process below
    return subprocess.Popen(
        [DPPS, "-w", str(ws), "daemon", "ingest", "--workers", "2", "--json"],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.mark.slow
@pytest.mark.verifies_usecase("UC-110-1.1.4")
@pytest.mark.verifies_usecase("UC-110-1.1.1")
def test_sigkill_at_random_moments_loses_and_duplicates_nothing(
    archive: Archive, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    ws = archive.config.workspace
    queue = archive.acada.queue(executor="inline")
    landing, quarantine = queue.settings.landing, queue.settings.quarantine
    good: list[Path] = []
    bad: list[Path] = []
    obs = 1

    def new_files(blocks: int) -> list[Path]:
        nonlocal obs
        files: list[Path] = []
        for _ in range(blocks):
            files += simulate_untriggered(landing, small(obs))
            obs += 1
        victim = files[rng.randrange(len(files))]
        corrupt_bytes(victim)
        bad.append(victim)
        good.extend(f for f in files if f is not victim)
        return files

    for f in new_files(2):  # triggers present before the daemon ever started
        trigger(f)
    log = tmp_path / "daemon.log"
    for round_ in range(KILLS):
        proc = _start(ws, log)
        files = new_files(2)
        kill_at = time.monotonic() + rng.uniform(0.3, 4.0)
        for f in files:  # announce while the daemon starts up and works
            trigger(f)
            time.sleep(rng.uniform(0.0, 0.08))
        time.sleep(max(0.0, kill_at - time.monotonic()))
        workers = _children(proc.pid)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(60) == -signal.SIGKILL, f"round {round_}: daemon ended on its own"
        assert _wait_gone(workers) == set(), "pool workers outlived the killed daemon"

    # The restarted daemon logs apart: a pool worker still being spawned when its daemon was
    # SIGKILLed prints its own EOFError traceback into that round's log, and that is SIGKILL
    # at work, not an error of the daemon under test.
    log = tmp_path / "restarted.log"
    proc = _start(ws, log)
    deadline = time.monotonic() + 240
    while triggers_left(landing) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, log.read_text()[-3000:]
    assert triggers_left(landing) == [], "the restarted daemon did not finish the queue"
    _wait_ready(archive, proc)  # the queue may have been empty before it even started
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0, "SIGTERM must stop the daemon within 10 s"
    tail = log.read_text()
    assert "Traceback" not in tail, tail[-3000:]
    summary = json.loads(tail[tail.rindex("{") :])
    assert summary["failed"] == 0

    state = assert_exactly_once(archive, [lfn_of(landing, f) for f in good])
    in_quarantine = sorted(
        p.relative_to(quarantine).as_posix()
        for p in quarantine.rglob("*")
        if p.is_file() and not p.name.startswith(".") and not p.name.endswith(".reason.json")
    )
    assert in_quarantine == sorted(b.relative_to(landing).as_posix() for b in bad)
    assert state["quarantine_events"] == len(bad)
    assert not any(f.exists() for f in bad)
    assert all(f.exists() for f in good)  # registered in place: nothing moved, nothing copied
