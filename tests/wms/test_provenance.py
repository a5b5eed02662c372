"""One provenance record: the WMS's view of a job joined with the tool's own record."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from dpps.bdms.archive import Archive
from dpps.pipelines.tool import PROVENANCE_NAME, software_versions
from dpps.wms import outputs
from dpps.wms.api import WMS
from tests.pipelines.calibpipe.helpers import weather_table
from tests.wms.conftest import TIMEOUT_S, write


@pytest.mark.verifies_usecase("UC-000-1")
def test_archived_record_carries_the_pipeline_tools_versions_and_effective_config(
    wms: WMS, wms_archive: Archive, tmp_path: Path
) -> None:
    """A real pipeline tool (CalibPipe's atmosphere selection) as a WMS job: the record kept
    with its output holds the WMS fields and, under ``activity``, the tool's own record."""
    table = weather_table(tmp_path / "weather.fits", 5.0, 790.0, 40.0, obs_id=42)
    report = wms_archive.ingest([table], "PIC", lfn="/ctao/dl0/mon/obs_42_weather.fits")
    assert not report.failed, report.failed
    job = write(
        tmp_path / "job.yaml",
        """\
        name: atmosphere-42
        tool: dpps.pipelines.tool:wms_entry
        inputs: {weather: "lfn:/ctao/dl0/mon/obs_42_weather.fits"}
        parameters: {tool: calibpipe-atmosphere, config: {min_samples: 3}}
        outputs:
          - name: selection
            glob: "*_ATMOSPHERE_SELECTION.fits"
            lfn: /ctao/cal/obs_42/$(self.basename)
            data_level: CAL
    """,
    )
    sub = wms.submit(job)
    assert wms.wait(sub, timeout_s=TIMEOUT_S) == "DONE", wms.job(sub.id)
    (lfn,) = wms.job(sub.id).outputs
    prov = wms_archive.show(lfn.removeprefix("ctao:")).file.meta["provenance"]
    # the WMS's half: the job, what it was given, where it ran
    assert prov["job_id"] == sub.id
    assert prov["parameters"]["tool"] == "calibpipe-atmosphere"
    assert prov["inputs"] == ["ctao:/ctao/dl0/mon/obs_42_weather.fits"]
    assert prov["dpps_version"]
    # the tool's half: effective configuration (defaults filled in), package versions, the
    # checksums of what it read and wrote
    activity = prov["activity"]
    assert activity["tool"] == "calibpipe-atmosphere"
    assert activity["exit_code"] == 0
    assert activity["config"]["min_samples"] == 3
    assert activity["config"]["validity_before_s"] is not None  # a default, never given
    versions = software_versions()
    assert activity["software"]["dpps"] == versions["dpps"]
    assert activity["software"]["numpy"] == versions["numpy"]
    assert activity["software"]["astropy"] == versions["astropy"]
    (read,) = activity["inputs"]["weather"]
    assert read["bytes"] == table.stat().st_size
    assert read["adler32"]
    (made,) = activity["outputs"]
    assert made["product_type"] == "atmospheric model selection"
    assert Path(made["path"]).name == lfn.rsplit("/", 1)[1]


def _view_and_task() -> tuple[SimpleNamespace, SimpleNamespace]:
    view = SimpleNamespace(
        id=7,
        workflow_id=None,
        step=None,
        transformation=None,
        tool="t",
        software_version=None,
        parameters={},
        config_hash="h",
    )
    return view, SimpleNamespace(attempt=1, site="CTAO-N", executor="local")


def test_the_tool_writes_the_file_the_wms_reads() -> None:
    assert outputs.TOOL_PROVENANCE == PROVENANCE_NAME


def test_without_a_tool_record_the_wms_fields_stand_alone(tmp_path: Path) -> None:
    view, task = _view_and_task()
    prov = outputs.provenance(view, task, {}, {}, ["echo"], outdir=tmp_path)
    assert "activity" not in prov
    assert prov["command"] == ["echo"]


@pytest.mark.parametrize(("text", "problem"), [("{not json", "unreadable"), ("[1]", "a list")])
def test_an_unreadable_tool_record_is_noted_not_fatal(
    tmp_path: Path, text: str, problem: str
) -> None:
    (tmp_path / outputs.TOOL_PROVENANCE).write_text(text)
    view, task = _view_and_task()
    prov = outputs.provenance(view, task, {}, {}, None, outdir=tmp_path)
    assert problem in prov["activity"]["error"]
    assert prov["job_id"] == 7


def test_a_tool_record_is_kept_whole(tmp_path: Path) -> None:
    record = {"tool": "x", "software": {"numpy": "2.0"}, "config": {"a": 1}, "extra": [1, 2]}
    (tmp_path / outputs.TOOL_PROVENANCE).write_text(json.dumps(record))
    view, task = _view_and_task()
    assert outputs.provenance(view, task, {}, {}, None, outdir=tmp_path)["activity"] == record
