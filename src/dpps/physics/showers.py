"""A simple but physical model of what Cherenkov cameras record: pure functions, no I/O.

Both simulators draw their waveforms here: the ACADA simulator (``dpps.acada``) for the DL0
files a site writes, SimPipe for simulation productions. So it lives outside either of them,
and everything is a deterministic function of its inputs and a ``numpy.random.Generator``. It is
meant to be good enough that a data pipeline finds showers in the data with the textbook
method (integrate the pulses, clean the image, compute Hillas moments); it is not a replacement
for CORSIKA/sim_telarray.

The model, step by step:

* **Cameras** are the instrument's (``dpps.instrument.camera``): hexagonal grids of pixels,
  coordinates in degrees on the sky.
* **Showers** (``draw_shower``): energy from a power law (spectral index 2.7 for hadrons,
  2.5 for gammas), a core position on the ground, a zenith-pointing array and a source in the
  camera centre (or, for SimPipe, at ``Shower.source_x_deg/source_y_deg``). Each telescope
  sees an ellipse (a 2-D Gaussian) whose centroid lies along the
  line from the source position towards the shower core, at an angular distance proportional
  to the impact distance (shower maximum ~10 km away); its major axis points back to the
  source. Length and width grow with log energy. The light (photo-electrons) scales with
  energy and mirror area and falls off outside the ~120 m Cherenkov light pool.
* **Hadrons** (``hadron_shape``) are not a separate population: each proton shower draws its
  own shape, so their width, length, concentration and time-gradient distributions overlap
  the gammas' as in real instruments. Most are wider, longer, lumpier (sub-showers: lower
  concentration, more islands), less well aligned with their origin and with a disordered
  time profile; a few per cent transfer most of their energy to a leading pi0 and make an
  electromagnetic, gamma-like image, the irreducible background (Maier & Knapp 2007). The
  figures behind the distributions are in ``docs/analysis.md`` ("The background").
* **Timing**: the pulse arrival time changes linearly along the major axis (a few ns per
  degree, steeper for distant cores), as real shower images do.
* **Muons** (``muon_image``): a ring of radius ~1.1 deg (the Cherenkov angle), intensity
  modulated around the ring by the impact point on the mirror.
* **Calibration** (``flatfield_image``, ``pedestal_image``): uniform illumination of every
  pixel, or no signal at all.
* **Waveforms** (``waveforms``): per pixel a Gaussian pulse (unit area over the samples) times
  the Poisson-fluctuated photo-electrons, plus night-sky background (Poisson) and electronic
  noise (Gaussian). ``dpps.instrument.camera.digitise`` stores them as uint16 the way DL0
  does: ``stored = (waveform + offset) * scale``, so ``waveform = stored / scale - offset``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dpps.instrument.camera import CameraSpec, FloatArray, pixel_positions

#: Distance to the shower maximum (m): converts impact distance to angle in the camera.
SHOWER_MAX_M = 10_000.0
#: Radius of the Cherenkov light pool on the ground (m): light falls off beyond it.
LIGHT_POOL_M = 120.0
#: Cherenkov angle of a muon at ground level (deg): the muon ring radius.
MUON_RING_DEG = 1.1
#: The standard thrown range: energies (TeV) and core radius (m) of the ACADA simulator's
#: wobble-mode source and SimPipe's defaults alike, so that IRFs made from SimPipe describe the
#: simulated nights.
THROWN_E_MIN_TEV, THROWN_E_MAX_TEV, THROWN_MAX_CORE_M = 0.05, 50.0, 400.0


@dataclass(frozen=True, slots=True)
class Shower:
    """One air shower: the truth shared by every telescope that sees it."""

    energy_tev: float
    core_x_m: float
    core_y_m: float
    hadron: bool
    #: Where the primary comes from, in the camera (deg): (0, 0) is the pointing direction.
    #: SimPipe places point sources off-centre (wobble) and diffuse hadrons in a view cone.
    source_x_deg: float = 0.0
    source_y_deg: float = 0.0


#: Fraction of proton showers whose leading pi0 makes a nearly electromagnetic, gamma-like
#: image (a few per cent: Maier & Knapp 2007, Astropart. Phys. 28, 72).
EM_LIKE_FRACTION = 0.06
#: Cherenkov light of a proton shower relative to a gamma shower of the same energy: about a
#: third to a half (hadronic energy goes to muons, neutrinos and nuclear binding).
HADRON_LIGHT_RANGE = (0.3, 0.55)


@dataclass(frozen=True, slots=True)
class HadronShape:
    """How one proton shower's image departs from a gamma's of the same energy and geometry.

    Multiplicative factors on the gamma width and length, the weight and offset of a second
    sub-shower (0 for none), extra misalignment of the axis (rad), the fraction of the gamma
    time gradient kept, the pulse-time jitter (ns) and the light yield relative to a gamma."""

    width: float
    length: float
    sub_weight: float
    sub_offset: float
    misalign_rad: float
    gradient: float
    jitter_ns: float
    light: float


GAMMA_SHAPE = HadronShape(1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.3, 1.0)


def _shower_rng(shower: Shower) -> np.random.Generator:
    """A generator keyed by the shower itself: what is a property of the shower (its pi0
    content, its light yield) must be the same in every telescope that sees it, and each
    telescope's image is drawn with its own generator."""
    key = np.array([shower.energy_tev, shower.core_x_m, shower.core_y_m], dtype=np.float64)
    return np.random.default_rng(np.frombuffer(key.tobytes(), dtype=np.uint32))


