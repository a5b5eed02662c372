"""``datapipe-irf``: simulated DL2 (point-like gammas, diffuse protons) -> point-like IRFs.

The tool reads, validates and weights; the science is in :mod:`dpps.pipelines.datapipe.irf`.
Its one output holds everything DL3 needs to be consistent with it: the GADF IRF HDUs and
the gamma/hadron cut table they were computed with.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import astropy.units as u
import numpy as np
from pydantic import BaseModel, Field, model_validator
from pyirf.spectral import CRAB_HEGRA, IRFDOC_PROTON_SPECTRUM, PowerLaw

from dpps.core.errors import InvalidInput
from dpps.core.version import __version__
from dpps.pipelines.datapipe import gadf, irf, sensitivity
from dpps.pipelines.datapipe.dl2_contract import DL2File, header_value, read_many, stack
from dpps.pipelines.tool import Tool, ToolConfig, register_tool


class PowerLawFlux(BaseModel):
    """dN/dE = amplitude (E / 1 TeV)^-index: cm-2 s-1 TeV-1 (point source) or per sr too
    (diffuse)."""

    amplitude: float = Field(gt=0, description="at 1 TeV")
    index: float = Field(gt=1, description="positive: dN/dE ~ E^-index")

    def power_law(self, diffuse: bool) -> PowerLaw:
        unit = u.Unit("cm-2 s-1 TeV-1 sr-1" if diffuse else "cm-2 s-1 TeV-1")
        return PowerLaw(self.amplitude * unit, -self.index)


class IRFConfig(ToolConfig):
    cuts: Literal["optimised", "fixed"] = Field(
        "optimised", description="optimise the cuts for sensitivity, or use the fixed values"
    )
    gh_cut: float = Field(0.7, ge=0, le=1, description="fixed: gamma-like if gh_score >= this")
    theta_cut_deg: float = Field(0.2, gt=0, le=2, description="fixed: RAD_MAX (deg)")
    multiplicity_min: int = Field(2, ge=1, description="minimum telescopes in an event")
    gh_efficiencies: tuple[float, ...] = Field(
        tuple(np.round(np.arange(0.2, 0.96, 0.05), 2)),
        min_length=1,
        description="optimised: gamma efficiencies of the gh cut to scan",
    )
    theta_containment_percent: float = Field(
        68.0, gt=0, lt=100, description="optimised: gamma containment of the theta cut"
    )
    theta_min_deg: float = Field(0.05, gt=0, description="optimised: smallest theta cut")
    theta_max_deg: float = Field(0.25, gt=0, description="optimised: largest theta cut")
    alpha: float = Field(0.2, gt=0, le=1, description="optimised: on/off exposure ratio")
    optimisation_time_h: float = Field(50.0, gt=0, description="optimised: observation time")
    true_energy_tev: tuple[float, float] = Field((0.02, 200.0), description="true energy range")
    reco_energy_tev: tuple[float, float] = Field((0.02, 200.0), description="reco energy range")
    bins_per_decade: int = Field(5, ge=1, le=50, description="energy bins per decade")
    migration: tuple[float, float] = Field((0.2, 5.0), description="reco/true energy range")
    migration_bins: int = Field(30, ge=2, le=500, description="energy migration bins")
    fov_offset_max_deg: float = Field(1.0, gt=0, description="point-like: offset bin [0, max]")
    background: bool = Field(
        False, description="also write a full-enclosure BACKGROUND (BKG_2D) from the protons"
    )
    background_offset_bins: int = Field(5, ge=1, le=50, description="background offset bins")
    gamma_flux: PowerLawFlux | None = Field(
        None, description="optimised: the source the cuts are optimised for (default: Crab)"
    )
    proton_flux: PowerLawFlux | None = Field(
        None,
        description="the proton flux the cuts and background are computed for (default: the "
        "cosmic-ray protons of the CTA IRF document); a toy night's own flux keeps the "
        "background IRF comparable with it",
    )
    telescope: str = Field("CTAO", description="TELESCOP keyword")
    instrument: str = Field("CTAO", description="INSTRUME keyword")
    output_name: str = Field(
        "irf.fits", pattern=r"^[A-Za-z0-9_.+-]+\.fits$", description="name of the IRF file"
    )

    @model_validator(mode="after")
    def _check(self) -> IRFConfig:
        if self.theta_min_deg > self.theta_max_deg:
            raise ValueError("theta_min_deg must not exceed theta_max_deg")
        if any(not 0 < e <= 1 for e in self.gh_efficiencies):
            raise ValueError("gh_efficiencies must lie in (0, 1]")
        return self


def _particles(files: list[DL2File], expected: str) -> None:
    for f in files:
        kinds = set(np.unique(np.asarray(f.events["particle_type"])).tolist())
        declared = str(f.header.get("PARTICLE", expected)).strip().lower()
        if kinds != {expected} or declared != expected:
            raise InvalidInput(
                f"{f.path.name}: expected {expected} events, found {sorted(kinds)} "
                f"(PARTICLE={declared})"
            )


@register_tool
class IRFTool(Tool[IRFConfig]):
    """Inputs ``gammas`` (point-like at the source offset ``SRC_OFFS``) and ``protons``
    (diffuse; needed to optimise the cuts or for the background)."""

    name: ClassVar[str] = "datapipe-irf"
    description: ClassVar[str] = "point-like IRFs (GADF) and their cuts from simulated DL2"
    config_class: ClassVar[type[ToolConfig]] = IRFConfig

    def start(self) -> None:
        c = self.config
        gamma_files = read_many(self.input("gammas"), simulated=True)
        _particles(gamma_files, "gamma")
        gamma_info = irf.combine_simulation_info(
            [irf.simulation_info(f.header, f.path.name) for f in gamma_files], "gammas"
        )
        if gamma_info.viewcone_max > 0 * u.deg:
            raise InvalidInput(
                "gammas: a point-like IRF needs a point-source simulation (SIM_VCON = 0)"
            )
        offsets = {header_value(f.header, "SRC_OFFS", f.path.name) for f in gamma_files}
        if len(offsets) != 1:
            raise InvalidInput(f"gammas: files with different source offsets {sorted(offsets)}")
        gammas = irf.add_geometry(stack(gamma_files))
        needs_protons = c.cuts == "optimised" or c.background
        protons = proton_info = None
        if needs_protons:
            proton_files = read_many(self.input("protons"), simulated=True)
            _particles(proton_files, "proton")
            proton_info = irf.combine_simulation_info(
                [irf.simulation_info(f.header, f.path.name) for f in proton_files], "protons"
            )
            protons = irf.add_geometry(stack(proton_files))
        binning = irf.make_binning(
            true_energy=(*c.true_energy_tev, c.bins_per_decade),
            reco_energy=(*c.reco_energy_tev, c.bins_per_decade),
            migration=(*c.migration, c.migration_bins),
            fov_offset_max=c.fov_offset_max_deg,
            background_offset_max=(
                proton_info.viewcone_max.to_value(u.deg)
                if proton_info is not None
                else c.fov_offset_max_deg
            ),
            background_offset_bins=c.background_offset_bins,
        )
        obstime = c.optimisation_time_h * u.hour
        if protons is not None and proton_info is not None:
            proton_spectrum = (
                c.proton_flux.power_law(diffuse=True) if c.proton_flux else IRFDOC_PROTON_SPECTRUM
            )
            protons["weight"] = irf.event_weights(protons, proton_info, proton_spectrum, obstime)
        gamma_spectrum = c.gamma_flux.power_law(diffuse=False) if c.gamma_flux else CRAB_HEGRA
        if protons is not None:
            gammas["weight"] = irf.event_weights(gammas, gamma_info, gamma_spectrum, obstime)
        if c.cuts == "fixed":
            cuts = irf.fixed_cuts(
                binning.reco_energy, c.gh_cut, c.theta_cut_deg * u.deg, c.multiplicity_min
            )
        else:
            assert protons is not None
            assert proton_info is not None
            cuts = irf.optimised_cuts(
                gammas,
                protons,
                binning.reco_energy,
                multiplicity=c.multiplicity_min,
                gh_efficiencies=c.gh_efficiencies,
                theta_containment=c.theta_containment_percent,
                theta_min=c.theta_min_deg * u.deg,
                theta_max=c.theta_max_deg * u.deg,
                fov_offset_max=proton_info.viewcone_max,
                alpha=c.alpha,
            )
        response = irf.point_like_irf(
            gammas,
            gamma_info,
            cuts,
            binning,
            protons=protons if c.background else None,
            background_time=obstime if c.background else None,
        )
        identifier = irf.irf_id(response)
        cards = {"TELESCOP": c.telescope, "INSTRUME": c.instrument}
        path = self.output_dir / c.output_name
        separation = irf.separation(gammas, protons, cuts) if protons is not None else None
        hdus = irf.irf_hdus(response, cards)
        if protons is not None and proton_info is not None:
            table = sensitivity.from_events(
                gammas,
                protons,
                cuts,
                binning.reco_energy,
                fov_offset_max=proton_info.viewcone_max,
                spectrum=gamma_spectrum,
                alpha=c.alpha,
            )
            hdus.append(sensitivity.to_hdu(table, obstime, c.alpha))
        gadf.write_fits(
            path,
            hdus,
            {
                **(separation.cards() if separation is not None else {}),
                "DATALEVL": "DL3",
                "DATATYPE": "irf",
                "IRF_ID": identifier,
                "CUTMODE": cuts.mode,
                "MULTIMIN": cuts.multiplicity,
                "SRC_OFFS": offsets.pop(),
                "NGAMSEL": response.n_selected,
                "TELESCOP": c.telescope,
                "INSTRUME": c.instrument,
                "CREATOR": f"dpps {__version__}",
            },
        )
        self.add_output(path, "DL3", "irf", irf_id=identifier, cut_mode=cuts.mode)
