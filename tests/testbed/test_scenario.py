"""The long-haul scenario on the small testbed: ~20 small files from ACADA at CTAO-North to
PIC by a rule, on-site copies deleted once safe, per-site processes in their namespaces, the
catalog in the central one. Nothing lost, nothing duplicated, every rule OK, and the bytes
counted on CTAO-North's and PIC's links only.

The observing night (``dpps testbed scenario night``) runs on the same testbed after them: its
jobs on Dask workers at CTAO-North and PIC, each where its inputs are.

The testbed is the small one of tests/testbed/conftest.py, up for this module."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.testbed.conftest import RunDpps

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0, reason="the testbed needs root (network namespaces); CI runs as root"
    ),
    # one testbed per machine: every testbed test on one worker, one after the other, rather
    # than a second worker idling on the lock
    pytest.mark.xdist_group("testbed"),
]

FILES = 20


def test_the_scenario_refuses_without_a_testbed_or_with_too_much_data(
    small_testbed: Path, dpps: RunDpps
) -> None:
    huge = dpps(
        "testbed",
        "scenario",
        "longhaul",
        "--dir",
        str(small_testbed),
        "--files",
        "100000",
        "--size-kib",
        "10000000",
    )
    assert huge.returncode == 3, huge.stderr
    assert "free" in huge.stderr
    nowhere = dpps(
        "testbed", "scenario", "longhaul", "--dir", str(small_testbed), "--second-hop", "PIC"
    )
    assert nowhere.returncode == 3, nowhere.stderr
    assert "--second-hop PIC" in nowhere.stderr
    assert "CSCS" in nowhere.stderr
    assert "PIC-TAPE" in nowhere.stderr
    assert not (small_testbed / "scenario").exists()


def longhaul(dpps: RunDpps, testbed: Path, *extra: str) -> dict[str, Any]:
    """``dpps testbed scenario longhaul`` of :data:`FILES` files of 64 KiB on ``testbed``,
    with ``extra`` options; its JSON report (the command must succeed)."""
    args = ("--dir", str(testbed), "--files", str(FILES), "--size-kib", "64", *extra)
    done = dpps("testbed", "scenario", "longhaul", *args, "--json")
    assert done.returncode == 0, done.stderr + done.stdout
    report: dict[str, Any] = json.loads(done.stdout)
    return report


@pytest.mark.verifies_usecase("UC-190-1.3")
def test_long_haul_from_a_telescope_site_to_an_off_site_center(
    small_testbed: Path, dpps: RunDpps
) -> None:
    report = longhaul(dpps, small_testbed)
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
    # only the central process spoke to PostgreSQL; the site processes spoke to the API (a
    # request per batch of new files, a claim per batch of copies and reports of outcomes,
    # a claim per reaper pass and a report of what went), each counted by the server
    assert report["statements"].get("central", 0) > 0, report["statements"]
    for client in ("ingest.CTAO-North", "reaper.CTAO-North", "transfer.PIC"):
        assert report["statements"].get(client, 0) == 0, report["statements"]
    requests = report["agent_requests"]
    routes = ("ingest/register", "transfers/claim", "transfers/report", "reaper/claim")
    for route in (*routes, "reaper/purged"):
        assert requests.get(route, 0) >= 1, requests
    assert not [k for k in requests if k.endswith("failed")], requests
    # the scenario stopped its processes and left the testbed up and healthy
    status = json.loads(dpps("testbed", "status", "--dir", str(small_testbed), "--json").stdout)
    assert status["healthy"], status
    assert not [k for k in status["processes"] if k.startswith("scenario/")]


@pytest.mark.verifies_usecase("UC-190-1.2")
def test_a_second_hop_from_pic_to_an_s3_center(small_testbed: Path, dpps: RunDpps) -> None:
    """Every file also goes PIC -> CSCS (S3), pulled by CSCS's own agent once PIC holds it:
    each copy crosses each link once (CTAO-North's link carries the bytes once, not twice),
    and every second copy's adler32 is recomputed from what CSCS's S3 gateway returns."""
    report = longhaul(dpps, small_testbed, "--second-hop", "CSCS")
    hop = report["second_hop"]
    assert report["ok"], report
    assert report["lost"] == 0
    assert report["duplicated"] == 0
    assert hop["center"] == "CSCS"
    assert hop["copies"] == FILES, hop
    assert hop["lost"] == 0
    assert hop["bad_replicas"] == []
    assert hop["duplicated"] == 0
    assert hop["bytes"] == report["bytes"]
    assert hop["trigger_to_second_copy_s"]["n"] == FILES
    links = report["links"]
    assert links["PIC"]["tx_bytes"] >= hop["bytes"]
    assert links["CSCS"]["rx_bytes"] >= hop["bytes"]
    assert links["CTAO-North"]["tx_bytes"] < report["bytes_moved_offsite"] + hop["bytes"]
    assert report["onsite_files_left"] == 0


@pytest.mark.verifies_usecase("UC-190-1.2")
def test_a_second_copy_to_pic_tape_stays_inside_pic(small_testbed: Path, dpps: RunDpps) -> None:
    """Every file also goes from PIC's disk to PIC's tape (the tape RSE behind PIC's XRootD),
    copied by PIC's own agent inside PIC: the tape copies cross no WAN link (PIC's link
    carries each file once, inbound), and each one's adler32 is recomputed from the bytes
    in the directory PIC's server exports as tape."""
    report = longhaul(dpps, small_testbed, "--second-hop", "PIC-TAPE")
    hop = report["second_hop"]
    assert report["ok"], report
    assert (hop["rse"], hop["center"]) == ("PIC-TAPE", "PIC")
    assert hop["copies"] == FILES, hop
    assert (hop["lost"], hop["duplicated"], hop["bad_replicas"]) == (0, 0, [])
    assert hop["bytes"] == report["bytes"]
    links = report["links"]
    # in once over the WAN (to PIC's disk), never out again, never in twice
    assert links["PIC"]["rx_bytes"] >= report["bytes_moved_offsite"]
    assert links["PIC"]["rx_bytes"] < report["bytes_moved_offsite"] + hop["bytes"] / 2
    assert links["PIC"]["tx_bytes"] < hop["bytes"] / 2
    assert not report["relayed_by_third_site"]
    assert report["onsite_files_left"] == 0


@pytest.mark.verifies_usecase("UC-180-2.3")
@pytest.mark.verifies_usecase("UC-000-4")
def test_the_observing_night_runs_its_jobs_where_their_inputs_are(
    small_testbed: Path, dpps: RunDpps
) -> None:
    """Two blocks of the observing night: models and IRF made by PIC's Dask worker and
    copied to CTAO-North, DL0 written and registered there and copied to PIC, each block's
    jobs run by a worker of a site holding every input (the catalog says where each ran and
    which replicas it had), products archived and copied to PIC, gammapy on the DL3."""
    # a quarter of the showers: the models only have to exist, not to be good (the science
    # of the night is checked by tests/scenarios/night on one host)
    args = ("--dir", str(small_testbed), "--blocks", "2", "--showers", "0.25", "--json")
    done = dpps("testbed", "scenario", "night", *args, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    report = json.loads(done.stdout)
    assert report["ok"], report
    jobs = report["jobs_per_site"]
    assert jobs["PIC"]["models"] > 0
    assert "models" not in jobs.get("CTAO-North", {})  # the production asked for PIC
    assert sum(c.get("night", 0) for c in jobs.values()) >= 2 * 3  # steps of two blocks
    assert report["jobs_not_done"] == 0
    assert report["jobs_away_from_inputs"] == []
    files = report["acada"]["files"]
    assert report["transformation"].get("PROCESSED") == files
    dl0 = report["dl0"]
    assert (dl0["files"], dl0["safe"], dl0["at_pic"], dl0["lost"]) == (files, files, files, 0)
    assert dl0["bytes"] == report["acada"]["bytes"]
    products = report["products"]
    assert products["files"] > 0
    assert (products["lost"], products["not_at_pic"]) == (0, 0)
    assert report["rules_not_ok"] == 0
    # the DL0 crossed CTAO-North's link out and PIC's in once: no job read it over the WAN;
    # CSCS (no worker, no copy) carried nothing but chatter
    links = report["links"]
    assert links["CTAO-North"]["tx_bytes"] >= dl0["bytes"]
    assert links["CTAO-North"]["tx_bytes"] < 1.2 * (dl0["bytes"] + products["bytes"]) + 20e6
    assert links["PIC"]["rx_bytes"] >= dl0["bytes"]
    assert links["CSCS"]["tx_bytes"] + links["CSCS"]["rx_bytes"] < 64 * 1024
    analysis = report["analysis"]
    assert analysis["observations"] == [1, 2]
    assert analysis["n_on"] > 0
    assert not Path(report["dir"]).exists()  # the scenario's directory is removed
