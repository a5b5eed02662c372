"""Metadata extraction at ingest: integrity first, then the keywords the catalog indexes.

A file enters the archive only if its bytes are whole: FITS CHECKSUM/DATASUM are verified and
truncation is detected here, before any copy is made, because a corrupt file archived twice is
still corrupt. The FITS checksums are computed by this module in a streaming pass over the raw
bytes (the FITS one's-complement sum), not through astropy: astropy only *warns* on a mismatch,
stops at a damaged header with a warning, and loads whole HDUs into memory to verify them.

The indexed columns (see ``INDEXED_KEYS``) come from CTAO header keywords or HDF5 root
attributes, then a JSON sidecar may override them. Values that cannot be converted from a file
header do not stop the ingest: the column stays empty, the raw value is kept in ``meta`` under
``<column>_raw`` and a warning is returned. Values given by a person (sidecar, CLI) are strict:
a bad one is an ``InvalidInput`` naming the key. Free metadata never uses an indexed key (nor,
see ``dpps.bdms.metadata_values``, a reserved one or a number JSON cannot write).

astropy, h5py and numpy are imported by the readers that use them, not with this module: every
command that opens the archive imports it, and they would add 0.5 s to ``dpps ls`` (issue 14).
Checks for numpy scalars look numpy up in ``sys.modules``: none can exist before it is loaded.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import re
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from dpps.core.errors import IntegrityFailure, InvalidInput, NotFound
from dpps.core.states import Category, DataLevel

if TYPE_CHECKING:
    from astropy.io import fits

__all__ = [
    "INDEXED_KEYS",
    "META_KEY_RE",
    "ExtractedMetadata",
    "convert_indexed",
    "extract_metadata",
    "validate_meta_key",
]

INDEXED_KEYS = (
    "data_level",
    "category",
    "obs_id",
    "tel_id",
    "observing_night",
    "time_start",
    "time_end",
    "product_type",
)
META_KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

FITS_MAGIC = b"SIMPLE  ="
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_FITS_SUFFIXES = {".fits", ".fit", ".fts", ".fz"}
_HDF5_SUFFIXES = {".h5", ".hdf5", ".hdf", ".he5"}
_BLOCK = 2880
_CHUNK = _BLOCK * 4096  # ~11 MiB per read: a multiple of 4 bytes, memory stays flat
MAX_META_KEYS = 200
MAX_STRING_BYTES = 1024
_MAX_ITEMS = 100  # HDUs / HDF5 items listed, elements kept of a list value

#: Normalised keyword / attribute names per column, in groups: a later group counts only if no
#: header has a name of an earlier one (HDUCLAS1 is a product type only if nothing better is).
_ALIASES: dict[str, tuple[tuple[str, ...], ...]] = {
    "data_level": (("datalevl", "data_level", "cta_product_data_levels"),),
    "category": (("datacat", "category", "data_category"),),
    "obs_id": (("obs_id", "obsid"),),
    "tel_id": (("tel_id", "ae_id", "telid"),),
    "observing_night": (("obsnight", "observing_night"),),
    "time_start": (("date_obs", "date_beg", "time_start"),),
    "time_end": (("date_end", "time_end"),),
    "product_type": (("datatype", "prodtype", "product_type"), ("hduclas1",)),
}
#: Keywords that describe the file's layout, not its content: never free metadata.
_STRUCTURAL = re.compile(
    r"^(SIMPLE|BITPIX|NAXIS\d*|EXTEND|PCOUNT|GCOUNT|TFIELDS|XTENSION|THEAP|CHECKSUM|DATASUM"
    r"|COMMENT|HISTORY|END|T(TYPE|FORM|UNIT|DIM|NULL|SCAL|ZERO|DISP)\d+"
    r"|Z(TENSION|BITPIX|NAXIS\d*|TILE\d+|CMPTYPE|NAME\d+|VAL\d+|FORM\d+|CTYP\d+|IMAGE|TABLE"
    r"|SIMPLE|EXTEND|PCOUNT|GCOUNT|HECKSUM|DATASUM|QUANTIZ|DITHER0|BLOCKED|THEAP))$"
)
#: Offsets to UTC (s) per TIMESYS. Simplification: TAI-UTC has been 37 s since 2017 and the
#: archive indexes times to find files, not to time photons.
_TIMESYS_OFFSET = {"UTC": 0.0, "UT": 0.0, "TAI": 37.0, "TT": 69.184, "GPS": 18.0}


@dataclass(frozen=True)
class ExtractedMetadata:
    """What ingest learns from a file: typed indexed columns and JSON-safe free metadata."""

    format: str  # "fits" | "hdf5" | "json" (a JSON product, see _read_json_product) | "other"
    columns: dict[str, Any]
    meta: dict[str, Any]
    warnings: tuple[str, ...] = ()


def validate_meta_key(key: str) -> str:
    """Free metadata keys are lower-case identifiers so they work in queries and JSON paths."""
    if not isinstance(key, str) or not META_KEY_RE.fullmatch(key):  # "$" would allow a "\n"
        raise InvalidInput(f"invalid metadata key {key!r}: expected {META_KEY_RE.pattern}")
    return key


def _count(value: Any, upper: int, *, prefixed: bool = False) -> int:
    """Non-negative integer from int, integral float or digit string (``TEL001`` if prefixed)."""
    bad = ValueError(f"expected a non-negative integer, got {value!r}")
    floats, ints = _scalar_types()
    integral = isinstance(value, floats) and float(value).is_integer()
    if integral or (isinstance(value, ints) and not isinstance(value, bool)):
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        runs = re.findall(r"\d+", text) if prefixed else [text]
        if len(runs) != 1 or not runs[0].isdigit() or not text.endswith(runs[0]):
            raise bad
        number = int(runs[0])
    else:
        raise bad
    if not 0 <= number <= upper:
        raise ValueError(f"{number} is out of range 0..{upper}")
    return number


def _enum(value: Any, members: type[DataLevel] | type[Category], what: str) -> str:
    text = value.strip().upper() if isinstance(value, str) else ""
    text = {"SIMULATION": "SIM", "SIMULATED": "SIM"}.get(text, text)
    if text not in members.__members__.values():
        names = ", ".join(m.value for m in members)
        raise ValueError(f"unknown {what} {value!r} (expected one of {names})")
    return text


def _night(value: Any) -> dt.date:
    if isinstance(value, dt.date):
        return value.date() if isinstance(value, dt.datetime) else value
    with contextlib.suppress(ValueError, AttributeError):  # Python 3.11+ also reads YYYYMMDD
        return dt.datetime.fromisoformat(value.strip()).date()
    raise ValueError(f"expected a date YYYY-MM-DD or YYYYMMDD, got {value!r}")


def _time(value: Any) -> dt.datetime:
    """Naive UTC: aware datetimes are converted, naive ones are taken to be UTC already."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"expected an ISO 8601 date-time, got {value!r}") from None
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time())
    raise ValueError(f"expected an ISO 8601 date-time, got {value!r}")