def hadron_shape(rng: np.random.Generator, shower: Shower) -> HadronShape:
    """A proton shower's shape in one telescope: shower-wide properties drawn from the
    shower's own generator, per-image fluctuations from ``rng``.

    Most showers: width x1.5 and length x1.2 (median) with log-normal spreads wide enough
    that a tail reaches gamma values (the mean-scaled-width distribution of protons is broad
    and overlaps the gammas', e.g. Ohm, van Eldik & Egberts 2009), a sub-shower in half of
    the images, a misaligned axis and a time gradient that is only partly ordered. The
    electromagnetic-like few per cent differ from gammas by a few per cent only, in every
    telescope."""
    own = _shower_rng(shower)
    light = float(own.uniform(*HADRON_LIGHT_RANGE))
    if own.random() < EM_LIKE_FRACTION:
        return HadronShape(
            width=float(own.lognormal(math.log(1.08), 0.05) * rng.lognormal(0.0, 0.05)),
            length=float(own.lognormal(math.log(1.05), 0.05) * rng.lognormal(0.0, 0.05)),
            sub_weight=0.0,
            sub_offset=0.0,
            misalign_rad=float(rng.normal(0.0, 0.04)),
            gradient=float(own.uniform(0.8, 1.0)),
            jitter_ns=0.4,
            light=light,
        )
    width = own.lognormal(math.log(1.5), 0.22) * rng.lognormal(0.0, 0.15)
    length = own.lognormal(math.log(1.2), 0.15) * rng.lognormal(0.0, 0.1)
    sub = rng.random() < 0.5
    return HadronShape(
        width=float(width),
        length=float(length),
        sub_weight=float(rng.uniform(0.1, 0.4)) if sub else 0.0,
        sub_offset=float(rng.normal(0.0, 2.0)),
        misalign_rad=float(rng.normal(0.0, 0.15)),
        gradient=float(own.uniform(0.0, 1.0)),
        jitter_ns=float(rng.uniform(0.5, 1.5)),
        light=light,
    )


@dataclass(frozen=True, slots=True)
class TelescopeImage:
    """What one telescope sees: expected photo-electrons and pulse times per pixel, with the
    image's true Hillas-like parameters (for tests and pipelines to compare against)."""

    pe: FloatArray
    peak_time_ns: FloatArray
    size_pe: float
    cog_x_deg: float
    cog_y_deg: float
    psi_rad: float
    length_deg: float
    width_deg: float


