"""The observing plan of a simulated night: blocks on a point source in wobble mode.

Shared by the scenarios that play a night (``dpps night`` on one host, ``dpps testbed scenario
night`` across data centers): what the telescopes observe is the same, only where the
processes run differs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from dpps.acada import wobble
from dpps.acada.config import SimulationConfig


@dataclass(frozen=True)
class NightPlan:
    """The observing plan: blocks, source, rates (defaults sized for a 3-minute night)."""

    blocks: int = 3
    duration_s: float = 15.0
    source: wobble.Source = field(
        default_factory=lambda: wobble.Source(
            "Crab",
            83.6333,
            22.0145,
            wobble_offset_deg=0.5,
            gamma_rate_hz=12.0,
            hadron_rate_hz=100.0,
            hadron_cone_deg=1.0,
            hadron_e_min_tev=0.15,
        )
    )
    start: dt.datetime = dt.datetime(2026, 11, 22, 1, 30, 0)
    first_obs_id: int = 1
    seed: int = 0
    telescopes: tuple[int, ...] = (1, 2, 3, 4)

    def simulation(self) -> SimulationConfig:
        """The ACADA simulator's configuration: ~16 flat-field and ~16 pedestal events per
        telescope and block (CalibPipe is run with ``min_events`` 15), few muons."""
        return SimulationConfig(
            telescopes=self.telescopes,
            observation_blocks=self.blocks,
            duration_s=self.duration_s,
            event_rate_hz=2.5,
            calibration_fraction=0.85,
            muon_fraction=0.05,
            events_per_chunk=400,
            start=self.start,
            first_obs_id=self.first_obs_id,
            gap_s=30.0,
            compression="zstd1",
            seed=self.seed,
            source=self.source,
        )

    def obs_ids(self) -> list[int]:
        return list(range(self.first_obs_id, self.first_obs_id + self.blocks))
