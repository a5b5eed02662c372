"""The DL0 codec: what the writer puts in a zfits file, protozfits and astropy read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from protozfits import File

from dpps.bdms.metadata import extract_metadata
from dpps.core.errors import Conflict, InvalidInput
from dpps.instrument.camera import CAMERAS
from dpps.instrument.clock import tai
from dpps.instrument.dl0 import (
    ArrayEvent,
    TelEvent,
    quiet_native_stdout,
    write_subarray_events,
    write_telescope_events,
)
from dpps.instrument.events import EventType

CAMERA = CAMERAS["SSTCam"]
HEADER = {
    "DATALEVL": ("DL0", "CTAO data level"),
    "OBS_ID": (5, "observation id"),
    "INSTRUME": (CAMERA.name, "camera"),
    "OBSERVING_NIGHT_NOTE": ("long keys become HIERARCH cards", "a comment"),
}


def _events(n: int) -> list[TelEvent]:
    rng = np.random.default_rng(0)
    shape = (1, CAMERA.n_pixels, CAMERA.n_samples)
    return [
        TelEvent(
            i, int(EventType.FLATFIELD), *tai(1.8e9 + i), rng.integers(0, 900, shape, np.uint16)
        )
        for i in range(1, n + 1)
    ]


def test_telescope_events_round_trip_with_checksums(tmp_path: Path) -> None:
    path = tmp_path / "dl0" / "TEL109_test.fits.fz"
    events = _events(3)
    with quiet_native_stdout():
        count = write_telescope_events(
            path,
            header=HEADER,
            camera=CAMERA,
            tel_id=109,
            sb_id=2,
            obs_id=5,
            config_time_s=1.8e9,
            events=events,
            compression="zstd1",
        )
    assert count == 3
    with fits.open(path, checksum=True) as hdul:  # astropy verifies CHECKSUM/DATASUM
        primary = hdul[0].header
        assert (primary["DATALEVL"], primary["OBS_ID"], primary["INSTRUME"]) == (
            "DL0",
            5,
            "SSTCam",
        )
        assert primary["OBSERVING_NIGHT_NOTE"] == "long keys become HIERARCH cards"
        assert all("CHECKSUM" in hdu.header for hdu in hdul)
    assert extract_metadata(path).format == "fits"  # the archive's own streaming check
    with File(str(path)) as f:
        stream = f.DataStream[0]
        assert (stream.tel_id, stream.obs_id, stream.sb_id) == (109, 5, 2)
        assert stream.waveform_scale == CAMERA.waveform_scale
        assert f.CameraConfiguration[0].num_pixels == CAMERA.n_pixels
        back = list(f.Events)
    assert [int(e.event_id) for e in back] == [1, 2, 3]
    for written, read in zip(events, back, strict=True):
        assert (read.event_time_s, read.event_time_qns) == (written.time_s, written.time_qns)
        assert np.array_equal(read.waveform.reshape(written.waveform.shape), written.waveform)


def test_subarray_events_carry_the_triggered_telescopes(tmp_path: Path) -> None:
    path = tmp_path / "SUB101_test.fits.fz"
    with quiet_native_stdout():
        write_subarray_events(
            path,
            header=HEADER,
            subarray_id=101,
            sb_id=2,
            obs_id=5,
            events=[ArrayEvent(7, int(EventType.SUBARRAY), *tai(1.8e9), (101, 104))],
        )
    with File(str(path)) as f:
        (event,) = list(f.SubarrayEvents)
        assert event.tel_ids_with_trigger.tolist() == [101, 104]
        assert f.DataStream[0].subarray_id == 101


def test_never_overwrites_and_refuses_unknown_compressions(tmp_path: Path) -> None:
    path = tmp_path / "x.fits.fz"
    path.write_bytes(b"already here")
    kwargs = dict(header=HEADER, subarray_id=1, sb_id=1, obs_id=1, events=[])
    with pytest.raises(Conflict):
        write_subarray_events(path, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="compression"):
        write_subarray_events(tmp_path / "y.fits.fz", compression="gzip", **kwargs)  # type: ignore[arg-type]
    assert path.read_bytes() == b"already here"
