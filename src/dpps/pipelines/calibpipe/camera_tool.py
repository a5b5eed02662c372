"""``calibpipe-camera``: camera calibration coefficients from DL0 calibration events.

UC-120-2.20. Reads the flat-field and pedestal events of the DL0 files given as input ``dl0``
(any mix of telescopes, observations and streams: shower and muon files are skipped), and
writes one calibration product per telescope and observation (``product.py``).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from dpps.core.errors import InvalidInput
from dpps.pipelines.calibpipe import dl0
from dpps.pipelines.calibpipe.camera import (
    CalibrationOptions,
    CameraCalibration,
    FirstPass,
    SecondPass,
)
from dpps.pipelines.calibpipe.product import DATA_TYPE, iso, write_calibration
from dpps.pipelines.tool import Tool, ToolConfig, register_tool


class CameraCalibrationConfig(ToolConfig):
    """Options of the camera calibration (see ``camera.py`` for the method)."""

    window_width: int = Field(7, ge=1, description="samples integrated per pixel")
    window_shift: int = Field(
        3, ge=0, description="samples before the mean pulse's peak where the window starts"
    )
    excess_noise_f2: float = Field(
        1.2, ge=1.0, description="F**2 of photodetectors and light source (F-factor method)"
    )
    dead_width_fraction: float = Field(
        0.2, ge=0.0, lt=1.0, description="pedestal width below this x median: dead pixel"
    )
    hot_width_factor: float = Field(
        2.0, gt=1.0, description="pedestal width above this x median: hot pixel"
    )
    min_charge_fraction: float = Field(
        0.2, ge=0.0, lt=1.0, description="flat-field charge below this x median: dead pixel"
    )
    gain_factor: float = Field(
        1.5, gt=1.0, description="gain outside median/f .. median*f: unusable pixel"
    )
    gain_sigma: float = Field(
        4.0, ge=0.0, description="... and further than this many statistical errors from it"
    )
    max_time_shift_ns: float = Field(
        5.0, gt=0.0, description="time shift beyond +- this (ns): unusable pixel"
    )
    min_events: int = Field(
        20, ge=2, description="fewer pedestal or flat-field events per telescope is an error"
    )
    validity_before_s: float = Field(
        3600.0, ge=0.0, description="validity starts this long before the first event used"
    )
    validity_after_s: float = Field(
        43200.0, ge=0.0, description="validity ends this long after the last event used"
    )
    category: Literal["A", "B", "C", "SIM"] | None = Field(
        None, description="processing category of the products; default: the inputs' one"
    )
    batch_size: int = Field(64, ge=1, le=4096, description="events processed at a time")
    cache_mb: float = Field(
        512.0, ge=0.0, description="keep up to this many MB of raw events between the passes"
    )

    def options(self) -> CalibrationOptions:
        return CalibrationOptions(
            window_width=self.window_width,
            window_shift=self.window_shift,
            excess_noise_f2=self.excess_noise_f2,
            dead_width_fraction=self.dead_width_fraction,
            hot_width_factor=self.hot_width_factor,
            min_charge_fraction=self.min_charge_fraction,
            gain_factor=self.gain_factor,
            gain_sigma=self.gain_sigma,
            max_time_shift_ns=self.max_time_shift_ns,
        )


def calibrate(
    stream: dl0.CameraStream,
    options: CalibrationOptions,
    *,
    batch_size: int = 64,
    min_events: int = 2,
    cache_mb: float = 512.0,
) -> CameraCalibration:
    """Both passes over one telescope's calibration events; ``InvalidInput`` if fewer than
    ``min_events`` pedestal or flat-field events were found (checked after the first).

    Decompressing the events is most of the cost, so the first pass keeps the raw batches
    while they fit in ``cache_mb`` and the second pass reuses them; beyond that it reads the
    files again, and memory stays bounded either way."""
    options.validate()
    first = FirstPass(stream.n_pixels, stream.n_samples)
    cache: list[dl0.EventBatch] | None = []
    cached_bytes, budget = 0, cache_mb * 2**20
    for batch in dl0.iter_batches(stream, batch_size):
        first.add(batch.event_type, batch.waveforms, batch.times_unix)
        if cache is not None:
            cached_bytes += batch.waveforms.nbytes
            if cached_bytes <= budget:
                cache.append(batch)
            else:
                cache = None  # too many events: the second pass reads the files again
    for count, what in ((first.n_ped, "pedestal"), (first.n_ff, "flat-field")):
        if count < max(2, min_events):
            raise InvalidInput(
                f"telescope {stream.tel_id}, observation {stream.obs_id}: only {count} {what} "
                f"events (at least {max(2, min_events)} needed)"
            )
    second = SecondPass(first.result(options), stream.sampling_ghz, options)
    for batch in cache if cache is not None else dl0.iter_batches(stream, batch_size):
        second.add(batch.event_type, batch.waveforms)
    return second.result()


def product_name(tel_id: int, obs_id: int) -> str:
    return f"TEL{tel_id:03d}_OBSID{obs_id:010d}_CAMERA_CALIBRATION.fits"


@register_tool
class CameraCalibrationTool(Tool[CameraCalibrationConfig]):
    name: ClassVar[str] = "calibpipe-camera"
    description: ClassVar[str] = (
        "Camera calibration (pedestal, gain by the F-factor method, time shift, unusable "
        "pixels) from DL0 flat-field and pedestal events; input 'dl0'"
    )
    config_class: ClassVar[type[ToolConfig]] = CameraCalibrationConfig

    def setup(self) -> None:
        super().setup()
        self.streams = dl0.scan(self.input("dl0"))

    def start(self) -> None:
        cfg = self.config
        # Everything is computed before anything is written: a bad telescope leaves no
        # partial set of products behind.
        results = [
            (
                stream,
                calibrate(
                    stream,
                    cfg.options(),
                    batch_size=cfg.batch_size,
                    min_events=cfg.min_events,
                    cache_mb=cfg.cache_mb,
                ),
            )
            for stream in self.streams
        ]
        for stream, calibration in results:
            valid_from = iso(calibration.time_first - cfg.validity_before_s)
            valid_to = iso(calibration.time_last + cfg.validity_after_s, up=True)
            path = write_calibration(
                self.output_dir / product_name(stream.tel_id, stream.obs_id),
                calibration,
                tel_id=stream.tel_id,
                obs_id=stream.obs_id,
                camera=stream.camera,
                valid_from=valid_from,
                valid_to=valid_to,
                category=cfg.category or stream.category,
                site=stream.site,
            )
            self.add_output(
                path,
                "CAL",
                DATA_TYPE,
                tel_id=stream.tel_id,
                obs_id=stream.obs_id,
                valid_from=valid_from,
                valid_to=valid_to,
                unusable_pixels=int(calibration.unusable.sum()),
            )
