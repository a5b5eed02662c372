"""Jobs that fail are reported with their files; a rerun retries them, never duplicates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dpps.bdms.archive import Archive
from dpps.cli.main import app
from dpps.pipelines.campaign import CampaignSpec, run_campaign
from dpps.wms.api import WMS
from tests.pipelines.campaign.conftest import DL0_PREFIX, TARGET

UC = "UC-130-3.1.1"


@pytest.mark.verifies_usecase(UC)
def test_failed_jobs_are_reported_and_retried(archive: Archive, landing: list[Path]) -> None:
    assert not archive.ingest(landing, "CTAO-N", lfn_prefix=DL0_PREFIX).failed
    # "models" that are not DataPipe models: datapipe-dl2 fails (exit 1) in every block
    wrong = archive.list_files("obs_id = 1 and meta.datadiv = POINTING")[0].did
    spec = CampaignSpec(
        query="obs_id in (1, 2)",
        software_version="2.0",
        name="broken",
        models=wrong,
        max_attempts=1,
        configs={"dl2": {"target": TARGET}},
        timeout_s=600,
    )
    report = run_campaign(archive, spec)
    assert not report.ok
    counts = report.counts()
    for step in ("camera", "atmosphere", "dl1"):
        assert counts[step] == {"runs": 2, "ok": 2, "failed": 0, "submitted": 2}
    assert counts["dl2"] == {"runs": 2, "ok": 0, "failed": 2, "submitted": 2}
    assert "quality" not in counts  # never created: its inputs failed
    assert report.skipped == ["dl3 skipped: no IRF in the archive (give --irf)"]
    failures = sorted(report.failures, key=lambda f: f["obs_id"])
    assert [(f["step"], f["obs_id"]) for f in failures] == [("dl2", 1), ("dl2", 2)]
    for failure in failures:
        assert wrong in failure["inputs"]
        assert any(d.endswith("_dl1.h5") for d in failure["inputs"])
        assert failure["error"]
    assert report.staging.files == 0  # everything on disk: nothing staged
    jobs = WMS(archive).list_jobs(limit=100)
    assert sorted(j.state for j in jobs) == ["DONE"] * 6 + ["FAILED"] * 2
    # the same campaign again, from the CLI: exit 10, the failed jobs retried, none added
    result = CliRunner().invoke(
        app,
        [
            "-w",
            str(archive.config.workspace),
            "campaign",
            "reprocess",
            "obs_id in (1, 2)",
            "--software-version",
            "2.0",
            "--name",
            "broken",
            "--models",
            wrong,
            "--set",
            f"dl2.target={json.dumps(TARGET)}",
            "--json",
        ],
    )
    assert result.exit_code == 10, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert data["counts"]["dl1"] == {"runs": 2, "ok": 2, "failed": 0, "retried": 2}
    assert data["counts"]["dl2"] == {"runs": 2, "ok": 0, "failed": 2, "retried": 2}
    assert len(data["failures"]) == 2
    assert {j.id for j in WMS(archive).list_jobs(limit=100)} == {j.id for j in jobs}
