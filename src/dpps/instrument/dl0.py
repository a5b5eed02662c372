"""The DL0 event file format: zfits (``.fits.fz``) written through protozfits, as ACADA does.

The ACADA simulator and SimPipe both write their DL0 through this codec, so the pipelines
read one format whichever produced the file.

A file holds one binary-table HDU per protobuf message type of CTAO's DL0v1 data model
(``DataStream``, ``CameraConfiguration``, then ``Events``; or ``DataStream`` and
``SubarrayEvents`` for the subarray trigger stream), tile-compressed by the ADH library that
ACADA itself uses. The CTAO product keywords go into the primary header. protozfits writes
CHECKSUM and DATASUM on every HDU when it closes the file, so no post-processing is needed
(``tests/instrument`` and ``tests/acada`` verify them with astropy and with the archive's
own streaming reader).

The ADH library logs every file it opens and closes to the process's standard output (file
descriptor 1, not Python's ``sys.stdout``) and offers no switch; ``quiet_native_stdout``
silences it for command-line use, so that ``--json`` output stays clean.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from protozfits import FlatProtobufZOFits
from protozfits.anyarray import numpy_to_any_array
from protozfits.DL0v1_Subarray_pb2 import DataStream as SubarrayDataStream
from protozfits.DL0v1_Subarray_pb2 import Event as SubarrayEvent
from protozfits.DL0v1_Telescope_pb2 import CameraConfiguration
from protozfits.DL0v1_Telescope_pb2 import DataStream as TelescopeDataStream
from protozfits.DL0v1_Telescope_pb2 import Event as TelescopeEvent

from dpps.core.errors import Conflict, InvalidInput
from dpps.instrument.camera import CameraSpec, pixel_positions

HeaderValue = str | int | float | bool

#: Compressions ADH knows: raw (none), zstd1..zstd9, lzo, zrice, fact (waveform-specific).
COMPRESSIONS = ("raw", "zstd1", "zstd3", "zstd5", "lzo", "fact")

#: Pixel status bits used for every pixel: high gain stored, signal present.
PIXEL_STATUS = 0b0000_0101


@dataclass(frozen=True, slots=True)
class TelEvent:
    """One telescope event as stored: the digitised waveform (channels x pixels x samples)."""

    event_id: int
    event_type: int
    time_s: int  # TAI seconds since 1970-01-01
    time_qns: int  # quarter nanoseconds within the second
    waveform: NDArray[np.uint16]


@dataclass(frozen=True, slots=True)
class ArrayEvent:
    """One subarray trigger: which telescopes triggered and sent data."""

    event_id: int
    trigger_type: int
    time_s: int
    time_qns: int
    tel_ids: tuple[int, ...]


def _set_primary(writer: Any, key: str, value: HeaderValue, comment: str) -> None:
    if len(key) > 8 or not key.replace("_", "").replace("-", "").isalnum() or key != key.upper():
        writer.set_primary_hierarch_string(key, str(value), comment)
    elif isinstance(value, bool):
        writer.set_primary_bool(key, value, comment)
    elif isinstance(value, int):
        writer.set_primary_int(key, value, comment)
    elif isinstance(value, float):
        writer.set_primary_float(key, value, comment)
    else:
        writer.set_primary_string(key, str(value), comment)


def _writer(path: Path, compression: str, rows_per_tile: int) -> Any:
    if compression not in COMPRESSIONS:
        raise InvalidInput(f"unknown compression {compression!r}; use one of {COMPRESSIONS}")
    if path.exists():
        raise Conflict(f"{path} exists already: ACADA never overwrites a file")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = FlatProtobufZOFits(
        n_tiles=1000, rows_per_tile=rows_per_tile, compression_block_size_kb=64 * 1024
    )
    writer.open(str(path))
    writer.set_default_compression(compression)
    return writer


def write_telescope_events(
    path: Path,
    *,
    header: Mapping[str, tuple[HeaderValue, str]],
    camera: CameraSpec,
    tel_id: int,
    sb_id: int,
    obs_id: int,
    config_time_s: float,
    events: Iterable[TelEvent],
    compression: str = "zstd3",
) -> int:
    """Write one telescope events file (DataStream, CameraConfiguration, Events); returns the
    number of events. ``header`` maps primary keyword -> (value, comment)."""
    count = 0
    writer = _writer(path, compression, rows_per_tile=20)
    try:
        for key, (value, comment) in header.items():
            _set_primary(writer, key, value, comment)
        writer.move_to_new_table("DataStream")
        writer.write_message(
            TelescopeDataStream(
                tel_id=tel_id,
                sb_id=sb_id,
                obs_id=obs_id,
                waveform_scale=camera.waveform_scale,
                waveform_offset=camera.waveform_offset,
            )
        )
        writer.move_to_new_table("CameraConfiguration")
        x, _ = pixel_positions(camera)
        writer.write_message(
            CameraConfiguration(
                tel_id=tel_id,
                local_run_id=obs_id,
                config_time_s=config_time_s,
                camera_config_id=1,
                pixel_id_map=numpy_to_any_array(np.arange(x.size, dtype=np.uint16)),
                num_pixels=camera.n_pixels,
                num_channels=1,
                num_samples_nominal=camera.n_samples,
                num_samples_long=0,
                sampling_frequency=round(camera.sampling_ghz * 1000),
                data_model_version="DL0v1",
            )
        )
        writer.move_to_new_table("Events")
        status = numpy_to_any_array(np.full(camera.n_pixels, PIXEL_STATUS, dtype=np.uint8))
        for event in events:
            writer.write_message(
                TelescopeEvent(
                    event_id=event.event_id,
                    tel_id=tel_id,
                    event_type=event.event_type,
                    event_time_s=event.time_s,
                    event_time_qns=event.time_qns,
                    pixel_status=status,
                    num_channels=1,
                    num_samples=camera.n_samples,
                    num_pixels_survived=camera.n_pixels,
                    waveform=numpy_to_any_array(event.waveform),
                )
            )
            count += 1
    finally:
        writer.close()
    return count


def write_subarray_events(
    path: Path,
    *,
    header: Mapping[str, tuple[HeaderValue, str]],
    subarray_id: int,
    sb_id: int,
    obs_id: int,
    events: Iterable[ArrayEvent],
    compression: str = "zstd3",
) -> int:
    """Write one subarray trigger file (DataStream, SubarrayEvents); returns the event count."""
    count = 0
    writer = _writer(path, compression, rows_per_tile=1000)
    try:
        for key, (value, comment) in header.items():
            _set_primary(writer, key, value, comment)
        writer.move_to_new_table("DataStream")
        writer.write_message(
            SubarrayDataStream(subarray_id=subarray_id, sb_id=sb_id, obs_id=obs_id, producer_id=1)
        )
        writer.move_to_new_table("SubarrayEvents")
        for event in events:
            tel_ids = np.asarray(event.tel_ids, dtype=np.uint16)
            writer.write_message(
                SubarrayEvent(
                    event_id=event.event_id,
                    trigger_type=event.trigger_type,
                    sb_id=sb_id,
                    obs_id=obs_id,
                    event_time_s=event.time_s,
                    event_time_qns=event.time_qns,
                    trigger_ids=numpy_to_any_array(np.array([event.event_id], dtype=np.uint64)),
                    tel_ids_with_trigger=numpy_to_any_array(tel_ids),
                    tel_ids_with_data=numpy_to_any_array(tel_ids),
                )
            )
            count += 1
    finally:
        writer.close()
    return count


@contextlib.contextmanager
def quiet_native_stdout(enabled: bool = True) -> Iterator[None]:
    """Send file descriptor 1 to /dev/null while the ADH library writes (it logs there).

    Process-wide: use it in a command-line tool around the writing, not in a server."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
