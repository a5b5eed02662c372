"""What the testbed's test modules share: the ``dpps`` command, the machine-wide lock, and a
small testbed up for the duration of one module.

One testbed per machine: every module that brings one up holds ``/run/dpps-testbed-tests.lock``
while it is up (pytest-xdist may run two such modules at once, on two workers)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from filelock import FileLock

from dpps.testing import netns

LOCK = "/run/dpps-testbed-tests.lock"

RunDpps = Callable[..., subprocess.CompletedProcess[str]]


def run_dpps(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """The installed ``dpps`` command, its output captured (never raises on failure)."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "dpps"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def dpps() -> RunDpps:
    return run_dpps


@pytest.fixture(autouse=True)
def _on_the_testbed_worker(request: pytest.FixtureRequest) -> None:
    """Under ``--dist loadgroup`` every testbed test must run on one worker (their modules
    carry ``xdist_group("testbed")``): split, the second worker waits on the lock for as long
    as the first holds it, and the suite runs minutes longer with nothing failing. pytest 9.2
    broke the grouping once (pytest-dev/pytest-xdist#1386): fail loudly if it breaks again."""
    grouped = request.node.get_closest_marker("xdist_group") is not None
    if grouped and getattr(request.config.option, "loadgroup", False):
        assert request.node.nodeid.endswith("@testbed"), (
            f"{request.node.nodeid}: pytest-xdist did not group the testbed's tests on one "
            "worker (see pyproject.toml's pin of pytest)"
        )


@pytest.fixture(scope="module")
def testbed_lock() -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.skip("the testbed needs root (network namespaces); CI runs as root")
    with FileLock(LOCK, timeout=900):
        yield


@pytest.fixture(scope="module")
def small_testbed(testbed_lock: None) -> Iterator[Path]:
    """``dpps testbed up --topology small`` in a fresh directory; down (and checked gone) at
    the end of the module."""
    directory = Path(tempfile.mkdtemp(prefix="dpps-testbed-test-"))
    assert not netns.namespaces(), "a testbed was left up by someone else"
    up = run_dpps("testbed", "up", "--dir", str(directory), "--topology", "small", "--json")
    assert up.returncode == 0, up.stderr
    try:
        yield directory
    finally:
        down = run_dpps("testbed", "down", "--dir", str(directory), "--json")
        assert down.returncode == 0, down.stderr
        assert netns.namespaces() == []
        shutil.rmtree(directory, ignore_errors=True)
