"""Camera calibration from pedestal and flat-field events: pure numerical code, no I/O.

Two passes over the events, each a streaming accumulator, so memory does not grow with the
number of events:

1. ``FirstPass``: per pixel, the pedestal (mean DL0 count per sample in pedestal events) and
   its width (standard deviation per sample), and the mean flat-field pulse shape. The
   integration window of each pixel is placed around the peak of its mean pulse
   (``window_width`` samples starting ``window_shift`` before the peak), and the fraction of
   the pulse area the window holds (its containment) is measured from the same mean pulse.
2. ``SecondPass``: per event and pixel, the pedestal-subtracted charge in that window (for
   both event types) and, for flat-field events, the pulse time (charge-weighted mean sample
   time in the window).

The gain comes from the F-factor (photostatistics) method. For N photo-electrons with mean
``mu`` and excess noise factor ``F`` (``Var N = F**2 mu``), the flat-field window charge
``Q = c g N + noise`` has ``<Q> = c g mu`` and ``Var Q = c**2 g**2 F**2 mu + Var Q_ped``, so

    c g = (Var Q - Var Q_ped) / (F**2 <Q>)          mu = <Q> / (c g)

where ``Var Q_ped`` is the variance of the same window charge in pedestal events and ``c`` the
containment. The product's gain is ``g``: DL0 counts per photo-electron of the whole pulse
(sum over all samples of ``waveform - pedestal`` = ``g`` x photo-electrons). ``F**2`` is a
property of the photodetectors and the light source, given as an option. In the ACADA
simulator's model the photodetectors add no excess noise, but the flat-field light fluctuates
by 5 % per event around 80 p.e., so ``Var N = mu + (0.05 mu)**2`` and the effective
``F**2 = 1 + 0.05**2 * 80 = 1.2``: the default.

Time shifts are per pixel: the mean over flat-field events of (pulse time - the camera's
median pulse time in that event), in ns; DataPipe subtracts them to align pulses.

Pixels are flagged unusable when their pedestal width is far below (dead) or above (hot, e.g.
a star) the camera median, their flat-field charge is missing, or their gain or time shift is
an outlier (``Flag``). Unusable pixels get finite stand-in values (the median gain, no time
shift) so arithmetic never meets NaN; consumers must mask them with ``unusable``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from enum import IntFlag

import numpy as np
from numpy.typing import NDArray

from dpps.core.errors import InvalidInput
from dpps.instrument.events import EventType

FloatArray = NDArray[np.float64]


class Flag(IntFlag):
    """Why a pixel is unusable (bits of the product's ``flags`` column)."""

    DEAD = 1  # no noise or no flat-field signal: the pixel does not respond
    HOT = 2  # pedestal far wider than the camera's: bright star, broken electronics
    BAD_GAIN = 4  # gain not measurable or far from the camera median
    BAD_TIME = 8  # time shift larger than allowed


@dataclass(frozen=True, slots=True)
class CalibrationOptions:
    """Knobs of the method; the defaults suit the ACADA simulator's cameras."""

    window_width: int = 7  # samples integrated per pixel
    window_shift: int = 3  # samples before the mean pulse's peak where the window starts
    excess_noise_f2: float = 1.2  # F**2 of photodetector + light source (see module doc)
    dead_width_fraction: float = 0.2  # width below this x median: dead
    hot_width_factor: float = 2.0  # width above this x median: hot
    min_charge_fraction: float = 0.2  # flat-field charge below this x median: dead
    gain_factor: float = 1.5  # gain outside [median / f, median * f]: bad gain ...
    gain_sigma: float = 4.0  # ... by more than this many statistical errors
    max_time_shift_ns: float = 5.0  # |time shift| above this: bad time

    def validate(self) -> None:
        checks = [
            (self.window_width >= 1, "window_width must be >= 1"),
            (self.window_shift >= 0, "window_shift must be >= 0"),
            (self.excess_noise_f2 >= 1.0, "excess_noise_f2 must be >= 1"),
            (0.0 <= self.dead_width_fraction < 1.0, "dead_width_fraction must be in [0, 1)"),
            (self.hot_width_factor > 1.0, "hot_width_factor must be > 1"),
            (0.0 <= self.min_charge_fraction < 1.0, "min_charge_fraction must be in [0, 1)"),
            (self.gain_factor > 1.0, "gain_factor must be > 1"),
            (self.gain_sigma >= 0.0, "gain_sigma must be >= 0"),
            (self.max_time_shift_ns > 0.0, "max_time_shift_ns must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidInput(f"camera calibration: {message}")


@dataclass(frozen=True, slots=True)
class CameraCalibration:
    """Per-pixel coefficients and what they were computed from."""

    pedestal: FloatArray  # DL0 counts per sample
    pedestal_width: FloatArray  # DL0 counts per sample (standard deviation)
    gain: FloatArray  # DL0 counts per photo-electron (whole pulse)
    gain_error: FloatArray  # its statistical uncertainty (1 sigma)
    time_shift: FloatArray  # ns, relative to the camera median
    flags: NDArray[np.int16]  # Flag bits; 0 = usable
    n_pe: FloatArray  # mean flat-field photo-electrons (F-factor estimate)
    n_pedestal: int
    n_flatfield: int
    time_first: float  # unix seconds (UTC) of the first and last calibration event
    time_last: float
    containment: float  # camera median of the window containment

    @property
    def unusable(self) -> NDArray[np.bool_]:
        return np.asarray(self.flags != 0, dtype=bool)


@dataclass(frozen=True, slots=True)
class Windows:
    """Result of the first pass: what the second pass needs."""

    pedestal: FloatArray
    pedestal_width: FloatArray
    start: NDArray[np.intp]  # first sample of each pixel's window
    containment: FloatArray
    n_pedestal: int
    n_flatfield: int
    time_first: float
    time_last: float


class FirstPass:
    """Pedestal moments and the mean flat-field pulse, accumulated batch by batch."""

    def __init__(self, n_pixels: int, n_samples: int) -> None:
        self.n_pixels, self.n_samples = n_pixels, n_samples
        self.ped_sum = np.zeros(n_pixels)
        self.ped_sumsq = np.zeros(n_pixels)
        self.n_ped = 0
        self.pulse_sum = np.zeros((n_pixels, n_samples))
        self.n_ff = 0
        self.time_first, self.time_last = math.inf, -math.inf

    def add(self, event_type: EventType, waveforms: NDArray[np.uint16], times: FloatArray) -> None:
        if waveforms.shape[1:] != (self.n_pixels, self.n_samples):
            raise InvalidInput(
                f"waveforms of shape {waveforms.shape[1:]}, expected "
                f"{(self.n_pixels, self.n_samples)}"
            )
        if times.size:
            self.time_first = min(self.time_first, float(times.min()))
            self.time_last = max(self.time_last, float(times.max()))
        if event_type == EventType.SKY_PEDESTAL:
            # einsum casts while it sums: ten times faster than converting the batch first
            self.ped_sum += np.einsum("eps->p", waveforms, dtype=np.float64, casting="unsafe")
            self.ped_sumsq += np.einsum(
                "eps,eps->p", waveforms, waveforms, dtype=np.float64, casting="unsafe"
            )
            self.n_ped += waveforms.shape[0]
        elif event_type == EventType.FLATFIELD:
            self.pulse_sum += waveforms.sum(axis=0, dtype=np.float64)
            self.n_ff += waveforms.shape[0]

    def result(self, options: CalibrationOptions) -> Windows:
        if self.n_ped < 2 or self.n_ff < 2:
            raise InvalidInput(
                f"camera calibration needs at least 2 pedestal and 2 flat-field events "
                f"(got {self.n_ped} and {self.n_ff})"
            )
        if options.window_width > self.n_samples:
            raise InvalidInput(
                f"window_width {options.window_width} exceeds the {self.n_samples} samples"
            )
        count = self.n_ped * self.n_samples
        pedestal = self.ped_sum / count
        width = np.sqrt(np.clip(self.ped_sumsq / count - pedestal**2, 0.0, None))
        pulse = self.pulse_sum / self.n_ff - pedestal[:, None]
        peak = np.argmax(pulse, axis=1)
        start = np.clip(peak - options.window_shift, 0, self.n_samples - options.window_width)
        window = start[:, None] + np.arange(options.window_width)[None, :]
        inside = np.take_along_axis(pulse, window, axis=1).sum(axis=1)
        total = pulse.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            containment = np.where(total > 0, inside / total, np.nan)
        sane = np.isfinite(containment) & (containment > 0.2) & (containment <= 1.5)
        containment = np.where(sane, np.clip(containment, None, 1.0), np.nan)
        return Windows(
            pedestal,
            width,
            start.astype(np.intp),
            containment,
            self.n_ped,
            self.n_ff,
            self.time_first,
            self.time_last,
        )


class _Moments:
    """Running count, sum and sum of squares per pixel (float64: exact enough for counts)."""

    def __init__(self, n_pixels: int) -> None:
        self.n = 0
        self.s1 = np.zeros(n_pixels)
        self.s2 = np.zeros(n_pixels)

    def add(self, values: FloatArray) -> None:
        self.n += values.shape[0]
        self.s1 += values.sum(axis=0)
        self.s2 += np.einsum("ep,ep->p", values, values)

    def mean(self) -> FloatArray:
        return self.s1 / self.n

    def var(self) -> FloatArray:
        """Sample variance (n - 1 in the denominator)."""
        return np.clip(self.s2 - self.s1**2 / self.n, 0.0, None) / (self.n - 1)


class SecondPass:
    """Window charges of the calibration events and pulse times of the flat-field events,
    reduced to running moments per pixel as they arrive (memory independent of the events)."""

    def __init__(self, windows: Windows, sampling_ghz: float, options: CalibrationOptions):
        self.windows = windows
        self.options = options
        self.index = windows.start[:, None] + np.arange(options.window_width)[None, :]
        self.sample_ns = (self.index + 0.5) / sampling_ghz  # (pixels, window) sample times
        n_pixels = windows.pedestal.size
        self.ped = _Moments(n_pixels)
        self.ff = _Moments(n_pixels)
        self.time_sum = np.zeros(n_pixels)
        self.time_count = np.zeros(n_pixels)

    def add(self, event_type: EventType, waveforms: NDArray[np.uint16]) -> None:
        if event_type not in (EventType.SKY_PEDESTAL, EventType.FLATFIELD):
            return
        index = np.broadcast_to(self.index, (waveforms.shape[0], *self.index.shape))
        signal = np.take_along_axis(waveforms, index, axis=2).astype(np.float64)
        signal -= self.windows.pedestal[None, :, None]
        charge = signal.sum(axis=2)
        if event_type == EventType.SKY_PEDESTAL:
            self.ped.add(charge)
            return
        self.ff.add(charge)
        with np.errstate(divide="ignore", invalid="ignore"):
            times = (signal * self.sample_ns[None]).sum(axis=2) / charge
        times = np.where(np.isfinite(times), times, np.nan)  # no charge: no time
        with warnings.catch_warnings():  # an event where no pixel has a time: skipped
            warnings.simplefilter("ignore", RuntimeWarning)
            relative = times - np.nanmedian(times, axis=1)[:, None]
        finite = np.isfinite(relative)
        self.time_sum += np.where(finite, relative, 0.0).sum(axis=0)
        self.time_count += finite.sum(axis=0)

    def result(self) -> CameraCalibration:
        w, opts = self.windows, self.options
        if self.ped.n < 2 or self.ff.n < 2:
            raise InvalidInput("camera calibration: the second pass saw fewer than 2 events")
        mean_q = self.ff.mean()
        var_ff, var_ped = self.ff.var(), self.ped.var()
        excess = var_ff - var_ped
        # Error propagation: a sample variance of n values has variance 2 var**2 / (n - 1).
        n_ff, n_ped = self.ff.n, self.ped.n
        d_excess2 = 2 * var_ff**2 / (n_ff - 1) + 2 * var_ped**2 / (n_ped - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            window_gain = np.where(
                (mean_q > 0) & (excess > 0), excess / (opts.excess_noise_f2 * mean_q), np.nan
            )
            gain = window_gain / w.containment
            n_pe = mean_q / window_gain
            rel_err = np.sqrt(d_excess2 / excess**2 + var_ff / (n_ff * mean_q**2))
            gain_error = gain * rel_err
            # a dead pixel has no time in any event: NaN, and flagged below
            time_shift = np.where(self.time_count > 0, self.time_sum / self.time_count, np.nan)
        flags = flag_pixels(w.pedestal_width, mean_q, gain, gain_error, time_shift, opts)
        good_gain = gain[(flags == 0) & np.isfinite(gain)]
        if not good_gain.size:
            raise InvalidInput(
                "camera calibration: no usable pixel (all dead, hot or without flat-field signal)"
            )
        median_gain = float(np.median(good_gain))
        finite = np.isfinite(gain) & np.isfinite(time_shift)
        return CameraCalibration(
            pedestal=w.pedestal,
            pedestal_width=w.pedestal_width,
            gain=np.where(finite & (flags == 0), gain, median_gain),
            gain_error=np.where(finite & (flags == 0), gain_error, 0.0),
            time_shift=np.where(finite & (flags == 0), time_shift, 0.0),
            flags=flags,
            n_pe=np.where(np.isfinite(n_pe) & (flags == 0), n_pe, 0.0),
            n_pedestal=w.n_pedestal,
            n_flatfield=w.n_flatfield,
            time_first=w.time_first,
            time_last=w.time_last,
            containment=float(np.nanmedian(w.containment))
            if np.isfinite(w.containment).any()
            else float("nan"),
        )


def flag_pixels(
    width: FloatArray,
    charge: FloatArray,
    gain: FloatArray,
    gain_error: FloatArray,
    time_shift: FloatArray,
    options: CalibrationOptions,
) -> NDArray[np.int16]:
    """Flag bits per pixel, judged against the camera medians (robust to a few bad pixels).

    A gain is an outlier only if it is outside the allowed factor *and* further from the
    median than ``gain_sigma`` statistical errors: with few flat-field events a good pixel's
    estimate scatters widely, and calling it unusable would throw away good data."""
    flags = np.zeros(width.shape, dtype=np.int16)
    median_width = float(np.median(width))
    median_charge = float(np.median(charge))
    flags[width < options.dead_width_fraction * median_width] |= Flag.DEAD
    flags[charge < options.min_charge_fraction * median_charge] |= Flag.DEAD
    flags[width > options.hot_width_factor * median_width] |= Flag.HOT
    finite = np.isfinite(gain)
    candidates = gain[finite & (flags == 0)]
    median_gain = float(np.median(candidates)) if candidates.size else math.nan
    with np.errstate(invalid="ignore"):
        outside = (gain > median_gain * options.gain_factor) | (
            gain < median_gain / options.gain_factor
        )
        # The error a typical pixel's estimate has (a pixel's own error shrinks with its
        # estimate, which would make low fluctuations look significant).
        typical = float(np.median(gain_error[finite] / gain[finite])) if finite.any() else 0.0
        significant = np.abs(gain / median_gain - 1) > options.gain_sigma * typical
        bad_gain = ~finite | (outside & significant)
        flags[bad_gain] |= Flag.BAD_GAIN
        flags[~np.isfinite(time_shift) | (np.abs(time_shift) > options.max_time_shift_ns)] |= (
            Flag.BAD_TIME
        )
    return flags
