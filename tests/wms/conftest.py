"""WMS fixtures: a workspace with short leases, archive files at two sites, real CWL tools."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dpps.bdms.archive import Archive
from dpps.core.workspace import CONFIG_NAME
from dpps.wms.api import WMS
from tests.bdms.helpers import make_fits, make_hdf5

PY = sys.executable
#: Generous: the machine is shared; tests wait on state, never on time.
TIMEOUT_S = 240.0


def make_workspace(directory: Path, catalog_url: str, **wms: object) -> Archive:
    """A workspace whose WMS settings are overridden (short leases for the fault tests)."""
    Archive.init(directory, catalog_url=catalog_url).close()
    path = directory / CONFIG_NAME
    data = yaml.safe_load(path.read_text())
    data["wms"] = {"lease_s": 8.0, "local_workers": 2, **wms}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return Archive.open(directory)


@pytest.fixture
def wms_archive(tmp_path: Path, catalog_url: str) -> Iterator[Archive]:
    archive = make_workspace(tmp_path / "ws", catalog_url)
    try:
        yield archive
    finally:
        archive.close()


@pytest.fixture
def wms(wms_archive: Archive) -> WMS:
    return WMS(wms_archive)


def ingest(
    archive: Archive,
    rse: str,
    lfn: str,
    *,
    obs_id: int = 1,
    tel_id: int = 1,
    seed: int = 0,
    hdf5: bool = False,
) -> str:
    """A real FITS (or HDF5) product registered on ``rse``; returns the ``lfn:`` location."""
    src = archive.config.workspace / "incoming" / f"{seed}_{obs_id}_{tel_id}"
    src.mkdir(parents=True, exist_ok=True)
    if hdf5:
        path = make_hdf5(src, "p.h5", obs_id=obs_id, tel_id=tel_id, seed=seed)
    else:
        path = make_fits(src, "p.fits", obs_id=obs_id, tel_id=tel_id, seed=seed)
    report = archive.ingest([path], rse, lfn=lfn)
    assert not report.failed, report.failed
    return f"lfn:{lfn}"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).replace("{PY}", PY))
    return path


#: Scatter a FITS/HDF5 summary over archive files, then merge the summaries (CWL v1.2).
SCATTER_CWL = """\
    cwlVersion: v1.2
    class: Workflow
    $namespaces:
      dpps: https://ctao.org/dpps/cwl#
    requirements:
      ScatterFeatureRequirement: {}
    inputs:
      files: File[]
      tag: string
    outputs:
      merged:
        type: File
        outputSource: merge/merged
    steps:
      summarize:
        run: summarize.cwl
        in:
          infile: files
          tag: tag
        scatter: infile
        out: [summary]
      merge:
        run: merge.cwl
        in:
          parts: summarize/summary
          tag: tag
        out: [merged]
"""

SUMMARIZE_CWL = """\
    cwlVersion: v1.2
    class: CommandLineTool
    $namespaces:
      dpps: https://ctao.org/dpps/cwl#
    baseCommand: ["{PY}", -m, dpps.wms.samples, summarize]
    arguments: [$(runtime.outdir)]
    hints:
      SoftwareRequirement:
        packages: [{package: dpps-samples, version: ["1.0"]}]
    inputs:
      infile:
        type: File
        inputBinding: {position: 1}
      tag: string
    outputs:
      summary:
        type: File
        outputBinding: {glob: "*.summary.json"}
        dpps:lfn: /ctao/dl1/$(inputs.tag)/$(inputs.infile.nameroot).summary.json
        dpps:data_level: DL1
        dpps:meta: {campaign: test}
"""

MERGE_CWL = """\
    cwlVersion: v1.2
    class: CommandLineTool
    $namespaces:
      dpps: https://ctao.org/dpps/cwl#
    baseCommand: ["{PY}", -m, dpps.wms.samples, merge, merged.json]
    inputs:
      parts:
        type: File[]
        inputBinding: {position: 1}
      tag: string
    outputs:
      merged:
        type: File
        outputBinding: {glob: merged.json}
        dpps:lfn: /ctao/dl2/$(inputs.tag)/merged.json
        dpps:data_level: DL2
"""


@pytest.fixture
def scatter_cwl(tmp_path: Path) -> Path:
    write(tmp_path / "cwl" / "summarize.cwl", SUMMARIZE_CWL)
    write(tmp_path / "cwl" / "merge.cwl", MERGE_CWL)
    return write(tmp_path / "cwl" / "night.cwl", SCATTER_CWL)
