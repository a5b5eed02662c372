"""Step 1 and 2 of a campaign: select DL0 by metadata and say how much it is and where.

The volume report is computed from the archive's own answers (``list_files`` and ``locate``),
so its numbers are the catalog's. A file is *on disk* when some disk replica of it is
AVAILABLE; otherwise it is *tape only* and must be staged before a job can read it. The
staging estimate follows the archive's own model (``dpps locate``): the tape RSEs' mount delays
overlap (the stager starts every due request), the bytes then flow one after another.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from dpps.bdms.archive import Archive
from dpps.bdms.types import FileInfo, Location
from dpps.core.errors import InvalidInput, NotFound

DISK = "disk"
TAPE = "tape"


@dataclass(frozen=True, slots=True)
class DL0File:
    """One selected DL0 file and where its copies are."""

    info: FileInfo
    location: Location

    @property
    def did(self) -> str:
        return self.info.did

    @property
    def on_disk(self) -> bool:
        return any(r.kind == DISK and r.state == "AVAILABLE" for r in self.location.replicas)

    @property
    def tape_rse(self) -> str | None:
        """The tape RSE staging would read (None when a disk copy exists or none is on tape)."""
        if self.on_disk:
            return None
        tapes = [r for r in self.location.replicas if r.kind == TAPE and r.state == "AVAILABLE"]
        return min(tapes, key=lambda r: (r.estimated_seconds or 0.0, r.rse)).rse if tapes else None

    @property
    def role(self) -> str | None:
        """``dl0`` for a telescope's shower events (a block without any is not processed)."""
        kind = str(self.info.meta.get("datadiv", "")).upper()
        if self.info.product_type == "EVENTS" and self.info.tel_id is not None:
            return "dl0" if kind in ("", "SHOWER") else None
        return None


@dataclass(slots=True)
class Tally:
    files: int = 0
    bytes: int = 0
    on_disk_files: int = 0
    on_disk_bytes: int = 0
    tape_only_files: int = 0
    tape_only_bytes: int = 0

    def add(self, f: DL0File) -> None:
        size = f.info.bytes or 0
        self.files += 1
        self.bytes += size
        if f.on_disk:
            self.on_disk_files += 1
            self.on_disk_bytes += size
        else:
            self.tape_only_files += 1
            self.tape_only_bytes += size


@dataclass(slots=True)
class Volume:
    """The volume report (``--dry-run`` prints this and stops)."""

    query: str
    total: Tally = field(default_factory=Tally)
    #: obs_id -> tally of the block's files (all of them are the chain's inputs).
    blocks: dict[int, Tally] = field(default_factory=dict)
    #: data center (site) -> tally of the replicas held there (a file counts at every site
    #: that holds a copy), split by disk and tape.
    sites: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Files selected outside any processed block (no obs_id, or no shower events).
    unused_files: int = 0
    estimated_staging_s: float = 0.0
    #: Files without an AVAILABLE replica anywhere: the campaign cannot read them.
    unreadable: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Block:
    """One observation block: every selected DL0 file of it (the chain's steps pick theirs:
    shower and calibration streams, pointing and weather tables)."""

    obs_id: int
    night: dt.date | None
    inputs: list[DL0File]


@dataclass(frozen=True, slots=True)
class Selection:
    files: list[DL0File]
    blocks: list[Block]
    volume: Volume


def dl0_filter(query: str) -> str:
    return f"({query}) and data_level=DL0"


def check(archive: Archive, query: str) -> None:
    """Refuse a query now that ``select`` would refuse later (it does not parse, or selects no
    DL0), reading one row only: a submission must not wait for a volume report."""
    try:
        found = archive.list_files(dl0_filter(query), limit=1)
    except InvalidInput as exc:
        raise InvalidInput(f"campaign query {query!r}: {exc}") from None
    if not found:
        raise NotFound(f"campaign query {query!r} selects no DL0 file")


def select(archive: Archive, query: str) -> Selection:
    """The DL0 the query selects, grouped into observation blocks, with its volume.

    A query that does not parse is InvalidInput (naming the position); a query that selects no
    DL0 is NotFound, so a typo in a value never becomes a campaign over nothing.
    """
    text = dl0_filter(query)
    try:
        infos = archive.list_files(text, limit=None)
    except InvalidInput as exc:
        raise InvalidInput(f"campaign query {query!r}: {exc}") from None
    if not infos:
        raise NotFound(f"campaign query {query!r} selects no DL0 file")
    files = [DL0File(info, archive.locate(info.did)) for info in infos]
    blocks = _blocks(files)
    return Selection(files, blocks, volume(query, files, blocks, archive))


def _blocks(files: list[DL0File]) -> list[Block]:
    grouped: dict[int, list[DL0File]] = defaultdict(list)
    for f in files:
        if f.info.obs_id is not None:
            grouped[f.info.obs_id].append(f)
    out = []
    for obs_id, members in sorted(grouped.items()):
        if not any(f.role == "dl0" for f in members):
            continue  # no telescope events of this block were selected: nothing to process
        nights = {f.info.observing_night for f in members if f.info.observing_night}
        inputs = sorted(members, key=lambda f: f.did)
        out.append(Block(obs_id, min(nights) if nights else None, inputs))
    return out


def volume(query: str, files: list[DL0File], blocks: list[Block], archive: Archive) -> Volume:
    report = Volume(query)
    used = {f.did for b in blocks for f in b.inputs}
    for block in blocks:
        tally = report.blocks.setdefault(block.obs_id, Tally())
        for f in block.inputs:
            tally.add(f)
    for f in files:
        report.total.add(f)
        if not f.location.available:
            report.unreadable.append(f.did)
        for rep in f.location.replicas:
            if rep.state != "AVAILABLE":
                continue
            site = report.sites.setdefault(
                rep.site, {"files": 0, "bytes": 0, "disk_bytes": 0, "tape_bytes": 0}
            )
            site["files"] += 1
            site["bytes"] += rep.bytes
            site[f"{rep.kind}_bytes"] = site.get(f"{rep.kind}_bytes", 0) + rep.bytes
    report.unused_files = sum(1 for f in files if f.did not in used)
    report.estimated_staging_s = staging_estimate(
        [f for f in files if f.did in used and f.tape_rse], archive
    )
    return report


def staging_estimate(tape_only: list[DL0File], archive: Archive) -> float:
    """Seconds until every tape-only input is in the buffer: the longest mount delay, then
    the bytes one after another at each tape RSE's configured bandwidth."""
    if not tape_only:
        return 0.0
    delay = 0.0
    transfer = 0.0
    for f in tape_only:
        rse = f.tape_rse
        cfg = archive.config.rses.get(rse or "")
        if cfg is None:
            continue
        delay = max(delay, cfg.staging_delay_s + cfg.latency_ms / 1000.0)
        transfer += (f.info.bytes or 0) / (cfg.bandwidth_mb_s * 1e6)
    return round(delay + transfer, 3)