def draw_shower(
    rng: np.random.Generator,
    *,
    hadron_fraction: float = 0.9,
    e_min_tev: float = 0.03,
    e_max_tev: float = 100.0,
    max_core_m: float = 400.0,
) -> Shower:
    """A random shower: power-law energy, core uniform on a disc around the array centre."""
    hadron = bool(rng.random() < hadron_fraction)
    index = 2.7 if hadron else 2.5
    u = rng.random()
    a, b = e_min_tev ** (1 - index), e_max_tev ** (1 - index)
    energy = (a + u * (b - a)) ** (1 / (1 - index))
    r = max_core_m * math.sqrt(rng.random())
    phi = rng.uniform(0.0, 2 * math.pi)
    return Shower(float(energy), r * math.cos(phi), r * math.sin(phi), hadron)


def _gauss2d(
    x: FloatArray, y: FloatArray, cx: float, cy: float, length: float, width: float, psi: float
) -> tuple[FloatArray, FloatArray]:
    """Normalised 2-D Gaussian density (per deg^2) and the longitudinal coordinate."""
    dx, dy = x - cx, y - cy
    cos, sin = math.cos(psi), math.sin(psi)
    along = dx * cos + dy * sin
    across = -dx * sin + dy * cos
    density = np.exp(-0.5 * ((along / length) ** 2 + (across / width) ** 2))
    return density / (2 * math.pi * length * width), along


def shower_image(
    rng: np.random.Generator,
    camera: CameraSpec,
    shower: Shower,
    tel_x_m: float,
    tel_y_m: float,
) -> TelescopeImage:
    """The image of ``shower`` in a telescope at (tel_x_m, tel_y_m).

    The image lies along the line from the shower's source position towards the core, as
    seen from the telescope (ground and camera axes aligned: the toy model ignores the tilt
    of the shower plane), so every telescope's image axis passes through the source."""
    x, y = pixel_positions(camera)
    dx, dy = shower.core_x_m - tel_x_m, shower.core_y_m - tel_y_m
    impact = math.hypot(dx, dy)
    psi = math.atan2(dy, dx) if impact > 1e-6 else rng.uniform(-math.pi, math.pi)
    dist = math.degrees(impact / SHOWER_MAX_M) + 0.1 * math.log10(1 + shower.energy_tev)
    cog_x = shower.source_x_deg + dist * math.cos(psi)
    cog_y = shower.source_y_deg + dist * math.sin(psi)
    log_e = math.log10(shower.energy_tev)
    shape = hadron_shape(rng, shower) if shower.hadron else GAMMA_SHAPE
    length = (0.08 + 0.05 * (log_e + 1.5) + 0.0002 * impact) * shape.length
    width = (0.035 + 0.012 * (log_e + 1.5)) * shape.width
    length, width = max(length, 0.05), max(width, 0.02)
    pool = 1.0 if impact <= LIGHT_POOL_M else math.exp(-(impact - LIGHT_POOL_M) / 80.0)
    size = 500.0 * shower.energy_tev * (camera.mirror_area_m2 / 100.0) * pool * shape.light
    axis = psi + shape.misalign_rad  # the centroid stays on the line, the axis turns about it
    density, along = _gauss2d(x, y, cog_x, cog_y, length, width, axis)
    if shape.sub_weight > 0:  # a second, offset sub-shower makes the image irregular
        off = shape.sub_offset * width
        extra, _ = _gauss2d(
            x,
            y,
            cog_x - off * math.sin(psi),
            cog_y + off * math.cos(psi),
            0.6 * length,
            width,
            axis + rng.normal(0.0, 0.3),
        )
        density = (1 - shape.sub_weight) * density + shape.sub_weight * extra
    pixel_area = camera.pixel_spacing_deg**2 * math.sqrt(3) / 2
    pe = size * density * pixel_area
    gradient = (2.0 + impact / 50.0) * shape.gradient  # ns per deg, steeper for distant cores
    peak = camera.window_ns / 2 + gradient * along + rng.normal(0.0, shape.jitter_ns, x.size)
    return TelescopeImage(pe, peak, float(pe.sum()), cog_x, cog_y, axis, length, width)


