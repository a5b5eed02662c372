"""Test data for CalibPipe: DL0 from the ACADA simulator, and DL0 with injected pixel truth.

The ACADA simulator gives every pixel the same gain (its ``waveform_scale``) and pedestal
(``waveform_offset * waveform_scale``), so ``write_injected`` writes DL0 files through the same
zfits writer with per-pixel gains, pedestals, time shifts and broken pixels chosen by the test:
the calibration must find each of them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from numpy.typing import NDArray

from dpps.acada.simulate import SimulationConfig, simulate
from dpps.instrument.camera import CameraSpec
from dpps.instrument.clock import TAI_UTC_S
from dpps.instrument.dl0 import TelEvent, quiet_native_stdout, write_telescope_events
from dpps.instrument.events import EventType
from dpps.physics import showers

START = dt.datetime(2026, 11, 21, 22, 0, 0)
START_UNIX = START.replace(tzinfo=dt.UTC).timestamp()

#: A small camera: 61 pixels (4 hexagonal rings), 30 samples at 1 GHz.
SMALL_CAMERA = CameraSpec("TestCam", 61, 0.2, 30, 1.0, 1.2, 100.0, 0.3, 0.25, 80.0, 5.0)


def simulate_calibration(
    landing: Path, *, telescopes: tuple[int, ...] = (1,), events: int = 120, **changes: object
) -> list[Path]:
    """ACADA DL0 of the calibration stream: about ``events`` calibration events per
    telescope, half flat-field, half pedestal (plus monitoring tables)."""
    duration = 2.0
    config = SimulationConfig(
        telescopes=telescopes,
        duration_s=duration,
        event_rate_hz=events / duration / 0.95,
        calibration_fraction=0.95,
        muon_fraction=0.0,
        streams=("CAL",),
        events_per_chunk=1000,
        triggers=False,
        start=START,
    )
    config = dataclasses.replace(config, **changes)  # type: ignore[arg-type]
    with quiet_native_stdout():
        return simulate(landing, config)


@dataclass(frozen=True)
class Injected:
    """The truth written into an injected DL0 file."""

    path: Path
    camera: CameraSpec
    gain: NDArray[np.float64]  # adu per photo-electron
    pedestal: NDArray[np.float64]  # adu per sample
    time_shift: NDArray[np.float64]  # ns
    dead: tuple[int, ...]
    hot: tuple[int, ...]
    first_unix: float
    last_unix: float


def _tai(unix_s: float) -> tuple[int, int]:
    seconds = math.floor(unix_s)
    return seconds + TAI_UTC_S, round((unix_s - seconds) * 4e9) % 4_000_000_000


def write_injected(
    directory: Path,
    *,
    n_each: int = 300,
    tel_id: int = 7,
    obs_id: int = 42,
    dead: tuple[int, ...] = (10,),
    hot: tuple[int, ...] = (20,),
    seed: int = 1,
    camera: CameraSpec = SMALL_CAMERA,
) -> Injected:
    """``n_each`` flat-field and ``n_each`` pedestal events with per-pixel truth."""
    rng = np.random.default_rng(seed)
    n = camera.n_pixels
    gain = rng.uniform(60.0, 100.0, n)
    pedestal = rng.uniform(300.0, 500.0, n)
    time_shift = rng.uniform(-2.0, 2.0, n)
    time_shift -= np.median(time_shift)
    noise_factor = np.ones(n)
    noise_factor[list(hot)] = 4.0

    def event(i: int) -> TelEvent:
        kind = EventType.FLATFIELD if i % 2 == 0 else EventType.SKY_PEDESTAL
        image = (
            showers.flatfield_image(rng, camera)
            if kind == EventType.FLATFIELD
            else showers.pedestal_image(camera)
        )
        shifted = dataclasses.replace(image, peak_time_ns=image.peak_time_ns + time_shift)
        wave = showers.waveforms(rng, camera, shifted).astype(np.float64)
        wave *= noise_factor[:, None]  # hot pixels: far more noise (and signal)
        stored = np.rint(wave * gain[:, None] + pedestal[:, None])
        stored[list(dead)] = np.rint(pedestal[list(dead), None])  # no response at all
        stored = np.clip(stored, 0, 65535).astype(np.uint16)
        return TelEvent(i + 1, int(kind), *_tai(START_UNIX + 0.01 * i), stored[np.newaxis])

    path = directory / f"TEL{tel_id:03d}_SDH001_INJECTED_OBSID{obs_id:010d}_TEL_CAL.fits.fz"
    header = {
        "DATALEVL": ("DL0", "data level"),
        "DATATYPE": ("EVENTS", "product type"),
        "DATADIV": ("CAL", "stream"),
        "SITE": ("CTAO-North", "site"),
        "OBS_ID": (obs_id, "observation"),
        "AE_ID": (tel_id, "telescope"),
        "INSTRUME": (camera.name, "camera"),
    }
    with quiet_native_stdout():
        write_telescope_events(
            path,
            header=header,
            camera=camera,
            tel_id=tel_id,
            sb_id=1,
            obs_id=obs_id,
            config_time_s=START_UNIX,
            events=(event(i) for i in range(2 * n_each)),
        )
    return Injected(
        path,
        camera,
        gain,
        pedestal,
        time_shift,
        dead,
        hot,
        START_UNIX,
        START_UNIX + 0.01 * (2 * n_each - 1),
    )


def cal_files(files: list[Path]) -> list[Path]:
    return [f for f in files if "_TEL_CAL_" in f.name]


def weather_table(
    path: Path,
    temperature: float | list[float],
    pressure: float | list[float],
    humidity: float | list[float],
    *,
    site: str = "CTAO-North",
    obs_id: int = 5,
    n: int = 12,
) -> Path:
    """A WEATHER table laid out like ACADA's (dpps.acada.monitoring), values chosen."""

    n = max([n] + [len(v) for v in (temperature, pressure, humidity) if isinstance(v, list)])

    def column(value: float | list[float]) -> np.ndarray:
        return np.asarray(value if isinstance(value, list) else [value] * n, dtype=np.float32)

    t = START_UNIX + 10.0 * np.arange(n)
    table = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="TIME", format="D", unit="s", array=t),
            fits.Column(name="TEMPERATURE", format="E", unit="deg_C", array=column(temperature)),
            fits.Column(name="HUMIDITY", format="E", unit="%", array=column(humidity)),
            fits.Column(name="PRESSURE", format="E", unit="hPa", array=column(pressure)),
        ],
        name="WEATHER",
    )
    primary = fits.PrimaryHDU()
    primary.header.update(
        {"DATALEVL": "DL0", "DATATYPE": "MONITORING", "SITE": site, "OBS_ID": obs_id}
    )
    fits.HDUList([primary, table]).writeto(path, checksum=True)
    return path
