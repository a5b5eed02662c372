"""The long-haul scenario on the small testbed: ~20 small files from ACADA at CTAO-North to
PIC by a rule, on-site copies deleted once safe, per-site processes in their namespaces, the
catalog in the central one. Nothing lost, nothing duplicated, every rule OK, and the bytes
counted on CTAO-North's and PIC's links only.

Holds the same lock as tests/testbed/test_testbed.py: one testbed per machine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from filelock import FileLock

from dpps.testing import netns

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="the testbed needs root (network namespaces); CI runs as root"
)

LOCK = "/run/dpps-testbed-tests.lock"
FILES = 20


def dpps(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "dpps"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def testbed() -> Iterator[Path]:
    with FileLock(LOCK, timeout=600):
        directory = Path(tempfile.mkdtemp(prefix="dpps-scenario-test-"))
        assert not netns.namespaces(), "a testbed was left up by someone else"
        up = dpps("testbed", "up", "--dir", str(directory), "--topology", "small", "--json")
        assert up.returncode == 0, up.stderr
        try:
            yield directory
        finally:
            down = dpps("testbed", "down", "--dir", str(directory), "--json")
            assert down.returncode == 0, down.stderr
            assert netns.namespaces() == []
            shutil.rmtree(directory, ignore_errors=True)


def test_the_scenario_refuses_without_a_testbed_or_with_too_much_data(testbed: Path) -> None:
    huge = dpps(
        "testbed",
        "scenario",
        "longhaul",
        "--dir",
        str(testbed),
        "--files",
        "100000",
        "--size-kib",
        "10000000",
    )
    assert huge.returncode == 3, huge.stderr
    assert "free" in huge.stderr
    assert not (testbed / "scenario").exists()


@pytest.mark.verifies_usecase("UC-190-1.3")
def test_long_haul_from_a_telescope_site_to_an_off_site_center(testbed: Path) -> None:
    done = dpps(
        "testbed",
        "scenario",
        "longhaul",
        "--dir",
        str(testbed),
        "--files",
        str(FILES),
        "--size-kib",
        "64",
        "--json",
    )
    assert done.returncode == 0, done.stderr + done.stdout
    report = json.loads(done.stdout)
    assert report["ok"], report
    assert report["complete"]
    assert report["registered"] == FILES
    assert report["lost"] == 0
    assert report["bad_replicas"] == []
    assert report["duplicated"] == 0
    assert report["rules_not_ok"] == 0
    assert report["onsite_files_left"] == 0  # every on-site copy deleted once safe
    assert report["trigger_to_safe_s"]["n"] == FILES
    assert report["onsite_deletion_lag_s"]["n"] == FILES
    # the bytes flowed CTAO-North -> PIC, counted on both links, through no third site
    moved = report["bytes_moved_offsite"]
    assert moved == report["bytes"]
    assert report["links"]["CTAO-North"]["tx_bytes"] >= moved
    assert report["links"]["PIC"]["rx_bytes"] >= moved
    assert report["links"]["central"]["rx_bytes"] < moved  # catalog traffic, not the data
    assert not report["relayed_by_third_site"], report["third_site_bytes"]
    # every site process spoke to the catalog, each counted by the server
    for client in ("ingest.CTAO-North", "reaper.CTAO-North", "transfer.PIC", "evaluator"):
        assert report["statements"].get(client, 0) > 0, report["statements"]
    # the scenario stopped its processes and left the testbed up and healthy
    status = json.loads(dpps("testbed", "status", "--dir", str(testbed), "--json").stdout)
    assert status["healthy"], status
    assert not [k for k in status["processes"] if k.startswith("scenario/")]
