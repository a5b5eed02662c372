"""What the ACADA simulator simulates: the site, telescopes, observation blocks and streams.

Every field has a small default so a run takes seconds; ``validate`` refuses a configuration
before a single file is written, so a bad one never leaves half a night in a landing area.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from dpps.acada import wobble
from dpps.core.errors import InvalidInput
from dpps.instrument.sites import SITES, Site, Telescope

#: The event streams a telescope writes, one file series each.
STREAMS = ("SHOWER", "CAL", "MUON")


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate; every field has a small default so a run takes seconds."""

    site: str = "north"
    telescopes: tuple[int, ...] | None = None  # None: the site's default telescopes
    observation_blocks: int = 1
    duration_s: float = 10.0  # per observation block
    event_rate_hz: float = 10.0  # array triggers per second
    events_per_chunk: int = 25
    sdh_per_telescope: int = 1
    muon_fraction: float = 0.05
    calibration_fraction: float = 0.05
    start: dt.datetime = dt.datetime(2026, 11, 21, 22, 0, 0)
    first_sb_id: int = 1
    first_obs_id: int = 1
    gap_s: float = 30.0  # between observation blocks
    compression: str = "zstd3"
    monitoring: bool = True
    triggers: bool = True
    seed: int = 0
    streams: tuple[str, ...] = field(default=STREAMS)
    #: Wobble observations of a point source (None: the legacy fixed pointing at alt 70,
    #: az 180 with every shower from the camera centre). With a source, showers are thrown at
    #: its physical rates and ``event_rate_hz`` x the fractions sets the calibration and muon
    #: events only.
    source: wobble.Source | None = None

    def layout(self) -> Site:
        site = SITES.get(self.site)
        if site is None:
            raise InvalidInput(f"unknown site {self.site!r}; use one of {', '.join(SITES)}")
        return site

    def chosen(self) -> list[Telescope]:
        site = self.layout()
        ids = self.telescopes or site.default_telescopes
        unknown = [t for t in ids if t not in site.telescopes]
        if unknown:
            raise InvalidInput(
                f"telescopes {unknown} are not at site {site.name} "
                f"(its ids: {min(site.telescopes)}..{max(site.telescopes)})"
            )
        return [site.telescopes[t] for t in sorted(set(ids))]

    def validate(self) -> None:
        self.chosen()
        checks = [
            (self.observation_blocks >= 1, "observation_blocks must be >= 1"),
            (self.duration_s > 0, "duration_s must be > 0"),
            (self.event_rate_hz > 0, "event_rate_hz must be > 0"),
            (self.events_per_chunk >= 1, "events_per_chunk must be >= 1"),
            (self.sdh_per_telescope >= 1, "sdh_per_telescope must be >= 1"),
            (0 <= self.muon_fraction + self.calibration_fraction < 1, "fractions must sum < 1"),
            (set(self.streams) <= set(STREAMS) and bool(self.streams), f"streams: {STREAMS}"),
        ]
        if self.source is not None:
            src = self.source
            checks += [
                (0 < src.wobble_offset_deg <= 3, "wobble_offset_deg must be in (0, 3]"),
                (-90 <= src.dec_deg <= 90, "source dec_deg must be in [-90, 90]"),
                (src.gamma_rate_hz >= 0 and src.hadron_rate_hz >= 0, "rates must be >= 0"),
                (0 < src.hadron_cone_deg <= 10, "hadron_cone_deg must be in (0, 10]"),
            ]
        for ok, message in checks:
            if not ok:
                raise InvalidInput(f"simulation: {message}")