def _product_type(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > 64:
        raise ValueError(f"expected a non-empty text of at most 64 characters, got {value!r}")
    return value.strip()


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "data_level": lambda v: _enum(v, DataLevel, "data level"),
    "category": lambda v: _enum(v, Category, "category"),
    "obs_id": lambda v: _count(v, 2**63 - 1),
    "tel_id": lambda v: _count(v, 2**31 - 1, prefixed=True),
    "observing_night": _night,
    "time_start": _time,
    "time_end": _time,
    "product_type": _product_type,
}


def convert_indexed(key: str, value: Any) -> Any:
    """Convert a user-given value (CLI string, JSON value) to the type of column ``key``, or
    raise ``InvalidInput`` naming the key and the expected form. ``None`` means "no value"."""
    if key not in INDEXED_KEYS:
        raise InvalidInput(f"{key!r} is not an indexed metadata key ({', '.join(INDEXED_KEYS)})")
    if value is None:
        return None
    try:
        return _CONVERTERS[key](value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(f"metadata {key}: {exc}") from None


def _norm_key(raw: str) -> str:
    """``DATE-OBS`` -> ``date_obs``, ``CTA PRODUCT ID`` -> ``cta_product_id``: a valid meta key."""
    key = re.sub(r"[^a-z0-9]+", "_", str(raw).lower()).strip("_")
    return key[:64] if key[:1].isalpha() else f"k_{key}"[:64]


def _scalar_types() -> tuple[tuple[type[Any], ...], tuple[type[Any], ...]]:
    """The float and integer types a header value may have: numpy's only once it is loaded."""
    np = sys.modules.get("numpy")
    if np is None:
        return (float,), (int,)
    return (float, np.floating), (int, np.integer)


def _json_value(value: Any, depth: int = 0) -> Any:
    """Header and attribute values made JSON-safe: numpy scalars unwrapped, NaN/inf as text,
    strings capped at 1 KiB, lists at 100 elements, nesting at 3 levels."""
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        big = value.size > _MAX_ITEMS
        value = f"<array shape={list(value.shape)} dtype={value.dtype}>" if big else value.tolist()
    elif np is not None and isinstance(value, np.generic):
        value = value.item()
    card = sys.modules.get("astropy.io.fits.card")
    if card is not None and isinstance(value, card.Undefined):
        return None
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple) and depth < 3:
        return [_json_value(v, depth + 1) for v in value[:_MAX_ITEMS]]
    if isinstance(value, Mapping) and depth < 3:
        return {str(k): _json_value(v, depth + 1) for k, v in list(value.items())[:_MAX_ITEMS]}
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = value.isoformat() if isinstance(value, dt.date | dt.time) else str(value)
    return text.encode("utf-8")[:MAX_STRING_BYTES].decode("utf-8", errors="ignore")


