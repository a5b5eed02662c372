"""Calibration products in the archive: archiving them as versions, finding the valid one.

A calibration product carries its validity in free metadata ``valid_from``/``valid_to`` (ISO
8601 UTC, copied by the archive from the ``VALID_FROM``/``VALID_TO`` header keywords at
ingest). DataPipe asks "which camera calibration of telescope N covers this observation?":
``find_valid`` narrows the candidates in the catalog (the filter compares the ISO texts, which
order like the times they spell) and ``select_valid`` picks one: the most recently started
validity that covers the whole observation, then the highest version. Re-running a calibration
archives a new version of the same LFN, never an overwrite.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dpps.core import errors
from dpps.core.errors import DppsError, InvalidInput, NotFound
from dpps.pipelines.calibpipe.product import parse_time

if TYPE_CHECKING:
    from dpps.bdms.archive import Archive
    from dpps.bdms.types import FileInfo


class Versioned(Protocol):
    """What ``select_valid`` needs of a product: ``FileInfo`` has it."""

    @property
    def meta(self) -> Mapping[str, Any]: ...

    @property
    def version(self) -> int: ...


_ERRORS: dict[str, type[DppsError]] = {
    c.__name__: c
    for c in (
        errors.InvalidInput,
        errors.ConfigError,
        errors.NotFound,
        errors.Conflict,
        errors.IntegrityFailure,
        errors.PermissionDenied,
        errors.Unavailable,
    )
}
TimeOrRange = dt.datetime | tuple[dt.datetime, dt.datetime]


def validity(product: Versioned) -> tuple[dt.datetime, dt.datetime] | None:
    """The validity interval from ``meta``; ``None`` if absent or unreadable."""
    meta = product.meta
    if "valid_from" not in meta or "valid_to" not in meta:
        return None
    try:
        return parse_time(meta["valid_from"]), parse_time(meta["valid_to"])
    except InvalidInput:
        return None


def _interval(when: TimeOrRange) -> tuple[dt.datetime, dt.datetime]:
    start, end = when if isinstance(when, tuple) else (when, when)
    start, end = parse_time(start), parse_time(end)
    if end < start:
        raise InvalidInput(f"time range ends ({end}) before it starts ({start})")
    return start, end


def select_valid[P: Versioned](products: Iterable[P], when: TimeOrRange) -> P:
    """The product whose validity covers ``when`` (a time or a (start, end) range).

    Among several, the one whose validity started last (the most recent calibration), then
    the highest version. ``NotFound`` if none covers it, saying how many were considered."""
    start, end = _interval(when)
    candidates: list[tuple[dt.datetime, int, P]] = []
    seen = 0
    for product in products:
        seen += 1
        span = validity(product)
        if span is not None and span[0] <= start and end <= span[1]:
            candidates.append((span[0], product.version, product))
    if not candidates:
        what = f"{start.isoformat()}" + (f" .. {end.isoformat()}" if end != start else "")
        raise NotFound(f"no product among {seen} candidates is valid for {what}")
    return max(candidates, key=lambda c: (c[0], c[1]))[2]


def _quoted(value: str) -> str:
    if '"' in value:
        raise InvalidInput(f"product type {value!r} may not contain a double quote")
    return f'"{value}"'


def find_valid(
    archive: Archive,
    product_type: str,
    when: TimeOrRange,
    *,
    tel_id: int | None = None,
    extra_filter: str = "",
    limit: int = 1000,
) -> FileInfo:
    """The archived calibration product of ``product_type`` valid for ``when``."""
    start, end = _interval(when)
    clauses = [
        "data_level = CAL",
        f"product_type = {_quoted(product_type)}",
        f'meta.valid_from <= "{start.isoformat()}"',
        f'meta.valid_to >= "{end.isoformat()}"',
    ]
    if tel_id is not None:
        clauses.append(f"tel_id = {int(tel_id)}")
    if extra_filter.strip():
        clauses.append(f"({extra_filter})")
    found = archive.list_files(" and ".join(clauses), limit=limit)
    try:
        return select_valid(found, (start, end))
    except NotFound:
        who = f" of telescope {tel_id}" if tel_id is not None else ""
        raise NotFound(
            f"no {product_type} product{who} in the archive is valid for "
            f"{start.isoformat()}" + (f" .. {end.isoformat()}" if end != start else "")
        ) from None


def find_calibration(archive: Archive, tel_id: int, when: TimeOrRange) -> FileInfo:
    """The camera calibration of ``tel_id`` valid for ``when`` (what DataPipe asks)."""
    return find_valid(archive, "camera calibration", when, tel_id=tel_id)


def calibration_lfn(path: Path, product_type: str, valid_from: str) -> str:
    """``/ctao/cal/<kind>/YYYY/MM/DD/<file name>``, dated by the start of validity."""
    kind = {"camera calibration": "camera", "atmospheric model selection": "atmosphere"}.get(
        product_type, product_type.replace(" ", "_")
    )
    day = parse_time(valid_from)
    return f"/ctao/cal/{kind}/{day:%Y/%m/%d}/{Path(path).name}"


def archive_product(
    archive: Archive,
    path: Path,
    rse: str,
    *,
    lfn: str | None = None,
    meta: Mapping[str, str] | None = None,
) -> FileInfo:
    """Ingest a CalibPipe product as a new version of its LFN (the first one is version 1).

    Metadata (data level, type, telescope, validity) comes from the file's own header; the
    LFN defaults to ``calibration_lfn``. The same bytes again are reported, not duplicated."""
    from dpps.bdms.metadata import extract_metadata

    extracted = extract_metadata(Path(path))
    product_type = str(extracted.columns.get("product_type") or "")
    if extracted.columns.get("data_level") != "CAL" or "valid_from" not in extracted.meta:
        raise InvalidInput(f"{Path(path).name} is not a CalibPipe product (DATALEVL, VALID_FROM)")
    target = lfn or calibration_lfn(Path(path), product_type, str(extracted.meta["valid_from"]))
    return ingest_version(archive, Path(path), rse, lfn=target, meta=meta)


def ingest_version(
    archive: Archive,
    path: Path,
    rse: str,
    *,
    lfn: str,
    meta: Mapping[str, str] | None = None,
    scope: str | None = None,
    dataset: str | None = None,
) -> FileInfo:
    """Ingest one file as the next version of ``lfn`` and return its catalog entry; a failed
    ingest raises the error class the archive reported."""
    report = archive.ingest(
        [Path(path)], rse, scope=scope, lfn=lfn, meta=meta, dataset=dataset, new_version=True
    )
    result = report.results[0]
    if result.status == "failed":
        raise _ERRORS.get(result.error_type or "", DppsError)(
            f"cannot archive {Path(path).name}: {result.error}"
        )
    scope = scope or archive.config.default_scope
    return archive.list_files(f'scope = "{scope}" and name = "{lfn}"', limit=1)[0]
