"""Sample files and state snapshots for archive tests."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import func, select

from dpps.bdms.archive import Archive
from dpps.bdms.samples import write_fits_product, write_hdf5_product
from dpps.catalog.models import DIDRow, EventRow, ReplicaRow

NIGHT = dt.date(2026, 11, 21)
START = dt.datetime(2026, 11, 21, 22, 0, 0)


def make_fits(
    directory: Path,
    name: str = "obs.fits",
    *,
    obs_id: int = 100,
    tel_id: int = 1,
    seed: int = 0,
    **kwargs: object,
) -> Path:
    return write_fits_product(
        directory / name,
        obs_id=obs_id,
        tel_id=tel_id,
        night=NIGHT,
        start=START,
        n_events=200,
        seed=seed,
        **kwargs,
    )  # type: ignore[arg-type]


def make_hdf5(
    directory: Path, name: str = "obs.h5", *, obs_id: int = 100, tel_id: int = 1, seed: int = 0
) -> Path:
    return write_hdf5_product(
        directory / name, obs_id=obs_id, tel_id=tel_id, night=NIGHT, n_rows=100, seed=seed
    )


def snapshot(archive: Archive) -> dict[str, object]:
    """Everything an ingest could leave behind: catalog rows and files under every RSE."""
    with archive.sessions() as session:
        counts = {
            "dids": session.scalar(select(func.count()).select_from(DIDRow)),
            "replicas": session.scalar(select(func.count()).select_from(ReplicaRow)),
            "events": session.scalar(select(func.count()).select_from(EventRow)),
        }
    files = sorted(
        str(p.relative_to(archive.config.workspace))
        for p in (archive.config.workspace / "rse").rglob("*")
        if p.is_file()
    )
    return {**counts, "files": files}
