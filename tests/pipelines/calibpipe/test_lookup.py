"""Calibration products in the archive: versions, validity, and the lookup DataPipe uses."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dpps.bdms.archive import Archive
from dpps.core.errors import InvalidInput, NotFound
from dpps.pipelines.calibpipe.camera import CameraCalibration
from dpps.pipelines.calibpipe.lookup import (
    archive_product,
    find_calibration,
    find_valid,
    select_valid,
)
from dpps.pipelines.calibpipe.product import iso, write_calibration
from dpps.pipelines.tool import run_tool
from tests.pipelines.calibpipe.helpers import START, START_UNIX, weather_table

pytestmark = pytest.mark.verifies_usecase("UC-120-2.20")
HOUR = 3600.0


def product(
    directory: Path,
    tel_id: int,
    obs_id: int,
    first: float,
    *,
    gain: float = 80.0,
    after_s: float = 12 * HOUR,
) -> Path:
    """A small calibration product of 20 minutes of calibration events from ``first``."""
    n = 61
    calibration = CameraCalibration(
        pedestal=np.full(n, 400.0),
        pedestal_width=np.full(n, 46.6),
        gain=np.full(n, gain),
        gain_error=np.full(n, 2.0),
        time_shift=np.zeros(n),
        flags=np.zeros(n, np.int16),
        n_pe=np.full(n, 80.0),
        n_pedestal=100,
        n_flatfield=100,
        time_first=first,
        time_last=first + 1200.0,
        containment=0.99,
    )
    path = (
        directory / f"gain{gain:g}" / f"TEL{tel_id:03d}_OBSID{obs_id:010d}_CAMERA_CALIBRATION.fits"
    )
    return write_calibration(
        path,
        calibration,
        tel_id=tel_id,
        obs_id=obs_id,
        camera="TestCam",
        valid_from=iso(first - HOUR),
        valid_to=iso(first + 1200.0 + after_s, up=True),
        category="B",
    )


def at(hours: float) -> dt.datetime:
    return START + dt.timedelta(hours=hours)


@dataclass
class Fake:
    valid_from: str | None
    valid_to: str | None
    version: int = 1
    meta: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.meta = {
            k: v
            for k, v in (("valid_from", self.valid_from), ("valid_to", self.valid_to))
            if v is not None
        }


def test_select_valid_prefers_the_latest_start_then_the_highest_version() -> None:
    old = Fake("2026-11-21T00:00:00", "2026-11-23T00:00:00")
    new = Fake("2026-11-21T20:00:00", "2026-11-22T08:00:00")
    newer_version = Fake("2026-11-21T20:00:00", "2026-11-22T08:00:00", version=2)
    broken = Fake("yesterday", "2026-11-22T08:00:00")
    bare = Fake(None, None)
    pool = [old, new, newer_version, broken, bare]
    assert select_valid(pool, at(0)) is newer_version
    assert select_valid(pool, at(12)) is old  # only the old one reaches noon
    assert select_valid(pool, (at(-1), at(1))) is newer_version
    assert select_valid(pool, (at(-3), at(1))) is old  # before the new one started
    with pytest.raises(NotFound, match="no product among 5 candidates is valid for"):
        select_valid(pool, at(48))
    with pytest.raises(InvalidInput, match=r"ends .* before it starts"):
        select_valid(pool, (at(1), at(0)))


def test_archive_and_find_the_valid_calibration(archive: Archive, tmp_path: Path) -> None:
    night1, night2 = START_UNIX, START_UNIX + 24 * HOUR
    tel1_n1 = archive_product(archive, product(tmp_path, 1, 1, night1), "CTAO-N")
    tel1_n2 = archive_product(archive, product(tmp_path, 1, 2, night2), "CTAO-N")
    tel2_n1 = archive_product(archive, product(tmp_path, 2, 1, night1), "CTAO-N")
    assert (
        tel1_n1.name
        == "/ctao/cal/camera/2026/11/21/TEL001_OBSID0000000001_CAMERA_CALIBRATION.fits"
    )
    assert (tel1_n1.data_level, tel1_n1.product_type) == ("CAL", "camera calibration")
    assert (tel1_n1.tel_id, tel1_n1.obs_id, tel1_n1.category) == (1, 1, "B")
    assert tel1_n1.meta["valid_from"] == "2026-11-21T21:00:00"
    assert tel1_n1.meta["valid_to"] == "2026-11-22T10:20:00"

    assert find_calibration(archive, 1, at(0.5)).did == tel1_n1.did
    assert find_calibration(archive, 1, (at(0), at(2))).did == tel1_n1.did
    assert find_calibration(archive, 1, at(24.5)).did == tel1_n2.did
    assert find_calibration(archive, 2, at(1)).did == tel2_n1.did
    with pytest.raises(NotFound, match=r"no camera calibration product of telescope 2 .* valid"):
        find_calibration(archive, 2, at(24.5))
    with pytest.raises(NotFound):
        find_calibration(archive, 3, at(0.5))
    with pytest.raises(NotFound):  # the observation runs past the end of validity
        find_calibration(archive, 1, (at(12), at(14)))


def test_a_new_calibration_is_a_new_version(archive: Archive, tmp_path: Path) -> None:
    first = archive_product(archive, product(tmp_path, 1, 1, START_UNIX), "CTAO-N")
    same = archive_product(archive, product(tmp_path / "again", 1, 1, START_UNIX), "CTAO-N")
    assert (same.did, same.version) == (first.did, 1)  # identical bytes: not duplicated
    redone = archive_product(archive, product(tmp_path, 1, 1, START_UNIX, gain=81.0), "CTAO-N")
    assert redone.name == first.name
    assert redone.version == 2
    found = find_calibration(archive, 1, at(0.5))
    assert (found.name, found.version) == (first.name, 2)
    versions = archive.list_files(f'name = "{first.name}"', all_versions=True)
    assert sorted(v.version for v in versions) == [1, 2]


def test_only_calibration_products_are_archived_this_way(archive: Archive, tmp_path: Path) -> None:
    weather = weather_table(tmp_path / "w.fits", 8.0, 780.0, 30.0)
    with pytest.raises(InvalidInput, match="is not a CalibPipe product"):
        archive_product(archive, weather, "CTAO-N")
    assert archive.count("") == 0


@pytest.mark.verifies_usecase("UC-120-1.3")
def test_atmosphere_selection_is_found_by_time(archive: Archive, tmp_path: Path) -> None:
    weather = weather_table(tmp_path / "w.fits", 2.0, 775.0, 60.0, n=200)
    result = run_tool(
        "calibpipe-atmosphere", {"validity_after_s": 600}, {"weather": [weather]}, tmp_path / "out"
    )
    assert result.exit_code == 0, result.error
    stored = archive_product(archive, result.outputs[0].path, "CTAO-N")
    assert stored.name.startswith("/ctao/cal/atmosphere/2026/11/21/")
    assert stored.meta["atmmodel"] == "winter"
    found = find_valid(archive, "atmospheric model selection", at(0.2))
    assert found.did == stored.did
    with pytest.raises(NotFound):
        find_valid(archive, "atmospheric model selection", at(2))
