"""Transformations: new files become tasks once each, chains, grouping, retries, problematic."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from dpps.bdms.archive import Archive
from dpps.catalog.models_wms import JobRow, TransformationFileRow
from dpps.core.errors import Conflict, InvalidInput, NotFound
from dpps.wms.api import WMS
from dpps.wms.builder import Output, tool_command
from dpps.wms.spec import InputPort
from dpps.wms.types import SubmitOptions
from tests.wms.conftest import PY, TIMEOUT_S, ingest

#: Copies its input to <nameroot>.<suffix>: a stand-in for a calibration step.
COPY = [PY, "-c", "import shutil,sys; shutil.copy(sys.argv[1], sys.argv[2])"]


def _copy_tool(name: str, suffix: str, level: str) -> object:
    return tool_command(
        name,
        [*COPY, "$(inputs.infile.path)", f"$(inputs.infile.nameroot).{suffix}"],
        inputs={"infile": "File"},
        outputs=[
            Output(
                name="out",
                glob=f"*.{suffix}",
                data_level=level,
                lfn=f"/ctao/{level.lower()}/$(inputs.infile.nameroot).{suffix}",
            )
        ],
    )


def _drain(wms: WMS, done: object) -> None:
    wms.run_until(done, with_transformations=True, timeout_s=TIMEOUT_S)  # type: ignore[arg-type]


def _files(wms: WMS, name: str) -> dict[str, int]:
    return wms.transformation(name).files


@pytest.mark.verifies_usecase("UC-100-1.2")
@pytest.mark.verifies_usecase("UC-100-1.3")
def test_a_production_keeps_processing_new_files_once_each_and_feeds_the_next(
    wms: WMS, wms_archive: Archive
) -> None:
    calib = wms.add_transformation(
        "calib",
        _copy_tool("calib", "dl1", "DL1"),
        filter_text="data_level=DL0 and obs_id=5",
        opts=SubmitOptions(activity="cat-b", priority=5),
    )
    assert calib.output_query == 'meta.wms_transformation="calib"'
    wms.add_transformation("reco", _copy_tool("reco", "dl2", "DL2"), input_from="calib")
    for tel in (1, 2, 3):
        ingest(
            wms_archive, "PIC", f"/ctao/dl0/obs_5/tel_{tel}.fits", obs_id=5, tel_id=tel, seed=tel
        )
    ingest(wms_archive, "PIC", "/ctao/dl0/obs_6/tel_1.fits", obs_id=6, seed=9)  # not matched

    _drain(wms, lambda: _files(wms, "reco")["PROCESSED"] == 3)
    assert _files(wms, "calib") == {"NEW": 0, "ASSIGNED": 0, "PROCESSED": 3, "PROBLEMATIC": 0}

    # More data arrives: only the new files are processed, through both steps.
    for tel in (4, 5):
        ingest(
            wms_archive, "DESY", f"/ctao/dl0/obs_5/tel_{tel}.fits", obs_id=5, tel_id=tel, seed=tel
        )
    _drain(wms, lambda: _files(wms, "reco")["PROCESSED"] == 5)
    assert _files(wms, "calib")["PROCESSED"] == 5
    with wms_archive.sessions() as s:
        assert s.scalar(select(func.count()).select_from(JobRow)) == 10
        booked = s.scalar(select(func.count()).select_from(TransformationFileRow))
    assert booked == 10  # 5 DL0 files for calib, their 5 DL1 outputs for reco
    dl2 = wms_archive.list_files("data_level=DL2")
    assert sorted(f.name for f in dl2) == [f"/ctao/dl2/tel_{t}.dl2" for t in range(1, 6)]
    assert all(f.meta["wms_transformation"] == "reco" for f in dl2)
    assert {f.meta["provenance"]["transformation"] for f in dl2} == {"reco"}
    assert {j.activity for j in wms.list_jobs() if j.name.startswith("calib")} == {"cat-b"}
    # The DESY files were processed at DESY (jobs go to the data).
    sites = {wms.job(j.id).inputs[0]: j.run_site for j in wms.list_jobs()}
    assert sites["ctao:/ctao/dl0/obs_5/tel_4.fits"] == "DESY"
    assert sites["ctao:/ctao/dl0/obs_5/tel_1.fits"] == "PIC"
    # A second round books nothing new.
    _drain(wms, lambda: True)
    with wms_archive.sessions() as s:
        assert s.scalar(select(func.count()).select_from(TransformationFileRow)) == 10


def test_grouping_by_n_files_and_by_observation(wms: WMS, wms_archive: Archive) -> None:
    cat = tool_command(
        "cat",
        ["cat", "$(inputs.files)"],
        inputs={"files": InputPort(name="files", type="File[]")},
        outputs=[
            Output(name="out", glob="all.bin", lfn="/ctao/dl3/$(job.id).bin", data_level="DL3")
        ],
        stdout="all.bin",
    )
    # Their FITS outputs keep the obs_id of their inputs: the filters name the data level too.
    wms.add_transformation(
        "pairs", cat, filter_text="obs_id=7 and data_level=DL0", grouping="files:2"
    )
    wms.add_transformation(
        "per_obs", cat, filter_text="obs_id in (7,8) and data_level=DL0", grouping="by:obs_id"
    )
    for i in range(5):
        ingest(wms_archive, "PIC", f"/ctao/dl0/g/obs7_{i}.fits", obs_id=7, tel_id=i + 1, seed=i)
    ingest(wms_archive, "PIC", "/ctao/dl0/g/obs8_0.fits", obs_id=8, seed=20)
    _drain(
        wms,
        lambda: (
            _files(wms, "pairs")["PROCESSED"] == 4 and _files(wms, "per_obs")["PROCESSED"] == 6
        ),
    )
    assert _files(wms, "pairs")["NEW"] == 1  # the fifth file waits for a partner
    tasks = {j.name: len(wms.job(j.id).inputs) for j in wms.list_jobs()}
    assert sorted(n for name, n in tasks.items() if name.startswith("pairs")) == [2, 2]
    assert sorted(n for name, n in tasks.items() if name.startswith("per_obs")) == [1, 5]


def test_a_task_gets_its_files_in_name_order_whatever_their_registration_order(
    wms: WMS, wms_archive: Archive, tmp_path: Path
) -> None:
    """Files are booked in the order they were registered, which follows the site's clock; a
    tool reading its inputs in turn (here cat) must see the same order on every run."""
    cat = tool_command(
        "cat",
        ["cat", "$(inputs.files)"],
        inputs={"files": InputPort(name="files", type="File[]")},
        outputs=[Output(name="out", glob="all.bin", lfn="/ctao/dl3/all.bin", data_level="DL3")],
        stdout="all.bin",
    )
    wms.add_transformation(
        "block", cat, filter_text="obs_id=9 and data_level=DL0", grouping="by:obs_id"
    )
    names = ["tel_3.fits", "tel_2.fits", "tel_1.fits"]  # registered in reverse name order
    for i, name in enumerate(names):
        ingest(wms_archive, "PIC", f"/ctao/dl0/obs9/{name}", obs_id=9, tel_id=3 - i, seed=i)
    _drain(wms, lambda: _files(wms, "block")["PROCESSED"] == 3)

    got = wms_archive.get(["/ctao/dl3/all.bin"], tmp_path / "all.bin")
    assert not got.failed, got.failed
    incoming = wms_archive.config.workspace / "incoming"
    in_name_order = [incoming / f"{2 - i}_9_{i + 1}" / "p.fits" for i in range(3)]
    expected = b"".join(p.read_bytes() for p in in_name_order)
    assert (tmp_path / "all.bin").read_bytes() == expected


@pytest.mark.verifies_usecase("UC-100-1.4")
def test_failed_tasks_are_retried_then_their_files_problematic_and_recoverable(
    wms: WMS, wms_archive: Archive, tmp_path: Path
) -> None:
    switch = tmp_path / "fixed"
    flaky = tool_command(
        "flaky",
        [
            PY,
            "-c",
            "import os,sys,shutil; os.path.exists(sys.argv[3]) or "
            "sys.exit('calibration constants missing'); "
            "shutil.copy(sys.argv[1], sys.argv[2])",
            "$(inputs.infile.path)",
            "out.fits",
            str(switch),
        ],
        inputs={"infile": "File"},
        outputs=[
            Output(name="out", glob="out.fits", lfn="/ctao/dl1/fix/$(inputs.infile.basename)")
        ],
    )
    wms.add_transformation(
        "fragile",
        flaky,
        filter_text="obs_id=9",
        max_task_attempts=2,
        opts=SubmitOptions(max_attempts=1),
    )
    ingest(wms_archive, "PIC", "/ctao/dl0/obs_9/a.fits", obs_id=9)
    _drain(wms, lambda: _files(wms, "fragile")["PROBLEMATIC"] == 1)
    info = wms.transformation("fragile")
    assert info.tasks == {"FAILED": 2}
    assert [p.did for p in info.problematic] == ["ctao:/ctao/dl0/obs_9/a.fits"]
    assert "calibration constants missing" in wms.logs(wms.list_jobs()[0].id)
    assert "FAILED after 2 attempt(s)" in (info.problematic[0].reason or "")
    events = wms_archive.show("/ctao/dl0/obs_9/a.fits").events
    assert any(e.action == "wms.problematic" for e in events)
    assert wms_archive.list_files("name like /ctao/dl1/fix/%") == []  # nothing registered

    switch.write_text("ok")  # an operator fixes the cause, then sends the files again
    assert wms.retry_problematic("fragile") == 1
    _drain(wms, lambda: _files(wms, "fragile")["PROCESSED"] == 1)
    assert [f.name for f in wms_archive.list_files("name like /ctao/dl1/fix/%")] == [
        "/ctao/dl1/fix/a.fits"
    ]


def test_transformation_definition_errors(wms: WMS) -> None:
    tool = _copy_tool("t", "x", "DL1")
    with pytest.raises(InvalidInput, match="syntax error"):
        wms.add_transformation("bad", tool, filter_text="obs_id >>= 3")
    with pytest.raises(InvalidInput, match="invalid grouping"):
        wms.add_transformation("bad", tool, filter_text="obs_id=3", grouping="pairs")
    with pytest.raises(InvalidInput, match="must be File\\[\\]"):
        wms.add_transformation("bad", tool, filter_text="obs_id=3", grouping="files:3")
    with pytest.raises(NotFound, match="no transformation named 'nope'"):
        wms.add_transformation("bad", tool, input_from="nope")
    with pytest.raises(InvalidInput, match="needs a filter"):
        wms.add_transformation("bad", tool)
    wms.add_transformation("good", tool, filter_text="obs_id=3")
    with pytest.raises(Conflict, match="exists already"):
        wms.add_transformation("good", tool, filter_text="obs_id=4")
    assert [t.name for t in wms.transformations()] == ["good"]