KeyMap = dict[str, Any]  # normalised keyword -> value, in header order


def _map_columns(
    sources: Sequence[KeyMap], meta: dict[str, Any], notes: list[str]
) -> tuple[dict[str, Any], list[set[str]]]:
    """Fill the columns from the first source that has each keyword (primary header first);
    return them with the keywords consumed from each source, which are left out of meta."""
    columns: dict[str, Any] = {}
    used: list[set[str]] = [set() for _ in sources]
    for column, groups in _ALIASES.items():
        found = next(
            (
                (i, alias)
                for group in groups
                for i, src in enumerate(sources)
                for alias in group
                if alias in src
            ),
            None,
        )
        if found is None:
            continue
        index, alias = found
        source, raw = sources[index], sources[index][alias]
        if alias == "date_obs" and "time_obs" in source and len(str(raw).strip()) == 10:
            raw = f"{str(raw).strip()}T{str(source['time_obs']).strip()}"  # old two-keyword form
            used[index].add("time_obs")
        if column == "data_level" and isinstance(raw, str):  # "DL1_IMAGES,DL1_PARAMETERS"
            level = re.match(r"^\s*(R[01]|DL[0-5])(?:[_ ,;].*)?$", raw.upper())
            raw = level.group(1) if level else raw
        try:
            value = convert_indexed(column, raw)
        except InvalidInput as exc:
            notes.append(f"{alias.upper()} ignored: {exc}")
            meta[f"{column}_raw"] = _json_value(raw)
            continue
        if column in ("time_start", "time_end"):
            scale = str(source.get("timesys", "UTC")).strip().upper()
            if scale not in _TIMESYS_OFFSET:
                notes.append(f"TIMESYS={scale!r} is not supported: times taken as UTC")
            value -= dt.timedelta(seconds=_TIMESYS_OFFSET.get(scale, 0.0))
        columns[column] = value
        used[index].add(alias)
    return columns, used


def _free_meta(source: KeyMap, used: set[str], notes: list[str]) -> dict[str, Any]:
    keys = [k for k in source if k not in used and k not in INDEXED_KEYS]
    if len(keys) > MAX_META_KEYS:
        notes.append(f"{len(keys) - MAX_META_KEYS} header keywords not kept in meta (limit)")
    return {k: _json_value(source[k]) for k in keys[:MAX_META_KEYS]}


def _fits_keymap(header: fits.Header) -> KeyMap:
    keymap: KeyMap = {}
    for card in header.cards:
        if card.keyword and not _STRUCTURAL.match(card.keyword):
            keymap.setdefault(_norm_key(card.keyword), card.value)
    return keymap


def _hdu_summary(index: int, hdu: Any) -> dict[str, Any]:
    """Layout from the header only: listing an HDU never reads or decompresses its data."""
    header = hdu.header
    z = "Z" if header.get("ZIMAGE") or header.get("ZTABLE") else ""  # tile-compressed
    entry: dict[str, Any] = {"index": index, "name": hdu.name, "compressed": bool(z)}
    if header.get("ZIMAGE"):
        entry["type"] = "CompImageHDU"
    elif header.get("XTENSION") in ("BINTABLE", "TABLE"):
        entry["type"] = "BinTableHDU" if header["XTENSION"] == "BINTABLE" else "TableHDU"
        entry["rows"] = header.get(f"{z}NAXIS2")
        return entry
    else:
        entry["type"] = type(hdu).__name__
    naxis = int(header.get(f"{z}NAXIS", 0))
    entry["shape"] = [header.get(f"{z}NAXIS{i}") for i in range(naxis, 0, -1)]
    return entry


