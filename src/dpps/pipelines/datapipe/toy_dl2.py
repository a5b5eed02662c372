"""A physically simple DL2 event generator whose answers are known (tests and the DL3 guide).

The IRF and DL3 tools must be checked against a truth: an effective area we can compute on
paper, a spectrum we put in and must get back out of gammapy. The real chain (SimPipe ->
DataPipe) has no closed-form answer, so this module generates DL2 tables, in the exact format of
docs/data-formats.md, from a toy instrument with these documented properties:

* **Showers** are thrown uniformly on a disc of radius ``max_impact_m`` around the array, with
  a power-law energy spectrum between ``e_min`` and ``e_max``. Detection does not depend on
  the core position, so the true effective area (before any cut) is
  ``A(E) = pi R^2 p(E)`` with ``p(E) = efficiency / (1 + (E / threshold)^-sharpness)``;
  protons have a lower efficiency and a higher threshold than gammas.
* **Energy**: ``reco_energy = scale * true_energy * exp(N(0, sigma(E)))`` with
  ``sigma(E) = 0.08 + 0.1 (E / 0.1 TeV)^-0.5`` (capped at 0.4); ``scale`` is 1 for gammas and
  0.5 for protons (a hadron shower makes less Cherenkov light than a gamma of the same energy).
* **Direction**: a gamma's reconstructed direction is its true one displaced by a circular
  Gaussian of width ``psf(E) = 0.12 deg (E / 0.1 TeV)^-0.4``, clipped to [0.03, 0.15] deg;
  protons arrive isotropically within a view cone around the pointing, reconstructed with
  three times that width.
* **Gamma/hadron score**: Beta(6, 2) for gammas, Beta(2.5, 3) for protons.
* **Multiplicity**: 2 + Binomial(n_tel - 2, p(E) / efficiency) of the four telescopes.
* **Sky**: a simulated production points at a fixed alt/az (gammas from a point at
  ``source_offset_deg`` from the pointing, protons diffuse in ``view_cone_deg``: ``SIM_VCON``);
  an observation tracks a wobble position ``wobble_deg`` away from a target whose flux is a
  power law, under the cosmic-ray proton flux of pyirf (``IRFDOC_PROTON_SPECTRUM``). The toy
  has no zenith dependence, so an IRF simulated at one alt/az applies to every observation.

Detected events are drawn directly: their number is Binomial(thrown, P) (simulation) or
Poisson(expected thrown * P) (observation), P being the detection probability averaged over the
thrown spectrum, and their energies come from the thrown spectrum times p(E) by inverse CDF on
a fine grid, which is the same population a shower-by-shower thinning would give.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.coordinates import AltAz, EarthLocation, SkyCoord, offset_by
from astropy.coordinates.erfa_astrom import ErfaAstromInterpolator, erfa_astrom
from astropy.io import fits
from astropy.table import QTable
from astropy.time import Time
from astropy.utils import iers
from pyirf.spectral import IRFDOC_PROTON_SPECTRUM, PowerLaw

#: CTAO-North, as in dpps.instrument.sites.LOCATIONS.
SITE = {"OBSERVAT": "CTAO-North", "GEOLAT": 28.7616, "GEOLON": -17.8906, "ALTITUDE": 2200.0}
N_TELS = 4
CRAB_RA, CRAB_DEC = 83.6333, 22.0145


@dataclass(frozen=True)
class ParticleModel:
    efficiency: float
    threshold_tev: float
    sharpness: float
    energy_scale: float
    psf_factor: float
    score_beta: tuple[float, float]

    def detection(self, energy_tev: np.ndarray) -> np.ndarray:
        e = np.asarray(energy_tev, dtype=float)
        return self.efficiency / (1.0 + (e / self.threshold_tev) ** -self.sharpness)


@dataclass(frozen=True)
class ToyInstrument:
    max_impact_m: float = 1000.0
    gamma: ParticleModel = ParticleModel(0.3, 0.08, 3.0, 1.0, 1.0, (6.0, 2.0))
    proton: ParticleModel = ParticleModel(0.012, 0.3, 3.0, 0.5, 3.0, (2.5, 3.0))

    def model(self, particle: str) -> ParticleModel:
        return self.gamma if particle == "gamma" else self.proton

    @property
    def area(self) -> u.Quantity:
        return np.pi * (self.max_impact_m * u.m) ** 2

    def true_effective_area(self, energy: u.Quantity, particle: str = "gamma") -> u.Quantity:
        """The answer an IRF without cuts must give: pi R^2 p(E)."""
        return self.area * self.model(particle).detection(energy.to_value(u.TeV))


def energy_sigma(true_energy_tev: np.ndarray) -> np.ndarray:
    return np.minimum(0.08 + 0.1 * (true_energy_tev / 0.1) ** -0.5, 0.4)


def psf_deg(true_energy_tev: np.ndarray) -> np.ndarray:
    return np.clip(0.12 * (true_energy_tev / 0.1) ** -0.4, 0.03, 0.15)


def _detected_energies(
    rng: np.random.Generator,
    thrown: float,
    index: float,
    e_min: float,
    e_max: float,
    model: ParticleModel,
) -> np.ndarray:
    grid = np.geomspace(e_min, e_max, 8001)
    pdf = grid**index
    norm = np.trapezoid(pdf, grid)
    density = pdf * model.detection(grid) / norm
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(grid))])
    p_mean = cdf[-1]
    if isinstance(thrown, int | np.integer):
        n = rng.binomial(int(thrown), p_mean)
    else:
        n = rng.poisson(thrown * p_mean)
    energies: np.ndarray = np.interp(rng.uniform(0.0, p_mean, n), cdf, grid)
    return energies


def _powerlaw_integral(spectrum: PowerLaw, e_min: float, e_max: float) -> u.Quantity:
    g = spectrum.index + 1.0
    e_ref = spectrum.e_ref.to_value(u.TeV)
    return (
        spectrum.normalization * u.TeV * e_ref * ((e_max / e_ref) ** g - (e_min / e_ref) ** g) / g
    )


def _reconstruct(
    rng: np.random.Generator,
    model: ParticleModel,
    true_energy: np.ndarray,
    true_az: np.ndarray,
    true_alt: np.ndarray,
) -> dict[str, np.ndarray]:
    n = len(true_energy)
    reco_e = model.energy_scale * true_energy * np.exp(rng.normal(0.0, energy_sigma(true_energy)))
    width = model.psf_factor * psf_deg(true_energy)
    distance = width * np.sqrt(-2.0 * np.log1p(-rng.uniform(0.0, 1.0, n)))  # Rayleigh
    lon, lat = offset_by(
        np.deg2rad(true_az) * u.rad,
        np.deg2rad(true_alt) * u.rad,
        rng.uniform(0, 2 * np.pi, n) * u.rad,
        np.deg2rad(distance) * u.rad,
    )
    fraction = model.detection(true_energy) / model.efficiency
    return {
        "multiplicity": 2 + rng.binomial(N_TELS - 2, np.clip(fraction, 0.0, 1.0)),
        "reco_energy": reco_e,
        "reco_alt": lat.to_value(u.deg),
        "reco_az": lon.wrap_at(360 * u.deg).to_value(u.deg),
        "gh_score": rng.beta(*model.score_beta, n),
    }


def _diffuse(
    rng: np.random.Generator, az: np.ndarray, alt: np.ndarray, cone_deg: float
) -> tuple[np.ndarray, np.ndarray]:
    """Directions isotropic in a cone around (az, alt): uniform in cos(offset)."""
    n = len(az)
    cos_theta = rng.uniform(np.cos(np.deg2rad(cone_deg)), 1.0, n)
    lon, lat = offset_by(
        np.deg2rad(az) * u.rad,
        np.deg2rad(alt) * u.rad,
        rng.uniform(0, 2 * np.pi, n) * u.rad,
        np.arccos(cos_theta) * u.rad,
    )
    return lon.wrap_at(360 * u.deg).to_value(u.deg), lat.to_value(u.deg)


def _table(columns: dict[str, Any]) -> QTable:
    degrees = ("reco_alt", "reco_az", "pointing_alt", "pointing_az", "true_alt", "true_az")
    units = {
        "time": u.s,
        "reco_energy": u.TeV,
        "true_energy": u.TeV,
        "true_core_x": u.m,
        "true_core_y": u.m,
    } | dict.fromkeys(degrees, u.deg)
    table = QTable()
    for name, values in columns.items():
        table[name] = values * units[name] if name in units else values
    return table


def write_dl2(path: Path, events: QTable, header: dict[str, Any]) -> Path:
    primary = fits.PrimaryHDU()
    for key, value in header.items():
        primary.header[key] = value
    hdu = fits.table_to_hdu(events)
    hdu.name = "EVENTS"
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList([primary, hdu]).writeto(path, checksum=True)
    return path


@dataclass(frozen=True)
class Production:
    """A simulated production: what SimPipe + DataPipe would give for one particle."""

    particle: str
    n_showers: int
    e_min: float = 0.02
    e_max: float = 200.0
    index: float = -2.0
    source_offset_deg: float = 0.4
    view_cone_deg: float = 1.5
    pointing_alt: float = 70.0
    pointing_az: float = 180.0
    obs_id: int = 1


def simulated_dl2(
    prod: Production, seed: int, instrument: ToyInstrument = ToyInstrument()
) -> tuple[QTable, dict[str, Any]]:
    rng = np.random.default_rng(seed)
    model = instrument.model(prod.particle)
    energy = _detected_energies(rng, prod.n_showers, prod.index, prod.e_min, prod.e_max, model)
    n = len(energy)
    pnt_az, pnt_alt = np.full(n, prod.pointing_az), np.full(n, prod.pointing_alt)
    if prod.particle == "gamma":
        lon, lat = offset_by(
            np.deg2rad(pnt_az) * u.rad,
            np.deg2rad(pnt_alt) * u.rad,
            np.full(n, np.pi / 2) * u.rad,
            np.full(n, np.deg2rad(prod.source_offset_deg)) * u.rad,
        )
        true_az, true_alt = lon.wrap_at(360 * u.deg).to_value(u.deg), lat.to_value(u.deg)
        cone = 0.0
    else:
        true_az, true_alt = _diffuse(rng, pnt_az, pnt_alt, prod.view_cone_deg)
        cone = prod.view_cone_deg
    radius = instrument.max_impact_m * np.sqrt(rng.uniform(0, 1, n))
    phi = rng.uniform(0, 2 * np.pi, n)
    columns = {
        "obs_id": np.full(n, prod.obs_id),
        "event_id": np.arange(1, n + 1),
        "time": 1.7e9 + np.sort(rng.uniform(0, 3600, n)),
        **_reconstruct(rng, model, energy, true_az, true_alt),
        "pointing_alt": pnt_alt,
        "pointing_az": pnt_az,
        "true_energy": energy,
        "true_alt": true_alt,
        "true_az": true_az,
        "true_core_x": radius * np.cos(phi),
        "true_core_y": radius * np.sin(phi),
        "particle_type": np.full(n, prod.particle),
    }
    header = {
        "DATALEVL": "DL2",
        "DATACAT": "SIM",
        "PARTICLE": prod.particle,
        "SIM_NSHW": prod.n_showers,
        "SIM_EMIN": prod.e_min,
        "SIM_EMAX": prod.e_max,
        "SIM_IDX": prod.index,
        "SIM_RMAX": instrument.max_impact_m,
        "SIM_VCON": cone,
    }
    if prod.particle == "gamma":
        header["SRC_OFFS"] = prod.source_offset_deg
    return _table(columns), header


#: The simulated source: a Crab-like power law (flux at 1 TeV, cm-2 s-1 TeV-1).
SOURCE_AMPLITUDE = 3.5e-11
SOURCE_INDEX = 2.5


@dataclass(frozen=True)
class Observation:
    obs_id: int
    start: str = "2026-11-22T01:30:00"
    duration_s: float = 600.0
    target: str = "Crab"
    ra_deg: float = CRAB_RA
    dec_deg: float = CRAB_DEC
    wobble_deg: float = 0.4
    wobble_posang_deg: float = 0.0
    amplitude: float = SOURCE_AMPLITUDE
    index: float = SOURCE_INDEX
    view_cone_deg: float = 1.5
    e_min: float = 0.02
    e_max: float = 200.0
    site: dict[str, Any] = field(default_factory=lambda: dict(SITE))


def observed_dl2(
    obs: Observation, seed: int, instrument: ToyInstrument = ToyInstrument()
) -> tuple[QTable, dict[str, Any]]:
    rng = np.random.default_rng(seed)
    duration = obs.duration_s * u.s
    source = PowerLaw(obs.amplitude * u.Unit("cm-2 s-1 TeV-1"), -obs.index)
    solid_angle = 2 * np.pi * (1 - np.cos(np.deg2rad(obs.view_cone_deg))) * u.sr
    parts = []
    for particle, spectrum, extent in (
        ("gamma", source, 1.0),
        ("proton", IRFDOC_PROTON_SPECTRUM, solid_angle),
    ):
        expected = (
            _powerlaw_integral(spectrum, obs.e_min, obs.e_max)
            * instrument.area
            * duration
            * extent
        ).to_value(u.one)
        energy = _detected_energies(
            rng, float(expected), spectrum.index, obs.e_min, obs.e_max, instrument.model(particle)
        )
        parts.append((particle, energy))
    kinds = np.concatenate([np.full(len(e), p) for p, e in parts])
    energy = np.concatenate([e for _, e in parts])
    offsets = rng.uniform(0, obs.duration_s, len(energy))
    order = np.argsort(offsets)
    kinds, energy, offsets = kinds[order], energy[order], offsets[order]
    start = Time(obs.start, scale="utc")
    times = start + offsets * u.s
    location = EarthLocation(
        lon=obs.site["GEOLON"] * u.deg,
        lat=obs.site["GEOLAT"] * u.deg,
        height=obs.site["ALTITUDE"] * u.m,
    )
    target = SkyCoord(obs.ra_deg * u.deg, obs.dec_deg * u.deg)
    pointing = target.directional_offset_by(obs.wobble_posang_deg * u.deg, obs.wobble_deg * u.deg)
    frame = AltAz(obstime=times, location=location)
    with (
        iers.conf.set_temp("auto_download", False),
        iers.conf.set_temp("auto_max_age", None),
        erfa_astrom.set(ErfaAstromInterpolator(60 * u.s)),
    ):
        pnt = pointing.transform_to(frame)
        src = target.transform_to(frame)
    pnt_az, pnt_alt = pnt.az.to_value(u.deg), pnt.alt.to_value(u.deg)
    true_az, true_alt = src.az.to_value(u.deg), src.alt.to_value(u.deg)
    is_proton = kinds == "proton"
    true_az[is_proton], true_alt[is_proton] = _diffuse(
        rng, pnt_az[is_proton], pnt_alt[is_proton], obs.view_cone_deg
    )
    reco: dict[str, np.ndarray] = {}
    for name in ("gamma", "proton"):
        mask = kinds == name
        part = _reconstruct(
            rng, instrument.model(name), energy[mask], true_az[mask], true_alt[mask]
        )
        for key, values in part.items():
            reco.setdefault(key, np.zeros(len(energy), dtype=values.dtype))[mask] = values
    columns = {
        "obs_id": np.full(len(energy), obs.obs_id),
        "event_id": np.arange(1, len(energy) + 1),
        "time": times.unix,
        **reco,
        "pointing_alt": pnt_alt,
        "pointing_az": pnt_az,
    }
    end = start + duration
    header = {
        "DATALEVL": "DL2",
        "DATACAT": "B",
        **obs.site,
        "OBS_ID": obs.obs_id,
        "OBJECT": obs.target,
        "RA_OBJ": obs.ra_deg,
        "DEC_OBJ": obs.dec_deg,
        "DATE-OBS": start.isot,
        "DATE-END": end.isot,
    }
    table = _table(columns)
    table.meta["n_gamma"] = int(np.count_nonzero(~is_proton))
    return table, header


def write_production(directory: Path, seed: int = 1, scale: float = 1.0) -> dict[str, Path]:
    """Gamma (point-like at 0.4 deg) and proton (diffuse) DL2 of a small production."""
    out: dict[str, Path] = {}
    for kind, n_showers in (("gamma", int(3e5 * scale)), ("proton", int(3e7 * scale))):
        events, header = simulated_dl2(Production(kind, n_showers), seed + len(out))
        out[kind] = write_dl2(directory / f"sim_{kind}.dl2.fits", events, header)
    return out


def write_observations(directory: Path, seed: int = 10, n: int = 2) -> list[Path]:
    """``n`` Crab wobble observations (alternating +-0.4 deg in declination)."""
    paths = []
    for i in range(n):
        obs = Observation(
            obs_id=1001 + i,
            start=str(Time("2026-11-22T01:30:00") + i * 660 * u.s),
            wobble_posang_deg=180.0 * (i % 2),
        )
        events, header = observed_dl2(obs, seed + i)
        paths.append(write_dl2(directory / f"obs_{obs.obs_id}.dl2.fits", events, header))
    return paths