def muon_image(rng: np.random.Generator, camera: CameraSpec) -> TelescopeImage:
    """A muon ring: radius ~ the Cherenkov angle, centre near the camera centre."""
    x, y = pixel_positions(camera)
    cx, cy = rng.normal(0.0, 0.5, 2)
    radius = MUON_RING_DEG * rng.uniform(0.95, 1.05)
    ring_width = 0.05
    rho = rng.uniform(0.0, 0.9)  # impact on the mirror, in units of its radius
    phi0 = rng.uniform(-math.pi, math.pi)
    r = np.hypot(x - cx, y - cy)
    phi = np.arctan2(y - cy, x - cx)
    profile = np.exp(-0.5 * ((r - radius) / ring_width) ** 2)
    modulation = 1.0 + rho * np.cos(phi - phi0)
    total = 12.0 * camera.mirror_area_m2  # photo-electrons in the full ring
    weights = profile * modulation
    norm = 2 * math.pi * radius * math.sqrt(2 * math.pi) * ring_width
    pixel_area = camera.pixel_spacing_deg**2 * math.sqrt(3) / 2
    pe = total * weights * pixel_area / norm
    peak = np.full(x.size, camera.window_ns / 2) + rng.normal(0.0, 0.3, x.size)
    return TelescopeImage(pe, peak, float(pe.sum()), float(cx), float(cy), 0.0, radius, radius)


def flatfield_image(rng: np.random.Generator, camera: CameraSpec) -> TelescopeImage:
    """Uniform illumination (~80 p.e. per pixel, 5 % pixel-to-pixel spread)."""
    n = camera.n_pixels
    pe = 80.0 * rng.normal(1.0, 0.05, n).clip(0.5, 1.5)
    peak = np.full(n, camera.window_ns / 2)
    return TelescopeImage(pe, peak, float(pe.sum()), 0.0, 0.0, 0.0, 0.0, 0.0)


def pedestal_image(camera: CameraSpec) -> TelescopeImage:
    """No signal: the waveforms hold only night-sky background and electronic noise."""
    n = camera.n_pixels
    zeros = np.zeros(n)
    return TelescopeImage(zeros, np.full(n, camera.window_ns / 2), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def waveforms(
    rng: np.random.Generator, camera: CameraSpec, image: TelescopeImage
) -> NDArray[np.float32]:
    """Waveforms (pixels x samples) in photo-electrons per sample: Poisson signal in a
    Gaussian pulse of unit area, Poisson night-sky background, Gaussian electronic noise."""
    n_pix, n_samp = camera.n_pixels, camera.n_samples
    t = (np.arange(n_samp) + 0.5) / camera.sampling_ghz
    signal = rng.poisson(np.clip(image.pe, 0.0, 1e6)).astype(np.float64)
    sigma = camera.pulse_sigma_ns
    pulse = np.exp(-0.5 * ((t[None, :] - image.peak_time_ns[:, None]) / sigma) ** 2)
    pulse *= 1.0 / (sigma * math.sqrt(2 * math.pi) * camera.sampling_ghz)  # unit area
    wave = signal[:, None] * pulse
    nsb_mean = camera.nsb_pe_per_ns / camera.sampling_ghz
    wave += rng.poisson(nsb_mean, (n_pix, n_samp)) - nsb_mean
    wave += rng.normal(0.0, camera.noise_pe, (n_pix, n_samp))
    return wave.astype(np.float32)


def telescope_triggers(image: TelescopeImage, threshold_pe: float = 50.0) -> bool:
    """A telescope triggers on a shower when its image holds enough light."""
    return image.size_pe >= threshold_pe
