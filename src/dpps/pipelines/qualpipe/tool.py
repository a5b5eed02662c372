"""``qualpipe-report``: evaluate data quality (UC-140-1.2.1).

Inputs (at least one): ``dl1`` (DataPipe image parameters, HDF5), ``dl2`` (events, FITS by the
DL2 contract), ``calibration`` (CalibPipe camera calibration products). Outputs: the JSON
report (``quality_report.json``, the verdict), the HTML page (``quality_report.html``, plots
inlined) and the plots as PNG files (``quality_plots/``).

A failing verdict is a result, not an error: the tool exits 0 and the report says
``"passed": false``. Errors (exit 1 or 2) are for inputs it cannot read and bad criteria.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from dpps.core.errors import ConfigError
from dpps.pipelines.calibpipe.product import CalibrationProduct
from dpps.pipelines.qualpipe.criteria import Criterion, evaluate, load_criteria
from dpps.pipelines.qualpipe.metrics import (
    MetricValue,
    calibration_metrics,
    dl1_metrics,
    dl2_metrics,
)
from dpps.pipelines.qualpipe.readers import (
    DL1Images,
    DL2Events,
    merge_dl1,
    merge_dl2,
    read_calibrations,
    read_dl1,
    read_dl2,
)
from dpps.pipelines.qualpipe.report import DATA_TYPE, build_report, write_html, write_json
from dpps.pipelines.tool import Tool, ToolConfig, register_tool

REPORT_JSON = "quality_report.json"
REPORT_HTML = "quality_report.html"
PLOT_DIR = "quality_plots"
INPUT_KINDS = ("dl1", "dl2", "calibration")


class QualityConfig(ToolConfig):
    """Options of the quality evaluation."""

    criteria_file: str | None = Field(
        None, description="YAML criteria file; default: the packaged default criteria"
    )
    criteria: list[Criterion] | None = Field(
        None, description="criteria given inline (instead of criteria_file)"
    )
    title: str = Field("Data quality report", description="title of the HTML report")
    plots: bool = Field(True, description="make PNG plots (and inline them in the HTML)")
    category: Literal["A", "B", "C", "SIM"] | None = Field(
        None, description="processing category written into the report's product header"
    )


def _identifiers(
    images: DL1Images | None, events: DL2Events | None, calibrations: list[CalibrationProduct]
) -> dict[str, int]:
    """OBS_ID / TEL_ID if every input agrees on a single value."""
    obs: set[int] = set()
    tels: set[int] = set()
    if images is not None:
        tels.update(int(t) for t in np.unique(images.tel_id))
        if images.obs_id is not None:
            obs.update(int(o) for o in np.unique(images.obs_id))
    if events is not None:
        if events.obs_id is not None:
            obs.update(int(o) for o in np.unique(events.obs_id))
        elif "OBS_ID" in events.header:
            obs.add(int(events.header["OBS_ID"]))
    for product in calibrations:
        tels.add(product.tel_id)
        if product.obs_id is not None:
            obs.add(product.obs_id)
    out: dict[str, int] = {}
    if len(obs) == 1:
        out["OBS_ID"] = obs.pop()
    if len(tels) == 1:
        out["TEL_ID"] = tels.pop()
    return out


@register_tool
class QualityTool(Tool[QualityConfig]):
    name: ClassVar[str] = "qualpipe-report"
    description: ClassVar[str] = (
        "Data-quality metrics with Range/Threshold criteria: JSON verdict, HTML report, PNG "
        "plots; inputs 'dl1', 'dl2', 'calibration' (at least one)"
    )
    config_class: ClassVar[type[ToolConfig]] = QualityConfig

    def setup(self) -> None:
        super().setup()
        cfg = self.config
        if cfg.criteria is not None and cfg.criteria_file is not None:
            raise ConfigError(f"{self.name}: give criteria or criteria_file, not both")
        if cfg.criteria is not None:
            self.criteria = list(cfg.criteria)
            self.criteria_source = "(inline configuration)"
        else:
            path = Path(cfg.criteria_file) if cfg.criteria_file else None
            self.criteria = load_criteria(path)
            self.criteria_source = str(path) if path else "(packaged defaults)"
        unknown = sorted(set(self.inputs) - set(INPUT_KINDS))
        if unknown:
            raise ConfigError(f"{self.name}: unknown inputs {unknown} (use {INPUT_KINDS})")
        if not any(self.inputs.get(k) for k in INPUT_KINDS):
            raise ConfigError(f"{self.name}: give at least one input of {INPUT_KINDS}")

    def start(self) -> None:
        cfg = self.config
        dl1_paths, dl2_paths = self.inputs.get("dl1", []), self.inputs.get("dl2", [])
        images = merge_dl1([read_dl1(p) for p in dl1_paths]) if dl1_paths else None
        events = merge_dl2([read_dl2(p) for p in dl2_paths]) if dl2_paths else None
        calibrations = read_calibrations(self.inputs.get("calibration", []))
        metrics: list[MetricValue] = []
        if calibrations:
            metrics += calibration_metrics(calibrations)
        if images is not None:
            metrics += dl1_metrics(images)
        if events is not None:
            metrics += dl2_metrics(events)
        checks = evaluate(self.criteria, metrics)
        pngs: dict[str, bytes] = {}
        if cfg.plots:  # matplotlib is imported only when plotting (seconds on a busy host)
            from dpps.pipelines.qualpipe.plots import all_plots

            pngs = all_plots(images, events, calibrations)
        report = build_report(
            title=cfg.title,
            checks=checks,
            metrics=metrics,
            inputs={k: [str(p) for p in v] for k, v in self.inputs.items() if v},
            identifiers=_identifiers(images, events, calibrations),
            criteria_source=self.criteria_source,
            category=cfg.category,
            plots=[f"{PLOT_DIR}/{name}.png" for name in pngs],
        )
        ids = {k.lower(): v for k, v in report["product"].items() if k in ("OBS_ID", "TEL_ID")}
        for name, png in pngs.items():
            path = self.output_dir / PLOT_DIR / f"{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png)
            self.add_output(path, "QUAL", "quality plot", **ids)
        html = write_html(self.output_dir / REPORT_HTML, report, pngs)
        self.add_output(html, "QUAL", "quality report page", **ids)
        # The verdict last: its presence means every other output is complete.
        path = write_json(self.output_dir / REPORT_JSON, report)
        self.add_output(path, "QUAL", DATA_TYPE, passed=report["passed"], **ids)
