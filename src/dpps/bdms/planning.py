"""Planning an ingest: the command's paths to (file, LFN) items, and ``--meta`` pairs to typed
metadata, without the catalog or the storage's bytes.

A local ingest (``dpps.bdms.ingest``) and the remote client (``dpps.client.archive``) plan with
the same function, so both name files alike and refuse the same mistakes with the same
messages before any file is touched; neither needs a database for it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from dpps.bdms.records import IngestOptions
from dpps.core.errors import DppsError, InvalidInput
from dpps.core.identifiers import validate_lfn


class InPlace(Protocol):
    """What planning asks of the target RSE: where a file under its root lies (registered in
    place), or None. A remote client has no RSE here and answers None."""

    def relative_path_of(self, path: Path, /) -> str | None: ...


@dataclass(frozen=True, slots=True)
class PlannedFile:
    """One file of an ingest and its LFN; ``error`` when it cannot be ingested as given."""

    source: Path
    lfn: str | None
    error: DppsError | None = None


def display(path: Path) -> str:
    """A path as text that always prints (undecodable bytes escaped)."""
    return os.fsdecode(path).encode("utf-8", "backslashreplace").decode("utf-8")


def plan(paths: Sequence[Path], opts: IngestOptions, rse: InPlace) -> list[PlannedFile]:
    """Turn the command's paths into (file, LFN) items; problems become failed items."""
    if opts.lfn is not None and opts.lfn_prefix is not None:
        raise InvalidInput("give either --lfn or --lfn-prefix, not both")
    if opts.lfn is not None:
        validate_lfn(opts.lfn)
        if len(paths) != 1 or Path(paths[0]).is_dir():
            raise InvalidInput("--lfn names exactly one file; use --lfn-prefix for several")
    prefix = None
    if opts.lfn_prefix is not None:
        prefix = "/" + opts.lfn_prefix.strip("/")
        validate_lfn(prefix)
    items: list[PlannedFile] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            if not opts.recursive:
                items.append(
                    PlannedFile(
                        path,
                        None,
                        InvalidInput(
                            f"{display(path)} is a directory (use --recursive to ingest its files)"
                        ),
                    )
                )
                continue
            for sub in sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink()):
                rel = sub.relative_to(path).as_posix()
                items.append(_item_for(sub, rel, prefix, opts, rse))
        else:
            items.append(_item_for(path, path.name, prefix, opts, rse))
    return items


def _item_for(
    path: Path, rel: str, prefix: str | None, opts: IngestOptions, rse: InPlace
) -> PlannedFile:
    try:
        if opts.lfn is not None:
            return PlannedFile(path, opts.lfn)
        if prefix is not None:
            return PlannedFile(path, validate_lfn(f"{prefix}/{rel}"))
        in_place = rse.relative_path_of(path) if path.exists() else None
        if in_place is not None:
            return PlannedFile(path, validate_lfn("/" + in_place.lstrip("/")))
        raise InvalidInput(
            f"{display(path)}: no LFN: give --lfn or --lfn-prefix, or place the file under "
            f"the RSE root to register it in place"
        )
    except DppsError as exc:
        return PlannedFile(path, None, exc)


def count_files(paths: Sequence[Path], recursive: bool = False) -> int:
    """How many files an ingest of ``paths`` handles (for progress bars), without reading any."""
    total = 0
    for p in paths:
        if p.is_dir() and recursive:
            total += sum(1 for q in p.rglob("*") if q.is_file() and not q.is_symlink())
        else:
            total += 1
    return total
