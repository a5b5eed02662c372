"""Bad input to a campaign is a clear error before anything is staged or submitted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dpps.bdms.archive import Archive
from dpps.cli.main import app
from dpps.core.errors import ConfigError, InvalidInput, NotFound
from dpps.pipelines.campaign import CampaignSpec, run_campaign
from dpps.wms.api import WMS
from tests.pipelines.campaign.conftest import DL0_PREFIX

UC = "UC-130-3.1.1"


@pytest.fixture
def dl0_archive(archive: Archive, landing: list[Path]) -> Archive:
    report = archive.ingest(landing, "CTAO-N", lfn_prefix=DL0_PREFIX)
    assert not report.failed
    return archive


def _untouched(archive: Archive) -> tuple[int, int, int]:
    return (
        archive.count("", all_versions=True),
        len(WMS(archive).list_jobs(limit=1000)),
        len(archive.preservation.stage_requests(limit=1000)),
    )


@pytest.mark.verifies_usecase(UC)
@pytest.mark.parametrize(
    ("query", "error", "words"),
    [
        ("obs_id in (1, 2", InvalidInput, "position"),
        ("obs_id = one", InvalidInput, "obs_id"),
        ("colour = red", InvalidInput, "colour"),
        ("obs_id = 99", NotFound, "selects no DL0"),
    ],
)
def test_bad_query_is_a_clear_error(
    dl0_archive: Archive, query: str, error: type[Exception], words: str
) -> None:
    before = _untouched(dl0_archive)
    with pytest.raises(error, match=words) as caught:
        run_campaign(dl0_archive, CampaignSpec(query=query, software_version="2.0"))
    assert query in str(caught.value)
    assert _untouched(dl0_archive) == before


def test_empty_query_and_bad_options_are_refused() -> None:
    with pytest.raises(InvalidInput, match="needs a metadata query"):
        CampaignSpec(query="  ", software_version="2.0")
    with pytest.raises(InvalidInput, match="software version"):
        CampaignSpec(query="obs_id=1", software_version="")
    with pytest.raises(InvalidInput, match="category"):
        CampaignSpec(query="obs_id=1", software_version="2.0", category="A")
    with pytest.raises(InvalidInput, match="unknown step"):
        CampaignSpec(query="obs_id=1", software_version="2.0", configs={"dl4": {}})
    with pytest.raises(InvalidInput, match="campaign name"):
        CampaignSpec(query="obs_id=1", software_version="2.0", name="a b")


def test_misspelled_tool_option_stops_before_staging(dl0_archive: Archive) -> None:
    before = _untouched(dl0_archive)
    spec = CampaignSpec(
        query="obs_id=1", software_version="2.0", configs={"dl1": {"picture_threshold": 9}}
    )
    with pytest.raises(ConfigError, match="picture_threshold"):
        run_campaign(dl0_archive, spec)
    assert _untouched(dl0_archive) == before


@pytest.mark.verifies_usecase(UC)
def test_cli_dry_run_and_bad_query(dl0_archive: Archive) -> None:
    runner = CliRunner()
    ws = str(dl0_archive.config.workspace)
    before = _untouched(dl0_archive)
    result = runner.invoke(
        app,
        [
            "-w",
            ws,
            "campaign",
            "reprocess",
            "obs_id = 2",
            "--software-version",
            "2.0",
            "--dry-run",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    expected = dl0_archive.list_files("obs_id = 2 and data_level = DL0", limit=None)
    assert data["volume"]["total"]["files"] == len(expected)
    assert data["volume"]["total"]["bytes"] == sum(f.bytes or 0 for f in expected)
    assert data["volume"]["total"]["on_disk_files"] == len(expected)
    assert data["volume"]["estimated_staging_s"] == 0.0
    assert list(data["volume"]["blocks"]) == ["2"]
    assert data["dry_run"] is True
    assert data["steps"] == []
    assert _untouched(dl0_archive) == before
    bad = runner.invoke(
        app,
        ["-w", ws, "campaign", "reprocess", "obs_id in (1", "--software-version", "2.0", "--json"],
    )
    assert bad.exit_code == 3
    assert "obs_id in (1" in bad.stderr
    assert "Traceback" not in bad.output
    wrong = runner.invoke(
        app,
        [
            "-w",
            ws,
            "campaign",
            "reprocess",
            "obs_id = 2",
            "--software-version",
            "2.0",
            "--set",
            "dl1=3",
        ],
    )
    assert wrong.exit_code == 4  # a configuration error
    assert "STEP.OPTION" in wrong.stderr
    assert _untouched(dl0_archive) == before
    assert runner.invoke(app, ["campaign", "reprocess", "--help"]).exit_code == 0