def _ones_sum(fh: BinaryIO, start: int, length: int) -> int:
    """32-bit one's-complement sum of big-endian words: the FITS checksum, read in chunks."""
    import numpy as np

    fh.seek(start)
    total, remaining = 0, length
    while remaining > 0:
        chunk = fh.read(min(_CHUNK, remaining))
        remaining = remaining - len(chunk) if chunk else 0
        chunk += b"\0" * (-len(chunk) % 4)  # FITS spans are whole words: only for safety
        total = _fold(total + int(np.frombuffer(chunk, dtype=">u4").sum(dtype=np.uint64)))
    return total


def _fold(total: int) -> int:  # the end-around carry makes the sum one's-complement
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    return total


def _verify_hdu(fh: BinaryIO, index: int, hdu: Any, info: Mapping[str, Any]) -> None:
    header = hdu.header
    label = f"HDU {index} {hdu.name!r}"
    data_sum = _ones_sum(fh, info["datLoc"], info["datSpan"])
    if "DATASUM" in header:
        expected = str(header["DATASUM"]).strip()
        if expected != str(data_sum):
            detail = f"header says {expected}, bytes give {data_sum}"
            raise IntegrityFailure(f"DATASUM mismatch in {label}: data are corrupt ({detail})")
    if "CHECKSUM" in header:
        header_sum = _ones_sum(fh, info["hdrLoc"], info["datLoc"] - info["hdrLoc"])
        if _fold(header_sum + data_sum) != 0xFFFFFFFF:  # the whole HDU must sum to -0
            raise IntegrityFailure(f"CHECKSUM mismatch in {label}: header or data are corrupt")


