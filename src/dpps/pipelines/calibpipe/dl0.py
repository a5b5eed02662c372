"""Reading the calibration events (flat-field, pedestal) of DL0 telescope event files.

Every file is checked before protozfits opens it: the ADH reader crashes the whole process
(a segmentation fault, not an exception) on a truncated file, so the archive's own integrity
check (``extract_metadata``: FITS CHECKSUM/DATASUM and announced sizes) runs first and a bad
file becomes a clear ``IntegrityFailure`` naming it. That read also gives the primary header,
so files of other streams (``DATADIV`` SHOWER, MUON) are skipped without decompressing them.

Events are yielded in batches of raw ``uint16`` waveforms: the calibration algorithms stream
over them and never need all events in memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from protozfits import File

from dpps.bdms.metadata import extract_metadata
from dpps.core.errors import IntegrityFailure, InvalidInput
from dpps.instrument.clock import TAI_UTC_S
from dpps.instrument.events import EventType

#: Event types a camera calibration uses.
CALIBRATION_TYPES = (EventType.FLATFIELD, EventType.SKY_PEDESTAL)
#: Streams (``DATADIV``) that hold no calibration events: their files are skipped unread.
_OTHER_STREAMS = {"SHOWER", "MUON", "TRIGGER", "POINTING", "WEATHER"}


@dataclass
class CameraStream:
    """The DL0 files of one telescope and observation, with what their headers say."""

    tel_id: int
    obs_id: int
    n_pixels: int
    n_samples: int
    sampling_ghz: float
    camera: str
    site: str | None
    category: str | None
    paths: list[Path] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class EventBatch:
    """Events of one type: waveforms (events x pixels x samples, DL0 counts) and UTC times."""

    event_type: EventType
    waveforms: NDArray[np.uint16]
    times_unix: NDArray[np.float64]


def _header(path: Path) -> dict[str, Any]:
    extracted = extract_metadata(path)  # IntegrityFailure for corrupt or truncated files
    if extracted.format != "fits":
        raise InvalidInput(f"{path.name} is not a DL0 zfits file (format {extracted.format})")
    return {**extracted.meta, **extracted.columns}


def scan(paths: Sequence[Path]) -> list[CameraStream]:
    """Group the calibration-bearing DL0 files by (telescope, observation).

    Checks every file's integrity; files of shower, muon or monitoring streams are ignored.
    ``InvalidInput`` if no file holds telescope events."""
    streams: dict[tuple[int, int], CameraStream] = {}
    for path in sorted(Path(p) for p in paths):
        if not path.is_file():
            raise InvalidInput(f"DL0 input {path} does not exist or is not a file")
        header = _header(path)
        if str(header.get("datadiv", "")).upper() in _OTHER_STREAMS:
            continue
        info = _describe(path, header)
        key = (info.tel_id, info.obs_id)
        known = streams.setdefault(key, info)
        if (known.n_pixels, known.n_samples) != (info.n_pixels, info.n_samples):
            raise InvalidInput(
                f"{path.name}: telescope {info.tel_id} has {info.n_pixels} pixels x "
                f"{info.n_samples} samples here but {known.n_pixels} x {known.n_samples} in "
                f"{known.paths[0].name}"
            )
        known.paths.append(path)
    if not streams:
        raise InvalidInput("no DL0 telescope event file with calibration events among the inputs")
    return [streams[k] for k in sorted(streams)]


def _describe(path: Path, header: dict[str, Any]) -> CameraStream:
    try:
        with File(str(path)) as zfile:
            tables = set(vars(zfile))
            if not {"DataStream", "CameraConfiguration", "Events"} <= tables:
                raise InvalidInput(
                    f"{path.name} is not a DL0 telescope event file (tables: {sorted(tables)})"
                )
            stream = next(iter(zfile.DataStream))
            config = next(iter(zfile.CameraConfiguration))
            return CameraStream(
                tel_id=int(stream.tel_id),
                obs_id=int(stream.obs_id),
                n_pixels=int(config.num_pixels),
                n_samples=int(config.num_samples_nominal),
                sampling_ghz=float(config.sampling_frequency) / 1000.0,
                camera=str(header.get("instrume") or "unknown"),
                site=str(header["site"]) if header.get("site") else None,
                category=str(header["category"]) if header.get("category") else None,
            )
    except (StopIteration, AttributeError, ValueError, RuntimeError, OSError) as exc:
        raise IntegrityFailure(f"{path.name}: cannot read DL0 tables: {exc}") from None


def iter_batches(stream: CameraStream, batch_size: int = 64) -> Iterator[EventBatch]:
    """Flat-field and pedestal events of ``stream``, in file order, ``batch_size`` at a time
    (each batch holds one event type). Other event types are skipped."""
    shape = (stream.n_pixels, stream.n_samples)
    pending: dict[EventType, tuple[list[NDArray[np.uint16]], list[float]]] = {
        t: ([], []) for t in CALIBRATION_TYPES
    }
    for path in stream.paths:
        try:
            with File(str(path)) as zfile:
                for event in zfile.Events:
                    kind = int(event.event_type)
                    if kind not in (int(t) for t in CALIBRATION_TYPES):
                        continue
                    etype = EventType(kind)
                    wave = np.asarray(event.waveform, dtype=np.uint16)
                    if wave.size != shape[0] * shape[1] * max(1, int(event.num_channels)):
                        raise IntegrityFailure(
                            f"{path.name}: event {event.event_id} has {wave.size} samples, "
                            f"expected channels x {shape[0]} x {shape[1]}"
                        )
                    waves, times = pending[etype]
                    waves.append(wave.reshape(-1, *shape)[0])  # high-gain channel
                    tai = int(event.event_time_s) + int(event.event_time_qns) / 4e9
                    times.append(tai - TAI_UTC_S)
                    if len(waves) >= batch_size:
                        yield _batch(etype, waves, times)
                        pending[etype] = ([], [])
        except (AttributeError, ValueError, RuntimeError, OSError) as exc:
            raise IntegrityFailure(f"{path.name}: cannot read DL0 events: {exc}") from None
    for etype, (waves, times) in pending.items():
        if waves:
            yield _batch(etype, waves, times)


def _batch(etype: EventType, waves: list[NDArray[np.uint16]], times: list[float]) -> EventBatch:
    return EventBatch(etype, np.stack(waves), np.asarray(times, dtype=np.float64))
