"""The multi-site testbed on a small topology (three centers plus the central namespace):
``dpps testbed up/status/down`` through the CLI, addresses only inside the namespaces, shaping
in place, round-trip time through the delay proxy, storage servers reachable from their own
namespace and from another one over the WAN (and the bytes counted on exactly those links),
refusals that leave nothing behind, and nothing left after ``down``.

The testbed is one per machine (its namespaces have a fixed prefix), so every test that needs
it, or needs it absent, holds one lock file: xdist workers take turns.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from dpps.testbed import lifecycle, probe, topology
from dpps.testing import netns

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0, reason="the testbed needs root (network namespaces); CI runs as root"
    ),
    # one testbed per machine: every testbed test on one worker, one after the other, rather
    # than a second worker idling on the lock
    pytest.mark.xdist_group("testbed"),
]

LOCK = "/run/dpps-testbed-tests.lock"


def dpps(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "dpps"), *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def host_addresses() -> list[str]:
    out = json.loads(
        subprocess.run(["ip", "-json", "addr"], capture_output=True, text=True, check=True).stdout
    )
    return [a["local"] for link in out for a in link.get("addr_info", [])]


@pytest.fixture(scope="module")
def lock() -> Iterator[None]:
    with FileLock(LOCK, timeout=600):
        yield


def test_refusals_without_a_testbed_leave_nothing(
    lock: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # first in this file, so it runs before this worker brings the module's testbed up
    assert netns.namespaces() == []
    # down with nothing up
    down = dpps("testbed", "down")
    assert down.returncode == 5
    assert "no testbed is up" in down.stderr
    status = dpps("testbed", "status", "--json")
    assert status.returncode == 5
    # a topology naming an unknown protocol
    bad = tmp_path / "bad.yaml"
    bad.write_text("sites:\n  PIC: {storage: [xrootd, gridftp]}\n", encoding="utf-8")
    refused = dpps("testbed", "up", "--dir", str(tmp_path / "tb"), "--topology", str(bad))
    assert refused.returncode == 3
    assert "unknown protocol" in refused.stderr
    assert "gridftp" in refused.stderr
    # not root
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(lifecycle.PermissionDenied, match="needs root"):
        lifecycle.up(tmp_path / "tb2", topology.plan(topology.load("small")))
    assert netns.namespaces() == []
    assert not (tmp_path / "tb").exists()
    assert not (tmp_path / "tb2").exists()


@pytest.fixture(scope="module")
def testbed(lock: None) -> Iterator[dict[str, Any]]:
    # not under pytest's basetemp: every new pytest session resets /tmp/pytest-of-root to
    # 0700, which would lock the xrootd user out of its own data directory
    directory = Path(tempfile.mkdtemp(prefix="dpps-testbed-test-"))
    assert not netns.namespaces(), "a testbed was left up by someone else"
    done = dpps("testbed", "up", "--dir", str(directory), "--topology", "small", "--json")
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout)
    try:
        yield state
    finally:
        down = dpps("testbed", "down", "--json")
        assert down.returncode == 0, down.stderr
        # everything gone: no namespace with the prefix, no process alive
        assert netns.namespaces() == []
        assert not [p for p in state["pids"].values() if lifecycle._alive(int(p))]
        assert not (directory / "testbed.json").exists()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def plan() -> topology.Plan:
    return topology.plan(topology.load("small"))


@pytest.mark.verifies_usecase("UC-190-1.1")
def test_status_shows_a_healthy_testbed_with_addresses_only_inside(
    testbed: dict[str, Any], plan: topology.Plan
) -> None:
    done = dpps("testbed", "status", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["healthy"], report
    assert sorted(report["namespaces"]) == sorted(plan.namespaces)
    assert {n["name"] for n in report["nodes"]} == {"central", "CTAO-North", "PIC", "CSCS"}
    for node in plan.nodes:
        assert netns.addresses(node.netns) == ["127.0.0.1/8", f"{node.address}/24"]
    assert netns.addresses(plan.wan_netns) == ["127.0.0.1/8"]  # the bridge has no address
    assert not [a for a in host_addresses() if a.startswith("10.213.")]
    # the RSEs served: XRootD disk and tape at PIC, S3 at CSCS, POSIX at the telescope site
    rses = testbed["rses"]
    assert rses["PIC"]["url"].startswith(f"root://{plan.node('PIC').address}:1094//")
    assert rses["PIC-TAPE"]["kind"] == "tape"
    assert rses["CSCS"]["url"].startswith("s3://")
    assert Path(rses["CTAO-North"]["url"]).is_dir()
    assert Path(testbed["paths"]["CTAO-North"]["landing"]).is_dir()
    human = dpps("testbed", "status")
    assert human.returncode == 0
    assert "healthy" in human.stdout


def test_every_link_is_shaped_at_both_ends(testbed: dict[str, Any], plan: topology.Plan) -> None:
    wan_lines = netns.qdiscs(plan.wan_netns).splitlines()
    for node in plan.nodes:
        mbit = node.bandwidth_mbit
        rate = f"rate {mbit / 1000:g}Gbit" if mbit >= 1000 else f"rate {mbit:g}Mbit"
        inside = netns.qdiscs(node.netns)
        assert "tbf" in inside, inside
        assert rate in inside, inside
        outer = [line for line in wan_lines if f"dev {node.wan_link} " in line]
        assert outer, wan_lines
        assert rate in outer[0], outer


def test_round_trip_time_through_the_delay_proxy(
    testbed: dict[str, Any], plan: topology.Plan
) -> None:
    north, pic = plan.node("CTAO-North"), plan.node("PIC")
    configured = plan.path_rtt_ms(north.name, pic.name)  # 40 + 10 ms
    with probe.server_in(pic.netns, pic.address):
        times = probe.rtt_ms(north.netns, pic.address, rounds=4)
        local = probe.rtt_ms(pic.netns, pic.address, rounds=2)  # no WAN, no delay
    assert min(times) >= configured * 0.99, times
    assert max(local) < configured / 2, local


@pytest.mark.verifies_usecase("UC-190-1.2")
def test_storage_reachable_in_its_namespace_and_over_the_wan_only(
    testbed: dict[str, Any], plan: topology.Plan, tmp_path: Path
) -> None:
    north, pic, cscs = plan.node("CTAO-North"), plan.node("PIC"), plan.node("CSCS")
    netns.connect_in(pic.netns, pic.address, 1094).close()  # XRootD in its own namespace
    s3_port = int(
        testbed["rses"]["CSCS"]["storage_options"]["client_kwargs"]["endpoint_url"].rsplit(":", 1)[
            1
        ]
    )
    netns.connect_in(cscs.netns, cscs.address, s3_port).close()  # S3 in its own namespace
    netns.connect_in(north.netns, cscs.address, s3_port).close()  # S3 from another center
    data = os.urandom(4 * 1024 * 1024)
    (tmp_path / "f.dat").write_bytes(data)
    before = {n.name: netns.link_counters(n.netns, n.link) for n in plan.nodes}
    # a real XRootD put from the telescope site to PIC: it crosses the WAN
    url = f"{testbed['rses']['PIC']['url']}/ctao/f.dat"
    put = subprocess.run(
        netns.command_in(north.netns, ["xrdcp", "-s", str(tmp_path / "f.dat"), url]),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert put.returncode == 0, put.stderr
    after = {n.name: netns.link_counters(n.netns, n.link) for n in plan.nodes}
    sent = after["CTAO-North"]["tx_bytes"] - before["CTAO-North"]["tx_bytes"]
    received = after["PIC"]["rx_bytes"] - before["PIC"]["rx_bytes"]
    assert sent >= len(data)
    assert received >= len(data)
    # the bytes crossed exactly the two links of the path, not the third center's
    assert after["CSCS"]["rx_bytes"] - before["CSCS"]["rx_bytes"] < len(data) / 10
    on_disk = Path(testbed["paths"]["PIC"]["xrootd"]) / "disk" / "ctao" / "f.dat"
    assert on_disk.read_bytes() == data


def test_up_twice_is_refused_and_changes_nothing(testbed: dict[str, Any], tmp_path: Path) -> None:
    before = netns.namespaces()
    again = dpps("testbed", "up", "--dir", str(tmp_path / "other"), "--topology", "small")
    assert again.returncode == 6, again.stderr
    assert "already up" in again.stderr
    assert netns.namespaces() == before
    assert dpps("testbed", "status", "--json").returncode == 0
