"""The workflow of one observation block: calibration -> DL1 -> DL2 -> DL3, and quality.

``build_block_workflow`` is public because the same chain serves the next-day processing
(category B, a WMS transformation per block) and reprocessing campaigns (category C, a new
software version): only the category, the software version and where the products go differ.

Inputs of the workflow: ``dl0`` (every DL0 file of the block: the steps pick theirs by name),
``models`` (DataPipe's reconstruction models) and ``irf`` (a ``datapipe-irf`` output). Steps:

========== ======================== ===================================================
step       tool                     reads
========== ======================== ===================================================
camera     calibpipe-camera         the CAL stream of every telescope
atmosphere calibpipe-atmosphere     the weather table
dl1        datapipe-dl1             the SHOWER stream, a pointing table, ``camera``
dl2        datapipe-dl2             ``dl1``, ``models`` (target, category)
dl3        datapipe-dl3             ``dl2``, ``irf`` (cuts come from the IRF)
quality    qualpipe-report          ``camera``, ``dl1``, ``dl2``
========== ======================== ===================================================

Outputs go to ``<lfn_prefix>/<category>/<software version>/<kind>/<file name>`` (file names
carry the observation id), as new versions if the same LFN exists with other bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dpps.core.version import __version__
from dpps.pipelines.night.steps import STEP_ENTRY
from dpps.wms.builder import Workflow, tool_python
from dpps.wms.spec import InputPort, OutputPort, Tool, WorkflowSpec

SOFTWARE_VERSION = f"dpps {__version__}"
_SCALARS = ("tool", "config", "select", "rename")
#: QualPipe's product types (``qualpipe.tool``): the HTML page has no header to read it from.
REPORT = "quality report"
PAGE = "quality report page"


@dataclass(frozen=True)
class Target:
    """What the block observed (DL2's OBJECT, RA_OBJ, DEC_OBJ)."""

    name: str = "Crab"
    ra_deg: float = 83.6333
    dec_deg: float = 22.0145


def version_slug(software_version: str) -> str:
    """A software version as one LFN path component (``dpps 0.1.0`` -> ``dpps-0.1.0``)."""
    slug = re.sub(r"[^A-Za-z0-9._+-]+", "-", software_version.strip()).strip("-")
    if not slug:
        raise ValueError("software_version must not be empty")
    return slug


def _tool(
    name: str,
    files: Mapping[str, str],
    outputs: list[OutputPort],
    software_version: str,
) -> Tool:
    ports: dict[str, str | InputPort] = dict(files)
    ports.update({s: "string" for s in _SCALARS})
    return tool_python(
        name, STEP_ENTRY, inputs=ports, outputs=outputs, software_version=software_version
    )


def _params(
    tool: str,
    config: Mapping[str, Any],
    select: Mapping[str, str] | None = None,
    rename: list[str] | None = None,
) -> dict[str, str]:
    return {
        "tool": tool,
        "config": json.dumps(dict(config), sort_keys=True),
        "select": json.dumps(dict(select or {}), sort_keys=True),
        "rename": json.dumps(rename or []),
    }


def build_block_workflow(
    obs_id: int | None = None,
    category: str = "B",
    software_version: str = SOFTWARE_VERSION,
    *,
    target: Target | None = None,
    lfn_prefix: str = "/ctao/proc",
    calibration_min_events: int = 15,
    policy: str | None = None,
) -> WorkflowSpec:
    """The block's workflow (inputs ``dl0: File[]``, ``models: File``, ``irf: File``).

    ``obs_id`` only names the workflow (a transformation's template serves every block);
    ``category`` is written into every product (``B`` next day, ``C`` reprocessing);
    ``policy`` names the replication policy each product gets when it is archived."""
    if category not in ("B", "C"):
        raise ValueError(f"category must be B or C (DL3 categories), not {category!r}")
    target = target or Target()
    base = f"{lfn_prefix.rstrip('/')}/{category}/{version_slug(software_version)}"
    meta = {"category": category}

    def out(
        name: str,
        glob: str,
        kind: str,
        level: str,
        array: bool = False,
        product_type: str | None = None,
    ) -> OutputPort:
        # A product whose file carries no header (QualPipe's HTML page) gets its product type
        # here, or nothing that looks for it by type (the dashboard's Quality page) finds it.
        lfn = f"{base}/{kind}/$(self.basename)"
        typed = meta | ({"product_type": product_type} if product_type else {})
        return OutputPort.model_validate(
            {
                "name": name,
                "glob": glob,
                "array": array,
                "lfn": lfn,
                "data_level": level,
                "meta": typed,
                "new_version": True,
                "policy": policy,
            }
        )

    sv = software_version
    name = f"night-block-{obs_id}" if obs_id is not None else "night-block"
    wf = Workflow(name, inputs={"dl0": "File[]", "models": "File", "irf": "File"})
    camera = wf.step(
        "camera",
        _tool(
            "camera",
            {"dl0": "File[]"},
            [out("camera", "*_CAMERA_CALIBRATION.fits", "cal", "CAL", array=True)],
            sv,
        ),
        dl0="dl0",
        defaults=_params(
            "calibpipe-camera",
            {"category": category, "min_events": calibration_min_events},
            {"dl0": "*_TEL_CAL_*"},
        ),
    )
    wf.step(
        "atmosphere",
        _tool(
            "atmosphere",
            {"weather": "File[]"},
            [out("atmosphere", "*_ATMOSPHERE_SELECTION.fits", "cal", "CAL")],
            sv,
        ),
        weather="dl0",
        defaults=_params(
            "calibpipe-atmosphere", {"category": category}, {"weather": "*_WEATHER.fits"}
        ),
    )
    dl1 = wf.step(
        "dl1",
        _tool(
            "dl1",
            {"dl0": "File[]", "pointing": "File[]", "calibration": "File[]"},
            [out("dl1", "*_dl1.h5", "dl1", "DL1")],
            sv,
        ),
        dl0="dl0",
        pointing="dl0",
        calibration=camera.out("camera"),
        defaults=_params(
            "datapipe-dl1",
            {"category": category},
            {"dl0": "*_TEL_SHOWER_*", "pointing": "*_POINTING.fits"},
        ),
    )
    dl2 = wf.step(
        "dl2",
        _tool(
            "dl2", {"dl1": "File", "models": "File"}, [out("dl2", "*_dl2.fits", "dl2", "DL2")], sv
        ),
        dl1=dl1.out("dl1"),
        models="models",
        defaults=_params(
            "datapipe-dl2",
            {
                "category": category,
                "target": {
                    "name": target.name,
                    "ra_deg": target.ra_deg,
                    "dec_deg": target.dec_deg,
                },
            },
        ),
    )
    dl3 = wf.step(
        "dl3",
        _tool(
            "dl3",
            {"dl2": "File", "irf": "File"},
            [
                out("events", "obs_*.events.fits", "dl3", "DL3"),
                out("irf", "obs_*.irf.fits", "dl3", "DL3"),
            ],
            sv,
        ),
        dl2=dl2.out("dl2"),
        irf="irf",
        defaults=_params("datapipe-dl3", {"category": category}),
    )
    reports = ["quality_report.json", "quality_report.html"]
    quality = wf.step(
        "quality",
        _tool(
            "quality",
            {"calibration": "File[]", "dl1": "File", "dl2": "File"},
            [
                out("report", "obs*_quality_report.json", "quality", "QUAL", product_type=REPORT),
                out("page", "obs*_quality_report.html", "quality", "QUAL", product_type=PAGE),
            ],
            sv,
        ),
        calibration=camera.out("camera"),
        dl1=dl1.out("dl1"),
        dl2=dl2.out("dl2"),
        defaults=_params("qualpipe-report", {"category": category}, rename=reports),
    )
    wf.output("events", dl3.out("events"))
    wf.output("irf", dl3.out("irf"))
    wf.output("quality", quality.out("report"))
    return wf.build()
