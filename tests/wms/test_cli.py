"""``dpps wms``: submit --wait, status, list, logs, kill, retry, accounting, transformations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dpps.bdms.archive import Archive
from dpps.cli.main import app
from tests.wms.conftest import PY, ingest, write

runner = CliRunner()


def _run(ws: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["-w", str(ws), "wms", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.verifies_usecase("UC-100-2")
def test_submit_wait_status_list_logs_accounting(
    wms_archive: Archive, tmp_path: Path, scatter_cwl: Path
) -> None:
    ws = wms_archive.config.workspace
    lfn = ingest(wms_archive, "PIC", "/ctao/dl0/obs_1/tel_1.fits")
    inputs = write(tmp_path / "inputs.yaml", f"files: [{lfn}]\ntag: cli\n")
    code, out, err = _run(
        ws,
        "submit",
        str(scatter_cwl),
        "--inputs",
        str(inputs),
        "--wait",
        "--activity",
        "cat-b",
        "--json",
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["kind"] == "workflow"
    assert result["state"] == "DONE"
    assert result["detail"]["outputs"] == {"merged": "ctao:/ctao/dl2/cli/merged.json"}
    wf_id = result["id"]

    code, out, _ = _run(ws, "status", str(wf_id), "--workflow")
    assert code == 0
    assert "DONE" in out
    assert "step summarize: DONE (1 jobs)" in out
    code, out, _ = _run(ws, "list", "--json", "--workflow", str(wf_id))
    jobs = json.loads(out)["items"]
    assert sorted(j["name"] for j in jobs) == ["night.merge", "night.summarize[0]"]
    job_id = next(j["id"] for j in jobs if j["name"] == "night.merge")
    code, out, _ = _run(ws, "status", str(job_id), "--json")
    status = json.loads(out)
    assert [e["state"] for e in status["events"]][-3:] == ["MATCHED", "RUNNING", "DONE"]
    assert status["outputs"] == ["ctao:/ctao/dl2/cli/merged.json"]
    code, out, _ = _run(ws, "status", str(job_id))
    assert code == 0
    assert "history" in out
    assert "output ctao:/ctao/dl2/cli/merged.json" in out
    code, out, _ = _run(ws, "logs", str(job_id), "--json")
    assert code == 0
    assert "--- stdout ---" in json.loads(out)["log"]
    code, out, _ = _run(ws, "accounting", "--by", "activity,site", "--json")
    rows = json.loads(out)
    assert [(r["key"]["activity"], r["key"]["site"], r["done"]) for r in rows] == [
        ("cat-b", "PIC", 2)
    ]
    code, out, _ = _run(ws, "accounting", "--by", "site")
    assert code == 0
    assert "PIC" in out


def test_failed_job_exit_code_kill_retry_and_errors(wms_archive: Archive, tmp_path: Path) -> None:
    ws = wms_archive.config.workspace
    bad = write(
        tmp_path / "bad.yaml",
        f"""\
        name: bad
        command: ["{PY}", "-c", "import sys; sys.exit('boom')"]
        max_attempts: 1
    """,
    )
    code, out, err = _run(ws, "submit", str(bad), "--wait")
    assert code == 10, (out, err)
    assert "FAILED" in out
    code, out, _ = _run(ws, "list", "--state", "failed", "--json")
    (job,) = json.loads(out)["items"]
    assert job["reason"] == "tool failed: exit code 1"
    code, out, _ = _run(ws, "logs", str(job["id"]))
    assert "boom" in out
    code, out, _ = _run(ws, "retry", str(job["id"]))
    assert code == 0
    assert "1 job(s) resubmitted" in out
    code, out, _ = _run(ws, "kill", str(job["id"]), "--reason", "not needed")
    assert code == 0
    code, _out, err = _run(ws, "kill", str(job["id"]))
    assert code == 6
    assert "KILLED already" in err
    # Errors: one line and the documented exit code.
    assert _run(ws, "status", "999")[0] == 5
    assert _run(ws, "submit", str(tmp_path / "none.yaml"))[0] == 5
    code, _out, err = _run(ws, "submit", str(write(tmp_path / "x.yaml", "comand: [true]\n")))
    assert code == 3
    assert "comand" in err
    assert len(err.strip().splitlines()) == 1
    assert _run(ws, "list", "--state", "SLEEPING")[0] == 3
    assert _run(ws, "accounting", "--by", "colour")[0] == 3
    assert _run(ws, "daemon", "wms-nothing")[0] == 5


@pytest.mark.verifies_usecase("UC-100-1.2")
def test_transformation_commands(wms_archive: Archive, tmp_path: Path) -> None:
    ws = wms_archive.config.workspace
    tool = write(
        tmp_path / "copy.cwl",
        """\
        cwlVersion: v1.2
        class: CommandLineTool
        baseCommand: ["{PY}", "-c", "import shutil,sys; shutil.copy(sys.argv[1], 'c.fits')"]
        inputs:
          raw:
            type: File
            inputBinding: {position: 1}
        outputs:
          copy:
            type: File
            outputBinding: {glob: c.fits}
    """,
    )
    code, out, err = _run(
        ws,
        "transformation",
        "add",
        "calib",
        str(tool),
        "--filter",
        "data_level=DL0",
        "--activity",
        "cat-b",
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["input_port"] == "raw"
    ingest(wms_archive, "PIC", "/ctao/dl0/t/a.fits")
    code, out, err = _run(ws, "daemon", "wms-transformer", "--once")
    assert code == 0, err
    code, out, _ = _run(ws, "transformation", "status", "calib", "--json")
    info = json.loads(out)
    assert info["files"]["ASSIGNED"] == 1
    assert info["tasks"] == {"RUNNING": 1}
    code, out, _ = _run(ws, "transformation", "list")
    assert code == 0
    assert "calib" in out
    assert "ASSIGNED=1" in out
    assert _run(ws, "transformation", "pause", "calib")[0] == 0
    code, out, _ = _run(ws, "transformation", "list", "--json")
    assert json.loads(out)["items"][0]["state"] == "PAUSED"
    assert _run(ws, "transformation", "resume", "calib")[0] == 0
    code, _out, err = _run(ws, "transformation", "add", "calib", str(tool), "--filter", "x=1")
    assert code == 3
    assert "unknown field" in err
    code, _out, err = _run(ws, "transformation", "add", "calib", str(tool), "--filter", "obs_id=1")
    assert code == 6
    assert "exists already" in err
    assert _run(ws, "transformation", "status", "nope")[0] == 5