def _read_fits(
    path: Path, size: int, verify: bool, notes: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    from astropy.io import fits

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(
                path,
                mode="readonly",
                memmap=False,
                lazy_load_hdus=False,
                disable_image_compression=True,
                do_not_scale_image_data=True,
                checksum=False,
            ) as hdul:
                hdus = list(hdul)
                infos = [hdu.fileinfo() for hdu in hdus]
                keymaps = [_fits_keymap(hdu.header) for hdu in hdus]
                summaries = [_hdu_summary(i, hdu) for i, hdu in enumerate(hdus[:_MAX_ITEMS])]
                end = infos[-1]["datLoc"] + infos[-1]["datSpan"]
                if end > size:
                    raise IntegrityFailure(
                        f"truncated FITS file: {size} bytes, its headers announce {end}"
                    )
                if end < size:  # astropy stops, with a mere warning, at a damaged header
                    raise IntegrityFailure(
                        f"truncated FITS file: {size - end} bytes after HDU {len(hdus) - 1} "
                        "are not a complete header"
                    )
                if verify:
                    with open(path, "rb") as fh:
                        for index, (hdu, info) in enumerate(zip(hdus, infos, strict=True)):
                            if "CHECKSUM" in hdu.header or "DATASUM" in hdu.header:
                                _verify_hdu(fh, index, hdu, info)
    except (OSError, ValueError, TypeError, KeyError, IndexError, fits.VerifyError) as exc:
        kind = "truncated FITS file" if size % _BLOCK else "corrupt FITS file"
        raise IntegrityFailure(f"{kind}: astropy cannot read it: {exc}") from None
    notes.extend(f"astropy: {m}"[:200] for m in dict.fromkeys(str(w.message) for w in caught))
    meta: dict[str, Any] = {}
    columns, used = _map_columns(keymaps, meta, notes)
    # A .fits.fz primary header is often empty: then the first extension describes the product.
    pick = 0 if set(keymaps[0]) - used[0] or len(keymaps) == 1 else 1
    meta.update(_free_meta(keymaps[pick], used[pick], notes))
    meta["hdus"] = summaries
    return columns, meta


def _hdf5_item(name: str, obj: Any) -> dict[str, Any]:
    import h5py

    if isinstance(obj, h5py.Dataset):
        return {"name": name, "type": "dataset", "shape": list(obj.shape), "dtype": str(obj.dtype)}
    if isinstance(obj, h5py.Group):
        return {"name": name, "type": "group", "members": len(obj)}
    return {"name": name, "type": "link"}


def _read_hdf5(path: Path, notes: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            attrs: KeyMap = {}
            for name in f.attrs:
                try:
                    attrs.setdefault(_norm_key(name), _json_value(f.attrs[name]))
                except (TypeError, OSError) as exc:
                    notes.append(f"HDF5 attribute {name!r} unreadable: {exc}")
            items = [_hdf5_item(name, f.get(name)) for name in list(f.keys())[:_MAX_ITEMS]]
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        raise IntegrityFailure(f"corrupt or truncated HDF5 file: {exc}") from None
    meta: dict[str, Any] = {}
    columns, used = _map_columns([attrs], meta, notes)
    meta.update(_free_meta(attrs, used[0], notes))
    meta["hdf5_items"] = _json_value(items)
    return columns, meta


def _read_json_product(
    path: Path, size: int, notes: list[str]
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """A JSON data product (e.g. a QualPipe quality report) names its CTAO keywords in a
    top-level ``product`` object, as a FITS primary header would; other JSON carries none."""
    if size > 16 * 2**20:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    product = data.get("product") if isinstance(data, dict) else None
    if not isinstance(product, dict):
        return None
    keymap: KeyMap = {_norm_key(k): v for k, v in product.items()}
    meta: dict[str, Any] = {}
    columns, used = _map_columns([keymap], meta, notes)
    meta.update(_free_meta(keymap, used[0], notes))
    return columns, meta


def _detect(path: Path, size: int) -> str:
    """Magic bytes decide; an extension that promises another format is an integrity failure."""
    with open(path, "rb") as fh:
        fmt, offset = ("fits" if fh.read(len(FITS_MAGIC)) == FITS_MAGIC else "other"), 0
        while fmt == "other" and offset <= min(size, 2**20):  # HDF5 may follow a user block
            fh.seek(offset)
            if fh.read(8) == HDF5_MAGIC:
                fmt = "hdf5"
            offset = 512 if offset == 0 else offset * 2
    suffix = path.suffix.lower()
    claimed = "fits" if suffix in _FITS_SUFFIXES else "hdf5" if suffix in _HDF5_SUFFIXES else None
    if claimed is not None and claimed != fmt:
        raise IntegrityFailure(f"{path.name} is named like {claimed.upper()} but is not one")
    return fmt


def _apply_sidecar(source: Path, columns: dict[str, Any], meta: dict[str, Any]) -> None:
    """The sidecar is what a person asserts about the file: it wins, and is validated strictly."""
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read metadata sidecar {source}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"metadata sidecar {source} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"metadata sidecar {source} must hold a JSON object")
    for key, value in data.items():
        try:
            if key in INDEXED_KEYS:
                columns[key] = convert_indexed(key, value)  # null clears the column
                meta.pop(f"{key}_raw", None)
            else:
                meta[validate_meta_key(key)] = _json_value(value)
        except InvalidInput as exc:
            raise InvalidInput(f"metadata sidecar {source.name}, key {key!r}: {exc}") from None


def extract_metadata(
    path: Path, *, verify_checksums: bool = True, sidecar: Path | None = None
) -> ExtractedMetadata:
    """Check a file's integrity and extract its metadata (see the module docstring).

    ``IntegrityFailure``: corrupt, truncated or checksum-mismatching file; ``InvalidInput``: a
    directory or a bad sidecar; ``NotFound``: no such path. An empty file is format "other"
    with a warning (ingest decides)."""
    path = Path(path)
    if path.is_dir():
        raise InvalidInput(f"{path} is a directory, not a data product")
    if not path.exists():
        raise NotFound(f"{path}: no such file")
    size = path.stat().st_size
    notes = [] if size else ["empty file: no metadata extracted"]
    fmt = _detect(path, size) if size else "other"
    columns, meta = (
        _read_fits(path, size, verify_checksums, notes)
        if fmt == "fits"
        else _read_hdf5(path, notes)
        if fmt == "hdf5"
        else ({}, {})
    )
    if fmt == "other" and size and path.suffix.lower() == ".json":
        found = _read_json_product(path, size, notes)
        if found is not None:
            fmt, (columns, meta) = "json", found
    implicit = path.with_name(path.name + ".json")
    if sidecar is not None or implicit.is_file():
        _apply_sidecar(sidecar or implicit, columns, meta)
    if columns.get("observing_night") is None and columns.get("time_start") is not None:
        # Simplification: a night is named after its evening, the day boundary is 12:00 UTC.
        # Right at both CTAO sites (La Palma UTC+0/+1, Paranal UTC-3/-4): nobody observes
        # across 12:00 UTC there.
        columns["observing_night"] = (columns["time_start"] - dt.timedelta(hours=12)).date()
    start, end = columns.get("time_start"), columns.get("time_end")
    if start is not None and end is not None and end < start:
        notes.append("time_end is before time_start")
    ordered = {k: columns[k] for k in INDEXED_KEYS if columns.get(k) is not None}
    return ExtractedMetadata(fmt, ordered, meta, tuple(notes))
