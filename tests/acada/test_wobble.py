"""The ACADA simulator's wobble mode: true pointing, source position, alternating offsets."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits

from dpps.acada import wobble
from dpps.acada.planning import plan_events
from dpps.acada.simulate import SimulationConfig, simulate
from dpps.core.errors import InvalidInput
from dpps.instrument.events import EventType
from dpps.instrument.frames import nominal_to_altaz
from dpps.instrument.pointing import track

SOURCE = wobble.Source(
    "Crab",
    83.6333,
    22.0145,
    wobble_offset_deg=0.5,
    gamma_rate_hz=4.0,
    hadron_rate_hz=4.0,
    hadron_cone_deg=2.5,
)
START = dt.datetime(2026, 11, 22, 1, 30)


def _config(**changes: object) -> SimulationConfig:
    base = SimulationConfig(
        telescopes=(1, 2),
        observation_blocks=2,
        duration_s=4.0,
        event_rate_hz=5.0,
        calibration_fraction=0.4,
        muon_fraction=0.1,
        start=START,
        compression="zstd1",
        source=SOURCE,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.verifies_usecase("UC-000-4")
def test_blocks_point_half_a_degree_off_the_source_in_alternating_directions(
    tmp_path: Path,
) -> None:
    files = simulate(tmp_path, _config())
    source = SkyCoord(SOURCE.ra_deg, SOURCE.dec_deg, unit="deg")
    pointings = []
    for obs_id in (1, 2):
        shower = next(f for f in files if f"OBSID{obs_id:010d}_TEL_SHOWER" in f.name)
        head = fits.getheader(shower)
        assert (head["OBJECT"], head["RA_OBJ"], head["DEC_OBJ"]) == ("Crab", 83.6333, 22.0145)
        pnt = SkyCoord(head["RA_PNT"], head["DEC_PNT"], unit="deg")
        assert pnt.separation(source).deg == pytest.approx(0.5, abs=1e-4)
        pointings.append(pnt)
        # the pointing table holds the true, tracked pointing: the wobble position
        table = next(f for f in files if f"OBSID{obs_id:010d}_POINTING" in f.name)
        data = fits.getdata(table, "POINTING")
        alt, az = track("north", head["RA_PNT"], head["DEC_PNT"], data["TIME"])
        assert np.allclose(data["ALT"], alt, atol=5e-3)
        assert np.allclose(data["AZ"], az, atol=5e-3 / np.cos(np.radians(alt)))
        assert np.ptp(data["AZ"]) > 0.01  # it tracks: the horizontal position moves
        assert fits.getheader(table)["RA_PNT"] == head["RA_PNT"]
    # opposite sides of the source
    assert pointings[0].separation(pointings[1]).deg == pytest.approx(1.0, abs=1e-3)


@pytest.mark.verifies_usecase("UC-000-4")
def test_gammas_come_from_the_source_and_hadrons_from_a_cone() -> None:
    config = _config(observation_blocks=1)
    mid = START.replace(tzinfo=dt.UTC).timestamp() + config.duration_s / 2
    xy = wobble.source_in_camera("north", SOURCE, 0, mid)
    assert np.hypot(*xy) == pytest.approx(0.5, abs=0.01)
    events = plan_events(config, 1, mid - config.duration_s / 2, xy)
    gammas = [e.shower for e in events if e.shower is not None and not e.shower.hadron]
    hadrons = [e.shower for e in events if e.shower is not None and e.shower.hadron]
    assert gammas
    assert hadrons
    assert {(g.source_x_deg, g.source_y_deg) for g in gammas} == {xy}
    assert max(np.hypot(h.source_x_deg, h.source_y_deg) for h in hadrons) <= 2.5
    assert sum(e.kind in (EventType.FLATFIELD, EventType.SKY_PEDESTAL) for e in events) > 0
    # the camera position, turned back into the sky with the pointing, is the source
    ra, dec = wobble.pointing_of(SOURCE, 0)
    (alt0,), (az0,) = track("north", ra, dec, [mid])
    alt, az = nominal_to_altaz(xy[0], xy[1], float(alt0), float(az0))
    (src_alt,), (src_az,) = track("north", SOURCE.ra_deg, SOURCE.dec_deg, [mid])
    assert float(alt) == pytest.approx(float(src_alt), abs=1e-6)
    assert float(az) == pytest.approx(float(src_az), abs=1e-5)


@pytest.mark.verifies_usecase("UC-000-4")
def test_simulated_flux_follows_from_the_thrown_rate() -> None:
    amplitude, index = wobble.source_flux(SOURCE)
    assert index == 2.5
    # integral over the thrown range times the throw area gives back the rate
    g = index
    integral = (wobble.E_MIN_TEV ** (1 - g) - wobble.E_MAX_TEV ** (1 - g)) / (g - 1)
    area = np.pi * (wobble.MAX_CORE_M * 100) ** 2
    assert amplitude * integral * area == pytest.approx(SOURCE.gamma_rate_hz)


@pytest.mark.verifies_usecase("UC-000-4")
def test_without_a_source_the_simulator_is_unchanged(tmp_path: Path) -> None:
    files = simulate(tmp_path, _config(source=None, observation_blocks=1))
    shower = next(f for f in files if "_TEL_SHOWER_" in f.name)
    assert "RA_PNT" not in fits.getheader(shower)
    data = fits.getdata(next(f for f in files if "_POINTING" in f.name), "POINTING")
    assert np.allclose(data["ALT"], 70.0, atol=0.01)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"wobble_offset_deg": 0.0}, "wobble_offset_deg"),
        ({"dec_deg": 95.0}, "dec_deg"),
        ({"gamma_rate_hz": -1.0}, "rates"),
        ({"hadron_cone_deg": 0.0}, "hadron_cone_deg"),
    ],
)
@pytest.mark.verifies_usecase("UC-000-4")
def test_bad_wobble_settings_are_clear_errors(
    tmp_path: Path, change: dict[str, float], message: str
) -> None:
    config = _config(source=dataclasses.replace(SOURCE, **change))  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=message):
        simulate(tmp_path, config)
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.verifies_usecase("UC-000-4")
def test_a_block_without_events_is_a_clear_error(tmp_path: Path) -> None:
    silent = dataclasses.replace(SOURCE, gamma_rate_hz=0.0, hadron_rate_hz=0.0)
    config = _config(source=silent, calibration_fraction=0.0, muon_fraction=0.0)
    with pytest.raises(InvalidInput, match="no events"):
        simulate(tmp_path, config)
