"""Single jobs on the local executor: JOB.yaml, Python tools, priorities, kill, retry, costs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from dpps.bdms.archive import Archive
from dpps.core.errors import Conflict, InvalidInput, NotFound
from dpps.wms.api import WMS
from dpps.wms.states import JobState
from dpps.wms.types import SubmitOptions
from tests.wms.conftest import PY, TIMEOUT_S, ingest, make_workspace, write


@pytest.mark.verifies_usecase("UC-100-2")
def test_single_job_goes_through_its_states_and_registers_outputs(
    wms: WMS, wms_archive: Archive, tmp_path: Path
) -> None:
    lfn = ingest(wms_archive, "PIC", "/ctao/dl0/obs_1/tel_1.fits")
    job = write(
        tmp_path / "job.yaml",
        f"""\
        name: summary
        tool: dpps.wms.samples:summarize
        inputs: {{infile: "{lfn}"}}
        parameters: {{label: night-1}}
        software_version: "samples 2.0"
        activity: cat-b
        outputs:
          - name: summary
            glob: "*.summary.json"
            lfn: /ctao/dl1/obs_1/$(inputs.infile.nameroot).json
            data_level: DL1
            meta: {{pipeline: samples}}
    """,
    )
    sub = wms.submit(job)
    assert sub.kind == "job"
    assert wms.job(sub.id).state == JobState.SUBMITTED
    assert wms.wait(sub, timeout_s=TIMEOUT_S) == "DONE", wms.job(sub.id)
    info = wms.job(sub.id)
    states = [e.state for e in info.events]
    assert states[0] == "SUBMITTED"
    assert states[-3:] == ["MATCHED", "RUNNING", "DONE"]
    assert set(states) == {"SUBMITTED", "MATCHED", "RUNNING", "DONE"}
    assert info.outputs == ["ctao:/ctao/dl1/obs_1/tel_1.json"]
    assert info.activity == "cat-b"
    assert info.software_version == "samples 2.0"
    product = wms_archive.show("/ctao/dl1/obs_1/tel_1.json")
    assert product.file.data_level == "DL1"
    assert product.file.meta["pipeline"] == "samples"
    prov = product.file.meta["provenance"]
    assert prov["parameters"] == {"label": "night-1"}
    assert prov["tool"] == "dpps.wms.samples:summarize"
    assert prov["job_id"] == sub.id
    out = tmp_path / "back"
    out.mkdir()
    wms_archive.get(["/ctao/dl1/obs_1/tel_1.json"], out)
    summary = json.loads((out / "tel_1.json").read_text())
    assert summary["format"] == "fits"
    assert summary["label"] == "night-1"
    # Accounting: per site, activity and software version.
    rows = wms.accounting()
    assert [
        (r.key["site"], r.key["activity"], r.key["software_version"], r.done) for r in rows
    ] == [("PIC", "cat-b", "samples 2.0", 1)]
    assert rows[0].cpu_hours > 0
    assert rows[0].max_rss_mb > 0
    assert rows[0].bytes_read == info.bytes_read > 0
    assert rows[0].bytes_written == product.file.bytes


def test_higher_activity_and_priority_run_first(tmp_path: Path, catalog_url: str) -> None:
    archive = make_workspace(tmp_path / "ws", catalog_url, local_workers=1)
    wms = WMS(archive)
    order = tmp_path / "order.txt"

    def submit(name: str, activity: str, priority: int) -> int:
        job = {"name": name, "command": [PY, "-c", f"open({str(order)!r},'a').write('{name} ')"]}
        path = write(tmp_path / f"{name}.yaml", json.dumps(job))
        return wms.submit(path, opts=SubmitOptions(activity=activity, priority=priority)).id

    ids = [
        submit("sim", "simulation", 9),
        submit("reproc", "reprocessing", 3),
        submit("catb-low", "cat-b", 1),
        submit("catb-high", "cat-b", 7),
    ]
    wms.run_until(lambda: all(wms.job(i).state == "DONE" for i in ids), timeout_s=TIMEOUT_S)
    assert order.read_text().split() == ["catb-high", "catb-low", "reproc", "sim"]
    archive.close()


def test_kill_stops_the_tool_and_registers_nothing(
    wms: WMS, wms_archive: Archive, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    sleeper = (
        f"import os,time; open('out.txt','w').write('x'); open({str(pidfile)!r},'w')"
        ".write(str(os.getpid())); time.sleep(600)"
    )
    job = write(
        tmp_path / "job.yaml",
        f"""\
        name: sleeper
        command: {json.dumps([PY, "-c", sleeper])}
        outputs: [{{glob: out.txt, lfn: /ctao/user/never.txt}}]
    """,
    )
    sub = wms.submit(job)
    manager = wms.manager()
    try:
        wms.run_until(pidfile.exists, manager=manager, timeout_s=TIMEOUT_S)
        assert wms.job(sub.id).state == "RUNNING"
        wms.kill(sub.id, "wrong calibration")
        with pytest.raises(Conflict, match="KILLED already"):
            wms.kill(sub.id)
        # The worker notices at its next heartbeat, stops the tool and records its logs.
        wms.run_until(lambda: wms.job(sub.id).wall_s > 0, manager=manager, timeout_s=TIMEOUT_S)
    finally:
        manager.close()
    info = wms.job(sub.id)
    assert info.state == "KILLED"
    assert info.reason == "wrong calibration"
    assert info.outputs == []
    assert wms_archive.list_files("name like /ctao/user/%") == []
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)

    wms.retry(sub.id)
    assert wms.job(sub.id).state == "SUBMITTED"
    assert wms.job(sub.id).attempts == 0
    with pytest.raises(Conflict, match="only FAILED or KILLED"):
        wms.retry(sub.id)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_bad_job_files_are_refused_with_clear_errors(wms: WMS, tmp_path: Path) -> None:
    cases = {
        "unknown key": ({"command": ["true"], "comand": 1}, InvalidInput, "comand"),
        "no command": ({"name": "x"}, InvalidInput, "command line or a python tool"),
        "javascript": ({"command": ["echo", "${return 1}"]}, InvalidInput, "JavaScript"),
        "bad reference": (
            {"command": ["cat", "$(inputs.nope.path)"]},
            InvalidInput,
            "names no input",
        ),
        "missing did": (
            {"command": ["cat", "$(inputs.a.path)"], "inputs": {"a": "lfn:/ctao/x"}},
            NotFound,
            "no such DID",
        ),
        "local path": (
            {"command": ["true"], "inputs": {"a": {"class": "File", "path": "/x"}}},
            InvalidInput,
            "not an archive file",
        ),
        "unknown site": ({"command": ["true"], "site": "MOON"}, InvalidInput, "unknown site"),
        "bad output": (
            {"command": ["true"], "outputs": [{"glob": "x", "rse": 3}]},
            InvalidInput,
            "outputs",
        ),
    }
    for name, (data, error, match) in cases.items():
        path = write(tmp_path / f"{name.replace(' ', '_')}.yaml", json.dumps(data))
        with pytest.raises(error, match=match):
            wms.submit(path)
    with pytest.raises(NotFound, match="no such job file"):
        wms.submit(tmp_path / "absent.yaml")
    broken = write(tmp_path / "broken.yaml", "command: [unclosed\n")
    with pytest.raises(InvalidInput, match="not valid YAML"):
        wms.submit(broken)
    assert wms.list_jobs() == []
