"""Reading DL0 telescope event files (zfits, DL0v1 messages) with protozfits.

ctapipe-io-zfits was tried first: it fetches an instrument description from the network when
opening a file, which dpps may not do, so the files are read here with protozfits directly and
the camera comes from the header (``INSTRUME``, a ``dpps.instrument.camera.CAMERAS`` name).

protozfits reads a file whose bytes were flipped without complaint, so every file's FITS
``CHECKSUM``/``DATASUM`` are verified first (the archive's own streaming check,
``dpps.bdms.metadata.extract_metadata``): a corrupt file is an ``IntegrityFailure`` before a
single event is processed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from numpy.typing import NDArray
from protozfits import File

from dpps.bdms.metadata import extract_metadata
from dpps.core.errors import IntegrityFailure, InvalidInput
from dpps.instrument.camera import CameraSpec
from dpps.instrument.clock import TAI_UTC_S
from dpps.instrument.events import EventType
from dpps.pipelines.simpipe.instrument import camera_spec

#: Event type of array-triggered showers (DL0v1 / ctapipe ``EventType.SUBARRAY``).
SHOWER_EVENT_TYPE = int(EventType.SUBARRAY)


@dataclass(frozen=True, slots=True)
class DL0Event:
    event_id: int
    event_type: int
    time_unix: float  # UTC seconds since 1970
    waveform: NDArray[np.uint16]  # pixels x samples, high-gain channel


@dataclass(frozen=True)
class DL0File:
    """One telescope event file: its header, camera and digitisation."""

    path: Path
    header: dict[str, Any]
    tel_id: int
    obs_id: int
    camera: CameraSpec
    waveform_scale: float
    waveform_offset: float
    n_pixels: int
    n_samples: int

    @property
    def is_simulation(self) -> bool:
        return str(self.header.get("DATACAT", "")).strip().upper() == "SIM"

    def events(self) -> Iterator[DL0Event]:
        """The file's events, read lazily (one waveform in memory at a time)."""
        with File(str(self.path)) as zf:
            for ev in zf.Events:
                n_chan = int(ev.num_channels or 1)
                wave = np.asarray(ev.waveform)
                if wave.size != n_chan * self.n_pixels * self.n_samples:
                    raise IntegrityFailure(
                        f"{self.path.name}: event {ev.event_id} holds {wave.size} samples, "
                        f"expected {n_chan} x {self.n_pixels} x {self.n_samples}"
                    )
                time = ev.event_time_s - TAI_UTC_S + ev.event_time_qns / 4e9
                yield DL0Event(
                    int(ev.event_id),
                    int(ev.event_type),
                    float(time),
                    wave.reshape(n_chan, self.n_pixels, self.n_samples)[0],
                )


def open_dl0(path: Path) -> DL0File:
    """Verify and open a telescope event file; raises IntegrityFailure or InvalidInput."""
    path = Path(path)
    extract_metadata(path)  # integrity (CHECKSUM/DATASUM, truncation) before anything else
    header = dict(fits.getheader(path, 0))
    try:
        with File(str(path)) as zf:
            if not hasattr(zf, "Events"):
                raise InvalidInput(
                    f"{path.name} holds no telescope events (not a DL0 telescope stream)"
                )
            stream = next(iter(zf.DataStream))
            config = next(iter(zf.CameraConfiguration))
    except (OSError, StopIteration, AttributeError, ValueError) as exc:
        raise IntegrityFailure(f"{path.name}: cannot read as DL0 zfits: {exc}") from None
    name = str(header.get("INSTRUME", "")).strip()
    if not name:
        raise InvalidInput(f"{path.name}: no INSTRUME keyword: the camera is unknown")
    spec = camera_spec(name)
    if int(config.num_pixels) != spec.n_pixels:
        raise InvalidInput(
            f"{path.name}: {config.num_pixels} pixels, but a {name} has {spec.n_pixels}"
        )
    return DL0File(
        path=path,
        header=header,
        tel_id=int(stream.tel_id),
        obs_id=int(stream.obs_id),
        camera=spec,
        waveform_scale=float(stream.waveform_scale or 1.0),
        waveform_offset=float(stream.waveform_offset or 0.0),
        n_pixels=int(config.num_pixels),
        n_samples=int(config.num_samples_nominal),
    )
