"""The reprocessing campaign end to end (UC-130-3.1.1) on DL0 that only tape holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpps.bdms.archive import Archive
from dpps.bdms.staging.stager import buffer_storage
from dpps.pipelines.campaign import CampaignSpec, run_campaign
from dpps.pipelines.campaign.selection import dl0_filter
from dpps.pipelines.campaign.staging import still_staged
from dpps.wms.api import WMS
from tests.pipelines.campaign.conftest import NIGHT_DL1, NIGHT_DL2, TARGET

UC = "UC-130-3.1.1"
QUERY = "observing_night = 2026-11-21 and obs_id in (1, 2)"


def spec(**extra: object) -> CampaignSpec:
    configs = {"dl2": {"target": TARGET}, "dl3": {"pointing_tolerance_deg": 0.2}}
    return CampaignSpec(
        query=QUERY,
        software_version="datapipe 2.0",
        name="reproc-2026",
        configs=configs,
        timeout_s=900,
        **extra,
    )  # type: ignore[arg-type]


def buffer_files(archive: Archive) -> list[Path]:
    root = Path(buffer_storage(archive.config).root)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def state(archive: Archive) -> tuple[int, int, int, int]:
    """What a campaign could change: files (all versions), jobs, stage requests, events."""
    wms = WMS(archive)
    return (
        archive.count("", all_versions=True),
        len(wms.list_jobs(limit=100_000)),
        len(archive.preservation.stage_requests(limit=100_000)),
        len(archive.show(NIGHT_DL1).events),
    )


@pytest.mark.verifies_usecase(UC)
# SQLite only: on PostgreSQL a campaign reprocesses tape-only DL0 in test_record's daemon test
# (each costs a minute or two of CI; the tape path is run once on each catalog).
@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_campaign_reprocesses_tape_only_dl0(tape_archive: Archive) -> None:
    archive = tape_archive
    selected = archive.list_files(dl0_filter(QUERY), limit=None)
    # -- dry run: the volume is the catalog's, and nothing changes
    before = state(archive)
    dry = run_campaign(archive, spec(), dry_run=True)
    assert state(archive) == before
    volume = dry.volume
    assert volume.total.files == len(selected) == archive.count(dl0_filter(QUERY))
    assert volume.total.bytes == sum(f.bytes or 0 for f in selected)
    assert volume.total.tape_only_files == len(selected)
    assert volume.total.on_disk_files == 0
    assert sorted(volume.blocks) == [1, 2]
    for obs_id, tally in volume.blocks.items():  # every stream and table of the block
        block = [f for f in selected if f.obs_id == obs_id]
        assert tally.files == len(block) == archive.count(f"obs_id={obs_id} and data_level=DL0")
        assert tally.tape_only_files == len(block)
        assert tally.bytes == sum(f.bytes or 0 for f in block)
    assert set(volume.sites) == {"PIC"}  # the on-site copies are gone; PIC-TAPE holds all
    assert volume.sites["PIC"]["tape_bytes"] == volume.total.bytes
    assert volume.sites["PIC"].get("disk_bytes", 0) == 0
    assert volume.estimated_staging_s >= archive.config.rses["PIC-TAPE"].staging_delay_s
    assert dry.models
    assert dry.models.endswith("models.joblib@v1")
    assert dry.irf
    assert dry.irf.endswith("irf.fits@v1")

    # -- the campaign
    report = run_campaign(archive, spec())
    assert report.ok, (report.failures, report.verification.problems)
    n_inputs = sum(t.files for t in volume.blocks.values())
    assert report.staging.files == n_inputs
    assert report.staging.ready == n_inputs
    assert len(report.staging.own_requests) == n_inputs
    assert not report.staging.joined_requests
    # staging happened, and the buffer is clear again (only the campaign's requests)
    assert sorted(report.staging.released) == sorted(report.staging.own_requests)
    assert still_staged(archive, report.staging.own_requests) == []
    assert buffer_files(archive) == []
    infos = archive.preservation.stage_requests(ids=report.staging.own_requests)
    assert {i.state for i in infos} == {"EXPIRED"}
    steps = ("camera", "atmosphere", "dl1", "dl2", "dl3", "quality")  # the night's chain
    assert report.counts() == {s: {"runs": 2, "ok": 2, "failed": 0, "submitted": 2} for s in steps}
    # jobs: reprocessing activity, the new software version
    jobs = WMS(archive).list_jobs(limit=1000)
    assert len(jobs) == 12
    assert {(j.activity, j.software_version, j.state) for j in jobs} == {
        ("reprocessing", "datapipe 2.0", "DONE")
    }
    # outputs: category C, the new version in provenance, inputs named
    new = archive.list_files("meta.campaign = 'reproc-2026'", limit=None)
    kinds = sorted((f.data_level, f.product_type or "") for f in new)
    for kind in [
        ("DL1", "image parameters"),
        ("DL2", "reconstructed events"),
        ("DL3", "event list"),
        ("DL3", "irf"),
    ]:
        assert kinds.count(kind) == 2, kinds
    assert {f.data_level for f in new} == {"CAL", "DL1", "DL2", "DL3", "QUAL"}
    for f in new:
        assert f.category == "C", f.did
        assert f.meta["provenance"]["software_version"] == "datapipe 2.0"
        assert f.meta["provenance"]["inputs"]
    dl1 = {f.obs_id: f for f in new if f.data_level == "DL1"}
    dl0_inputs = set(dl1[2].meta["provenance"]["inputs"])
    calibration = {f.did for f in new if f.obs_id == 2 and f.product_type == "camera calibration"}
    assert len(calibration) == 4  # the campaign's own CalibPipe products, one per telescope
    assert dl0_inputs == {f.did for f in selected if f.obs_id == 2} | calibration
    assert report.verification.checksums_verified == len(new) == report.verification.products
    # versions: block 1's night products got a new version; the old ones are intact
    assert dl1[1].name == NIGHT_DL1
    assert dl1[1].version == 2
    dl2_1 = next(f for f in new if f.data_level == "DL2" and f.obs_id == 1)
    assert dl2_1.name == NIGHT_DL2
    assert dl2_1.version == 2
    assert dl1[2].version == 1
    assert dl1[2].name.startswith("/ctao/dl1/2026/11/21/obs_000002/")
    assert archive.show(NIGHT_DL1).versions == [1, 2]
    latest = archive.list_files(f"name = '{NIGHT_DL1}'")
    assert [(f.version, f.category) for f in latest] == [(2, "C")]  # latest by default
    old = archive.list_files(f"name = '{NIGHT_DL1}' and version = 1")
    assert [(f.version, f.category) for f in old] == [(1, "B")]
    got = archive.get([f"{NIGHT_DL1}@v1"], archive.config.workspace / "old")
    assert not got.failed
    assert got.results[0].bytes == old[0].bytes
    assert sorted(report.verification.previous_versions) == sorted(
        [f"ctao:{NIGHT_DL1}@v1", f"ctao:{NIGHT_DL2}@v1"]
    )

    # -- the same campaign again: nothing new
    before = state(archive)
    again = run_campaign(archive, spec())
    assert again.ok, (again.failures, again.verification.problems)
    assert state(archive)[:3] == before[:3]
    assert again.staging.files == 0
    assert {(r.step, r.how) for r in again.steps} == {("block", "existing")}
    assert archive.list_files("meta.campaign = 'reproc-2026'", limit=None) == new
