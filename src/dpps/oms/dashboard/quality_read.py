"""Reading QualPipe's archived products for the dashboard: reports, their pages and plots.

QualPipe writes a JSON verdict (``quality report``), a self-contained HTML page with its PNG
plots inlined (``quality report page``) and, when it runs as a WMS job, the PNG files too
(``quality plot``). The night workflow and ``archive_report`` archive only the JSON and the
page, so the page is where the plots of every report can be found.

Everything is read through the archive by DID (``Archive.get``: checksums verified, no path
from the request ever touches the file system), from disk replicas only: a page view must not
file tape stage requests. Products never change under a DID version, so what was read is kept
in a small cache keyed by the DID, its version and checksum.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from dpps.bdms.archive import Archive
from dpps.bdms.types import FileInfo, PageRequest
from dpps.core.errors import InvalidInput, NotFound, Unavailable
from dpps.core.identifiers import DID
from dpps.wms.api import WMS

REPORT = "quality report"
PAGE = "quality report page"
PLOT = "quality plot"
#: Newest first: the latest reports are what a shifter looks at.
REPORT_FILTER = f"data_level = QUAL and product_type = '{REPORT}'"
#: Larger products are not quality reports a page should load into memory.
MAX_BYTES = 32 * 1024 * 1024
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_INLINED = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
_CACHE_SIZE = 64

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Plot:
    """Where a report's plot is: a PNG product, or the ``index``-th image of a page."""

    title: str
    did: str
    index: int | None = None

    @property
    def url(self) -> str:
        from urllib.parse import urlencode

        query = {"did": self.did} | ({} if self.index is None else {"n": str(self.index)})
        return "/ui/quality/image?" + urlencode(query)


class _Cache:
    """A bounded, thread-safe memo of parsed products (requests run in a thread pool)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[Any, ...], make: Callable[[], T]) -> T:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                value: T = self.items[key]
                return value
        value = make()
        with self.lock:
            self.items[key] = value
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return value


_cache = _Cache(_CACHE_SIZE)


def recent_reports(archive: Archive, limit: int, offset: int) -> tuple[list[FileInfo], int]:
    """The latest version of each quality report, newest first, and how many there are."""
    page = archive.views.files(REPORT_FILTER, PageRequest(offset, limit), order_by="-created_at")
    return page.items, page.total


def read_bytes(archive: Archive, info: FileInfo) -> bytes:
    """The product's content from a disk replica (never a stage request), size-bounded."""
    if (info.bytes or 0) > MAX_BYTES:
        raise InvalidInput(f"{info.did} is {info.bytes} bytes: too large to show here")
    details = archive.show(info.did, events_limit=0)
    if not any(r.state == "AVAILABLE" and r.kind != "TAPE" for r in details.replicas):
        raise Unavailable(f"{info.did} has no copy on disk (stage it to see it here)")
    spool = Path(tempfile.mkdtemp(prefix="dpps-dash-"))
    try:
        result = archive.get([info.did], spool / "f").results[0]
        if result.status != "retrieved" or not result.path:
            raise Unavailable(f"{info.did}: {result.error or result.status}")
        return Path(result.path).read_bytes()
    finally:
        shutil.rmtree(spool, ignore_errors=True)


def _key(info: FileInfo) -> tuple[Any, ...]:
    return (info.scope, info.name, info.version, info.adler32, info.bytes)


def report_content(archive: Archive, info: FileInfo) -> dict[str, Any]:
    """The report's JSON as a mapping; a product that is not one is an ``InvalidInput``."""

    def load() -> dict[str, Any]:
        try:
            data = json.loads(read_bytes(archive, info).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidInput(f"{info.did} is not readable JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidInput(f"{info.did} is not a QualPipe report (not an object)")
        return data

    return _cache.get(("report", *_key(info)), load)


def page_images(archive: Archive, info: FileInfo) -> list[tuple[str, bytes]]:
    """The PNG images inlined in a QualPipe HTML page, as (title, bytes), in page order."""

    def load() -> list[tuple[str, bytes]]:
        text = read_bytes(archive, info).decode("utf-8", "replace")
        images = []
        for title, data in _INLINED.findall(text):
            try:
                png = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                continue
            if png.startswith(PNG_MAGIC):
                images.append((title, png))
        return images

    return _cache.get(("page", *_key(info)), load)


def companions(archive: Archive, report: FileInfo) -> list[FileInfo]:
    """The page and plot products that belong to ``report``: the other QUAL outputs of the
    job that wrote it, else the page archived beside it (same name with ``.html``, same
    version, as ``archive_report`` and the night workflow name it)."""
    refs = WMS(archive).output_siblings(DID(report.scope, report.name, report.version))
    siblings = [
        f
        for f in (archive.views.file(DID(r.scope, r.name, r.version)) for r in refs)
        if f is not None and f.data_level == "QUAL" and (f.product_type == PLOT or is_page(f))
    ]
    if siblings:
        return siblings
    if not report.name.endswith(".json"):
        return []
    page = archive.views.file(
        DID(report.scope, report.name[: -len(".json")] + ".html", report.version)
    )
    return [page] if page is not None and page.data_level == "QUAL" and is_page(page) else []


def is_page(info: FileInfo) -> bool:
    """A QualPipe HTML page: typed as one, or an untyped ``.html`` (the night and campaigns
    archived their pages without a product type until issue 14; those reports keep their
    plots). Callers check the data level is QUAL."""
    return info.product_type == PAGE or (info.product_type is None and info.name.endswith(".html"))


def plots_of(archive: Archive, report: FileInfo) -> list[Plot]:
    """The report's plots: its PNG products if it has any, else the images of its page."""
    found = companions(archive, report)
    pngs = [f for f in found if f.product_type == PLOT and f.name.endswith(".png")]
    if pngs:
        return [Plot(Path(f.name).stem.replace("_", " "), _versioned(f)) for f in pngs]
    plots: list[Plot] = []
    for page in (f for f in found if is_page(f)):
        try:
            images = page_images(archive, page)
        except (InvalidInput, Unavailable, NotFound):
            continue
        plots += [
            Plot(t.replace("_", " "), _versioned(page), i) for i, (t, _) in enumerate(images)
        ]
    return plots


def _versioned(info: FileInfo) -> str:
    """``scope:name@vN``: the image URL keeps meaning this version after a re-evaluation."""
    return f"{info.scope}:{info.name}@v{info.version}"


def image(archive: Archive, did: str, index: int | None) -> bytes:
    """The PNG a ``Plot`` URL names: only QUAL plots and pages, anything else is NotFound."""
    if len(did) > 2048:
        raise NotFound("no such quality plot")
    info = archive.show(did, events_limit=0).file  # parses the DID; NotFound if absent
    if info.data_level != "QUAL" or not (info.product_type == PLOT or is_page(info)):
        raise NotFound(f"{did} is not a quality plot or report page")
    if info.product_type == PLOT:
        png = read_bytes(archive, info)
        if index is not None or not png.startswith(PNG_MAGIC):
            raise NotFound(f"{did} is not a PNG plot")
        return png
    images = page_images(archive, info)
    if index is None or not 0 <= index < len(images):
        raise NotFound(f"{did} has no image {index}")
    return images[index][1]
