"""The analysis check: find a target's DL3 and its IRFs in the archive, fetch them, fit them.

This is the ESCAPE analysis scenario end to end, and the proof that DL3 written by
``datapipe-dl3`` is usable science data: an astronomer knows a target, not file names. The
archive is asked (``data_level=DL3 and product_type="event list" and meta.target=...``), each
event list names the IRF that belongs to it (same ``obs_id`` and ``meta.irf_id``), both are
retrieved with checksums verified, indexed afresh in the retrieval directory and analysed with
gammapy: ON region at the target with the IRF's RAD_MAX, background from reflected (wobble)
regions, a joint forward-folded power-law fit with WStat.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord

from dpps.bdms.archive import Archive
from dpps.bdms.types import FileInfo
from dpps.core.errors import DppsError, IntegrityFailure, InvalidInput, NotFound
from dpps.pipelines.datapipe.gadf import write_index_tables


@dataclass(frozen=True)
class FoundObservation:
    """One observation of the target: its event list and the IRF that belongs to it."""

    obs_id: int
    events: FileInfo
    irf: FileInfo


def _quote(value: str) -> str:
    if '"' in value and "'" in value:
        raise InvalidInput(f"target name {value!r} contains both quote characters")
    return f"'{value}'" if '"' in value else f'"{value}"'


def find_observations(
    archive: Archive, target: str, *, category: str | None = None
) -> list[FoundObservation]:
    """Event lists of ``target`` (optionally of one category) and their IRFs, by obs_id."""
    extra = f" and category={category}" if category else ""
    events = archive.list_files(
        f'data_level=DL3 and product_type="event list" and meta.target={_quote(target)}{extra}',
        limit=None,
    )
    if not events:
        raise NotFound(f"no DL3 event list for target {target!r} in the archive")
    obs_ids = sorted({e.obs_id for e in events if e.obs_id is not None})
    irfs = archive.list_files(
        f"data_level=DL3 and product_type=irf and obs_id in ({', '.join(map(str, obs_ids))})"
        + extra,
        limit=None,
    )
    found = []
    for ev in events:
        match = [
            i
            for i in irfs
            if i.obs_id == ev.obs_id
            and i.meta.get("irf_id") == ev.meta.get("irf_id")
            and i.category == ev.category
        ]
        if len(match) != 1:
            raise NotFound(
                f"event list {ev.did}: {len(match)} IRFs with obs_id={ev.obs_id} and "
                f"irf_id={ev.meta.get('irf_id')} (expected exactly one)"
            )
        found.append(FoundObservation(int(ev.obs_id or 0), ev, match[0]))
    return sorted(found, key=lambda f: f.obs_id)


def retrieve_observations(
    archive: Archive, found: Sequence[FoundObservation], dest: Path
) -> tuple[Path, Path]:
    """Fetch (checksum-verified) event lists and IRFs into ``dest`` and index them there."""
    if not found:
        raise InvalidInput("nothing to retrieve")
    dids = [d for f in found for d in (f.events.did, f.irf.did)]
    report = archive.get(dids, dest, overwrite=True)
    if report.failed:
        problems = "; ".join(f"{r.did}: {r.error}" for r in report.failed)
        raise IntegrityFailure(f"{len(report.failed)} DL3 files not retrieved: {problems}")
    paths = [dest / Path(f.name).name for f in (x for o in found for x in (o.events, o.irf))]
    absent = [p.name for p in paths if not p.is_file()]
    if absent:
        raise NotFound(f"retrieved files missing in {dest}: {absent}")
    return write_index_tables(dest, paths)


@dataclass(frozen=True)
class OffExposure:
    """What one observation's OFF regions covered, per reconstructed-energy bin of the
    analysis: enough to predict their background counts from a background IRF."""

    obs_id: int
    livetime_s: float
    offset_deg: float  # of the ON region (and so of every reflected OFF region) from pointing
    energy_edges_tev: tuple[float, ...]
    safe: tuple[bool, ...]
    n_regions: tuple[float, ...]  # OFF regions per bin (gammapy's acceptance_off)
    rad_max_deg: tuple[float, ...]
    counts_off: tuple[int, ...]


@dataclass(frozen=True)
class SpectrumFit:
    """A power law dN/dE = amplitude (E / reference)^-index, fitted to the ON/OFF counts."""

    index: float
    index_error: float
    amplitude: float  # cm-2 s-1 TeV-1
    amplitude_error: float
    reference_tev: float
    n_observations: int
    n_on: int
    n_off: int
    excess: float
    alpha: float
    significance: float  # Li & Ma (WStat) of the stacked ON/OFF counts, gammapy's
    livetime_s: float
    success: bool
    off_exposure: tuple[OffExposure, ...] = ()

    def pulls(self, index: float, amplitude: float) -> tuple[float, float]:
        """(fit - truth) / error for the index and the amplitude."""
        return (
            (self.index - index) / self.index_error,
            (self.amplitude - amplitude) / self.amplitude_error,
        )


def fit_power_law(
    directory: Path,
    ra_deg: float,
    dec_deg: float,
    *,
    energy_range_tev: tuple[float, float] = (0.1, 30.0),
    bins_per_decade: int = 5,
    n_off_regions: int = 3,
    reference_tev: float = 1.0,
) -> SpectrumFit:
    """1D point-like spectral analysis of every observation indexed in ``directory``."""
    from gammapy.data import DataStore
    from gammapy.datasets import Datasets, SpectrumDataset
    from gammapy.makers import (
        ReflectedRegionsBackgroundMaker,
        SafeMaskMaker,
        SpectrumDatasetMaker,
        WobbleRegionsFinder,
    )
    from gammapy.maps import MapAxis, RegionGeom
    from gammapy.modeling import Fit
    from gammapy.modeling.models import PowerLawSpectralModel, SkyModel
    from regions import PointSkyRegion

    store = DataStore.from_dir(directory)
    observations = store.get_observations(required_irf="point-like")
    if len(observations) == 0:
        raise NotFound(f"no point-like observation in {directory}")
    e_min, e_max = energy_range_tev
    reco = MapAxis.from_energy_bounds(
        e_min, e_max, nbin=bins_per_decade, per_decade=True, unit="TeV", name="energy"
    )
    true = MapAxis.from_energy_bounds(
        e_min / 5,
        e_max * 5,
        nbin=2 * bins_per_decade,
        per_decade=True,
        unit="TeV",
        name="energy_true",
    )
    target = SkyCoord(ra_deg, dec_deg, unit="deg", frame="icrs")
    geom = RegionGeom.create(region=PointSkyRegion(target), axes=[reco])
    empty = SpectrumDataset.create(geom=geom, energy_axis_true=true)
    maker = SpectrumDatasetMaker(
        containment_correction=False, selection=["counts", "exposure", "edisp"]
    )
    background = ReflectedRegionsBackgroundMaker(
        region_finder=WobbleRegionsFinder(n_off_regions=n_off_regions)
    )
    safe = SafeMaskMaker(methods=["aeff-max"], aeff_percent=10)
    datasets = Datasets()
    exposures = []
    logging.getLogger("gammapy").setLevel(logging.ERROR)
    for obs in observations:
        dataset = maker.run(empty.copy(name=f"obs_{obs.obs_id}"), obs)
        on_off = safe.run(background.run(dataset, obs), obs)
        if on_off.counts_off is None:
            raise DppsError(
                f"observation {obs.obs_id}: no OFF region of {n_off_regions} fits beside the "
                "ON region (its RAD_MAX is too wide for the wobble offset; an IRF made of "
                "too few gammas?)"
            )
        datasets.append(on_off)
        exposures.append(_off_exposure(obs, on_off, target))
    model = PowerLawSpectralModel(
        index=2.0, amplitude=1e-11 * u.Unit("cm-2 s-1 TeV-1"), reference=reference_tev * u.TeV
    )
    datasets.models = [SkyModel(spectral_model=model, name="target")]
    result = Fit().run(datasets=datasets)
    index, amplitude = model.parameters["index"], model.parameters["amplitude"]
    stacked = datasets.stack_reduce()
    info = stacked.info_dict()
    return SpectrumFit(
        index=float(index.value),
        index_error=float(index.error),
        amplitude=float(u.Quantity(amplitude.quantity).to_value("cm-2 s-1 TeV-1")),
        amplitude_error=float((amplitude.error * amplitude.unit).to_value("cm-2 s-1 TeV-1")),
        reference_tev=reference_tev,
        n_observations=len(datasets),
        n_on=int(info["counts"]),
        n_off=int(info["counts_off"]),
        excess=float(info["excess"]),
        alpha=float(info["alpha"]),
        significance=float(info["sqrt_ts"]),
        livetime_s=float(u.Quantity(info["livetime"]).to_value(u.s)),
        success=bool(result.success),
        off_exposure=tuple(exposures),
    )


def _off_exposure(obs: Any, on_off: Any, target: SkyCoord) -> OffExposure:
    """The OFF regions of one observation's dataset, bin by bin."""
    axis = on_off.counts.geom.axes["energy"]
    edges = axis.edges.to_value(u.TeV)
    offset = obs.get_pointing_icrs(obs.tmid).separation(target).to(u.deg)
    rad_max = obs.rad_max.evaluate(energy=axis.center, offset=offset)
    return OffExposure(
        obs_id=int(obs.obs_id),
        livetime_s=float(u.Quantity(obs.observation_live_time_duration).to_value(u.s)),
        offset_deg=float(offset.value),
        energy_edges_tev=tuple(float(e) for e in edges),
        safe=tuple(bool(m) for m in np.ravel(on_off.mask_safe.data)),
        n_regions=tuple(float(a) for a in np.ravel(on_off.acceptance_off.data)),
        rad_max_deg=tuple(float(r) for r in np.ravel(u.Quantity(rad_max).to_value(u.deg))),
        counts_off=tuple(int(c) for c in np.ravel(on_off.counts_off.data)),
    )
