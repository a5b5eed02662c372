"""The run card: everything one simulation run depends on, typed and checked.

A run is a deterministic function of its card (the seed included): the same card gives the same
showers, the same waveforms and the same truth. Misspelled keys are errors (``ToolConfig``).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal, Self

from pydantic import Field, model_validator

from dpps.instrument.dl0 import COMPRESSIONS
from dpps.pipelines.tool import ToolConfig

Particle = Literal["gamma", "proton"]

#: Three years (with a leap day): how long simulated DL0 is kept (``lifetime_days``).
SIM_LIFETIME_DAYS = 1096


class RunCard(ToolConfig):
    """One simulation run (one ``obs_id``): a particle, its spectrum and geometry, an array."""

    particle: Particle = Field("gamma", description="Primary particle.")
    n_showers: int = Field(
        1000, ge=1, le=10_000_000, description="Showers thrown (each used once)."
    )
    e_min_tev: float = Field(0.05, gt=0, description="Lowest energy thrown (TeV).")
    e_max_tev: float = Field(50.0, gt=0, description="Highest energy thrown (TeV).")
    spectral_index: float = Field(
        -2.0, lt=0, description="Power-law index of the thrown spectrum (dN/dE ~ E^index)."
    )
    view_cone_deg: float = Field(
        0.0,
        ge=0,
        le=20,
        description="Radius of the cone around the pointing that directions are drawn from "
        "(0: a point source at source_offset_deg; > 0: diffuse, e.g. protons).",
    )
    source_offset_deg: float = Field(
        0.4, ge=0, le=5, description="Point source: angular distance from the pointing (wobble)."
    )
    source_angle_deg: float = Field(
        90.0,
        description="Point source: direction of the offset in the camera (0: towards larger "
        "azimuth, 90: towards larger altitude).",
    )
    max_impact_m: float = Field(
        500.0, gt=0, le=5000, description="Cores are uniform on a disc of this radius (m)."
    )
    site: Literal["north", "south"] = Field("north", description="Array layout (site).")
    telescopes: tuple[int, ...] | None = Field(
        None, description="Telescope ids of the layout (default: the site's default sub-array)."
    )
    pointing_alt_deg: float = Field(70.0, gt=0, le=90, description="Array pointing altitude.")
    pointing_az_deg: float = Field(180.0, ge=0, lt=360, description="Array pointing azimuth.")
    obs_id: int = Field(1, ge=1, description="Run number; names the files and the events.")
    seed: int = Field(0, ge=0, description="Random seed: same card, same data.")
    min_telescopes: int = Field(
        2, ge=1, description="Array trigger: telescopes that must see a shower."
    )
    trigger_threshold_pe: float = Field(
        50.0, gt=0, description="Telescope trigger: photo-electrons in the image."
    )
    start: dt.datetime = Field(
        dt.datetime(2026, 11, 21, 22, 0, 0), description="Time of the first shower (UTC)."
    )
    shower_rate_hz: float = Field(100.0, gt=0, description="Thrown showers per second.")
    compression: str = Field("zstd3", description=f"zfits compression: {', '.join(COMPRESSIONS)}")
    lifetime_days: float = Field(
        SIM_LIFETIME_DAYS, gt=0, description="Lifetime hint for the archive (days)."
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.e_max_tev <= self.e_min_tev:
            raise ValueError("e_max_tev must be larger than e_min_tev")
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}")
        if self.telescopes is not None and len(self.telescopes) < self.min_telescopes:
            raise ValueError("fewer telescopes than min_telescopes: nothing could trigger")
        return self

    @property
    def point_like(self) -> bool:
        return self.view_cone_deg == 0.0

    @property
    def stem(self) -> str:
        """Common start of the run's file names."""
        return f"sim_{self.particle}_run{self.obs_id:06d}"
