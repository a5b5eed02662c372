"""CWL workflows on the local executor: scatter over archive files, DAG order, provenance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from dpps.bdms.archive import Archive
from dpps.catalog.models import EventRow
from dpps.wms import cwl
from dpps.wms.api import WMS
from dpps.wms.builder import Output, Workflow, tool_command
from dpps.wms.spec import InputPort
from dpps.wms.types import SubmitOptions
from tests.wms.conftest import PY, TIMEOUT_S, ingest, write


@pytest.mark.verifies_usecase("UC-000-1")
def test_scatter_workflow_over_archive_files_runs_and_registers_provenance(
    wms: WMS, wms_archive: Archive, scatter_cwl: Path
) -> None:
    files = [
        ingest(wms_archive, "PIC", "/ctao/dl0/obs_1/tel_001.fits", obs_id=1, tel_id=1, seed=1),
        ingest(wms_archive, "PIC", "/ctao/dl0/obs_1/tel_002.fits", obs_id=1, tel_id=2, seed=2),
        ingest(
            wms_archive, "PIC", "/ctao/dl0/obs_1/tel_003.h5", obs_id=1, tel_id=3, seed=3, hdf5=True
        ),
    ]
    sub = wms.submit(scatter_cwl, {"files": files, "tag": "night1"})
    assert sub.kind == "workflow"
    assert wms.wait(sub, timeout_s=TIMEOUT_S) == "DONE", wms.workflow(sub.id)

    info = wms.workflow(sub.id)
    assert info.steps == {
        "summarize": {"state": "DONE", "jobs": 3},
        "merge": {"state": "DONE", "jobs": 1},
    }
    assert info.outputs == {"merged": "ctao:/ctao/dl2/night1/merged.json"}
    by_step = {j.step: j for j in info.jobs}
    summaries = [j for j in info.jobs if j.step == "summarize"]
    # The DAG: the merge job exists only once every scattered job is DONE.
    merge_job = wms.job(by_step["merge"].id)
    assert merge_job.created_at >= max(j.finished_at for j in summaries if j.finished_at)
    assert sorted(merge_job.inputs) == sorted(
        f"ctao:/ctao/dl1/night1/{n}.summary.json" for n in ("tel_001", "tel_002", "tel_003")
    )

    # Outputs are in the archive, with their metadata and the provenance record.
    merged = wms_archive.show("/ctao/dl2/night1/merged.json")
    assert merged.file.data_level == "DL2"
    prov = merged.file.meta["provenance"]
    assert prov["job_id"] == merge_job.id
    assert prov["workflow_id"] == sub.id
    assert prov["step"] == "merge"
    assert prov["config_hash"]
    assert prov["site"] == "PIC"
    assert prov["host"]
    assert prov["started_at"]
    assert sorted(prov["inputs"]) == sorted(merge_job.inputs)
    one = wms_archive.show("/ctao/dl1/night1/tel_001.summary.json")
    assert one.file.meta["campaign"] == "test"
    assert one.file.meta["provenance"]["software_version"] == "dpps-samples 1.0"
    assert one.file.meta["provenance"]["inputs"] == ["ctao:/ctao/dl0/obs_1/tel_001.fits"]
    out = wms_archive.config.workspace / "got"
    out.mkdir()
    wms_archive.get(["/ctao/dl2/night1/merged.json"], out)
    content = json.loads((out / "merged.json").read_text())
    assert content["n"] == 3
    assert {p["format"] for p in content["parts"]} == {"fits", "hdf5"}
    assert {p["tel_id"] for p in content["parts"]} == {1, 2, 3}
    with wms_archive.sessions() as s:
        actions = s.scalars(select(EventRow.action).where(EventRow.did_id.is_not(None))).all()
    assert actions.count("wms.output") == 4
    # Inputs at the job's own site were read in place, not copied.
    assert all(j.run_site == "PIC" for j in info.jobs)
    assert all(j.bytes_read > 0 and j.bytes_written > 0 and j.cpu_s > 0 for j in info.jobs)


def test_python_builder_makes_the_same_workflow_as_cwl(scatter_cwl: Path) -> None:
    parsed = cwl.load(scatter_cwl)
    summarize = tool_command(
        "summarize",
        [PY, "-m", "dpps.wms.samples", "summarize"],
        inputs={"infile": InputPort(name="infile", type="File", position=1), "tag": "string"},
        outputs=[
            Output(
                name="summary",
                glob="*.summary.json",
                lfn="/ctao/dl1/$(inputs.tag)/$(inputs.infile.nameroot).summary.json",
                data_level="DL1",
                meta={"campaign": "test"},
            )
        ],
        arguments=[{"value": "$(runtime.outdir)"}],
        software_version="dpps-samples 1.0",
    )
    merge = parsed.step("merge").tool
    wf = Workflow("night", inputs={"files": "File[]", "tag": "string"})
    step = wf.step("summarize", summarize, infile=wf.input("files"), tag="tag", scatter=["infile"])
    last = wf.step("merge", merge, parts=step.out("summary"), tag="tag")
    wf.output("merged", last.out("merged"))
    assert wf.build() == parsed


@pytest.mark.verifies_usecase("UC-020-1.1")
def test_a_job_uploads_a_file_and_another_retrieves_it_by_lfn(
    wms: WMS, wms_archive: Archive, tmp_path: Path
) -> None:
    producer = {
        "name": "producer",
        "command": [PY, "-c", "import os; open('made.bin','wb').write(os.urandom(4096))"],
        "outputs": [
            {"name": "made", "glob": "made.bin", "lfn": "/ctao/user/made.bin", "rse": "DESY"}
        ],
    }
    job1 = wms.submit(write(tmp_path / "producer.yaml", _yaml(producer)))
    assert wms.wait(job1, timeout_s=TIMEOUT_S) == "DONE", wms.job(job1.id)
    consumer = {
        "name": "consumer",
        "command": [
            PY,
            "-c",
            "import shutil,sys; shutil.copy(sys.argv[1], 'back.bin')",
            "$(inputs.data.path)",
        ],
        "inputs": {"data": "lfn:/ctao/user/made.bin"},
        "outputs": [{"glob": "back.bin", "lfn": "/ctao/user/back.bin"}],
    }
    job2 = wms.submit(write(tmp_path / "consumer.yaml", _yaml(consumer)))
    assert wms.wait(job2, timeout_s=TIMEOUT_S) == "DONE", wms.job(job2.id)
    made, back = wms_archive.show("/ctao/user/made.bin"), wms_archive.show("/ctao/user/back.bin")
    assert made.file.bytes == 4096
    assert [r.rse for r in made.replicas] == ["DESY"]
    assert (made.file.adler32, made.file.blake3) == (back.file.adler32, back.file.blake3)
    assert wms.job(job2.id).run_site == "DESY"  # moved to the data
    assert back.replicas[0].site == "DESY"  # and its output stayed there


def test_workflow_input_errors_are_clear_and_create_nothing(
    wms: WMS, wms_archive: Archive, scatter_cwl: Path
) -> None:
    from dpps.core.errors import InvalidInput, NotFound

    with pytest.raises(NotFound, match="no such DID"):
        wms.submit(scatter_cwl, {"files": ["lfn:/ctao/nothing.fits"], "tag": "x"})
    with pytest.raises(InvalidInput, match="not an archive file"):
        wms.submit(scatter_cwl, {"files": ["/etc/passwd"], "tag": "x"})
    with pytest.raises(InvalidInput, match="unknown input"):
        wms.submit(scatter_cwl, {"files": [], "tag": "x", "bogus": 1})
    with pytest.raises(InvalidInput, match="expected string"):
        wms.submit(scatter_cwl, {"files": [], "tag": 3})
    with pytest.raises(InvalidInput, match="unknown activity"):
        wms.submit(scatter_cwl, {"files": [], "tag": "x"}, opts=SubmitOptions(activity="fun"))
    assert wms.list_jobs() == []


def test_empty_scatter_finishes_without_jobs(wms: WMS, scatter_cwl: Path) -> None:
    sub = wms.submit(scatter_cwl, {"files": [], "tag": "empty"})
    # The summarize step has nothing to do; merge gets an empty list and still runs.
    assert wms.wait(sub, timeout_s=TIMEOUT_S) == "DONE", wms.workflow(sub.id)
    assert wms.workflow(sub.id).steps["summarize"] == {"state": "DONE", "jobs": 0}


def _yaml(data: object) -> str:
    import yaml

    return yaml.safe_dump(data)
