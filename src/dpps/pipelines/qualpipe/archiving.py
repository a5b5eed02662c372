"""Archiving a quality report next to the product it judges.

The JSON report is not a FITS or HDF5 file, so the archive cannot read its metadata from a
header: this helper passes it explicitly (``data_level=QUAL``, ``product_type='quality
report'``, the observation and telescope, ``quality_passed`` and the DID it ``evaluates``),
gives it the product's LFN with a ``.quality.json`` suffix and puts it in the product's
dataset, so "the product and its report" is one query. A re-evaluation is a new version.
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dpps.core.errors import InvalidInput
from dpps.pipelines.calibpipe.lookup import ingest_version
from dpps.pipelines.qualpipe.report import DATA_TYPE

if TYPE_CHECKING:
    from dpps.bdms.archive import Archive
    from dpps.bdms.types import FileInfo

_SUFFIXES = (".fits.fz", ".fits.gz", ".fits", ".h5", ".hdf5", ".json")


def report_lfn(product_lfn: str, suffix: str = ".quality.json") -> str:
    """``/ctao/dl2/obs_1/events.fits`` -> ``/ctao/dl2/obs_1/events.quality.json``."""
    base = posixpath.basename(product_lfn)
    stem = next((base[: -len(s)] for s in _SUFFIXES if base.endswith(s)), base)
    return posixpath.join(posixpath.dirname(product_lfn), stem + suffix)


def read_report(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(
            f"{Path(path).name}: not a readable JSON quality report: {exc}"
        ) from None
    product = report.get("product") if isinstance(report, dict) else None
    if not isinstance(product, dict) or product.get("DATATYPE") != DATA_TYPE:
        raise InvalidInput(f"{Path(path).name}: not a QualPipe quality report")
    return dict(report)


def archive_report(
    archive: Archive,
    report_path: Path,
    rse: str,
    *,
    product: str,
    html_path: Path | None = None,
) -> list[FileInfo]:
    """Ingest the report (and its HTML page) beside ``product`` (a DID); returns what was
    registered, JSON first."""
    report = read_report(report_path)
    details = archive.show(product)  # NotFound if the product is not archived
    target = details.file
    head = report["product"]
    meta: dict[str, str] = {
        "data_level": "QUAL",
        "product_type": DATA_TYPE,
        "quality_passed": "true" if report.get("passed") else "false",
        "evaluates": target.did,
    }
    for key, column in (("OBS_ID", "obs_id"), ("TEL_ID", "tel_id")):
        value = head.get(key, getattr(target, column))
        if value is not None:
            meta[column] = str(value)
    if head.get("DATACAT"):
        meta["category"] = str(head["DATACAT"])
    dataset = details.parents[0].split("@")[0] if details.parents else None
    items = [(Path(report_path), report_lfn(target.name), meta)]
    if html_path is not None:
        page_meta = {**meta, "product_type": "quality report page"}
        items.append((Path(html_path), report_lfn(target.name, ".quality.html"), page_meta))
    return [
        ingest_version(
            archive, path, rse, lfn=lfn, meta=given, scope=target.scope, dataset=dataset
        )
        for path, lfn, given in items
    ]
