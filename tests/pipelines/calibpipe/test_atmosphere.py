"""Reference atmospheric model selection from weather monitoring (UC-120-1.3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from dpps.acada import monitoring
from dpps.core.errors import ConfigError, InvalidInput
from dpps.pipelines.calibpipe.atmosphere import (
    REFERENCE_MODELS,
    WeatherSummary,
    select_model,
    summarize,
)
from dpps.pipelines.tool import EXIT_FAILURE, EXIT_OK, PROVENANCE_NAME, run_tool
from tests.pipelines.calibpipe.helpers import START_UNIX, weather_table

pytestmark = pytest.mark.verifies_usecase("UC-120-1.3")


def test_acada_weather_selects_a_model(tmp_path: Path) -> None:
    """The simulator's weather (8 deg C, 780 hPa, 30 %) is intermediate at the north site."""
    path = tmp_path / "AUX001_WEATHER.fits"
    header = {"SITE": ("CTAO-North", "site"), "OBS_ID": (3, "obs"), "DATALEVL": ("DL0", "")}
    monitoring.write_weather(
        path, header=header, start_unix=START_UNIX, duration_s=600, rng=np.random.default_rng(0)
    )
    result = run_tool("calibpipe-atmosphere", {}, {"weather": [path]}, tmp_path / "out")
    assert result.exit_code == EXIT_OK, result.error
    (output,) = result.outputs
    assert output.path.name == "OBSID0000000003_ATMOSPHERE_SELECTION.fits"
    assert (output.data_level, output.product_type) == ("CAL", "atmospheric model selection")
    with fits.open(output.path, checksum=True) as hdul:
        head = hdul[0].header
        rows = hdul["SELECTION"].data
        assert head["DATATYPE"] == "atmospheric model selection"
        assert head["DATALEVL"] == "CAL"
        assert head["ATMMODEL"] == "intermediate"
        assert head["ATMMODID"] == "ctao-north-intermediate-v1"
        assert head["OBS_ID"] == 3
        assert head["N_SAMPL"] == 61
        assert head["MEAN_P"] == pytest.approx(780.0, abs=1.0)
        assert head["VALID_FROM"] == "2026-11-21T22:00:00"
        assert head["VALID_TO"] == "2026-11-21T22:10:00"
        selected = rows["name"][rows["selected"]].tolist()
        assert selected == ["intermediate"]
        assert rows["distance"][rows["selected"]][0] == pytest.approx(rows["distance"].min())
    assert output.metadata["model"] == "intermediate"
    assert (tmp_path / "out" / PROVENANCE_NAME).is_file()


@pytest.mark.parametrize("site", ["north", "south"])
@pytest.mark.parametrize("season", ["winter", "intermediate", "summer"])
def test_each_reference_model_is_chosen_for_its_own_climate(site: str, season: str) -> None:
    model = next(m for m in REFERENCE_MODELS[site] if m.name == season)
    weather = WeatherSummary(
        model.temperature_c + 0.5,
        model.pressure_hpa - 0.3,
        model.humidity_pct + 2.0,
        10,
        0.0,
        100.0,
    )
    chosen = select_model(f"CTAO-{site.capitalize()}", weather)
    assert chosen.model.name == season
    assert chosen.distances[season] == min(chosen.distances.values())


@pytest.mark.parametrize(
    ("climate", "expected"),
    [((2.0, 775.0, 60.0), "winter"), ((16.0, 783.0, 15.0), "summer")],
)
def test_tool_follows_the_weather(
    tmp_path: Path, climate: tuple[float, float, float], expected: str
) -> None:
    path = weather_table(tmp_path / "w.fits", *climate)
    result = run_tool("calibpipe-atmosphere", {}, {"weather": [path]}, tmp_path / "out")
    assert result.exit_code == EXIT_OK, result.error
    assert fits.getheader(result.outputs[0].path)["ATMMODEL"] == expected


def test_gaps_in_the_weather_are_ignored() -> None:
    t = np.arange(5.0)
    nan = float("nan")
    summary = summarize(
        t,
        np.array([2.0, nan, 4.0, nan, 6.0]),
        np.full(5, 780.0),
        np.array([30.0, 30, nan, 30, 30]),
    )
    assert summary.temperature_c == pytest.approx(4.0)
    assert summary.humidity_pct == pytest.approx(30.0)
    assert summary.n_samples == 5
    narrow = summarize(t, np.arange(5.0), np.full(5, 780.0), np.full(5, 30.0), start=1, end=2)
    assert (narrow.temperature_c, narrow.n_samples) == (1.5, 2)


@pytest.mark.parametrize(
    ("values", "kwargs", "expected"),
    [
        (([float("nan")] * 12, 780.0, 30.0), {}, "0 valid TEMPERATURE samples"),
        ((8.0, 0.0, 30.0), {}, "PRESSURE outside the physical range"),
        ((8.0, 780.0, 130.0), {}, "HUMIDITY outside the physical range"),
        ((8.0, 780.0, 30.0), {"site": "Mars"}, "no reference atmospheric models for site 'Mars'"),
    ],
)
def test_bad_weather_is_a_clear_error(
    tmp_path: Path, values: tuple[object, object, object], kwargs: dict[str, str], expected: str
) -> None:
    path = weather_table(tmp_path / "w.fits", *values, **kwargs)  # type: ignore[arg-type]
    result = run_tool("calibpipe-atmosphere", {}, {"weather": [path]}, tmp_path / "out")
    assert result.exit_code == EXIT_FAILURE
    assert result.error is not None
    assert expected in result.error
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [PROVENANCE_NAME]


def test_inputs_from_two_sites_or_without_weather(tmp_path: Path) -> None:
    north = weather_table(tmp_path / "n.fits", 8.0, 780.0, 30.0)
    south = weather_table(tmp_path / "s.fits", 8.0, 780.0, 30.0, site="CTAO-South")
    result = run_tool("calibpipe-atmosphere", {}, {"weather": [north, south]}, tmp_path / "a")
    assert result.error is not None
    assert "several sites" in result.error
    pointing = tmp_path / "pointing.fits"
    fits.HDUList(
        [
            fits.PrimaryHDU(),
            fits.BinTableHDU.from_columns(
                [fits.Column(name="TIME", format="D", array=[1.0])], name="POINTING"
            ),
        ]
    ).writeto(pointing, checksum=True)
    result = run_tool("calibpipe-atmosphere", {}, {"weather": [pointing]}, tmp_path / "b")
    assert result.error is not None
    assert "no WEATHER table" in result.error
    with pytest.raises(ConfigError, match="site: Input should be 'north' or 'south'"):
        run_tool("calibpipe-atmosphere", {"site": "west"}, {"weather": [north]}, tmp_path / "c")


def test_site_from_the_configuration_wins(tmp_path: Path) -> None:
    path = weather_table(tmp_path / "w.fits", 16.0, 786.0, 10.0, site="CTAO-North")
    result = run_tool("calibpipe-atmosphere", {"site": "south"}, {"weather": [path]}, tmp_path)
    assert result.exit_code == EXIT_OK, result.error
    head = fits.getheader(result.outputs[0].path)
    assert (head["SITE"], head["ATMMODID"]) == ("CTAO-South", "ctao-south-summer-v1")


def test_summarize_refuses_mismatched_columns() -> None:
    with pytest.raises(InvalidInput, match="different lengths"):
        summarize(np.arange(3.0), np.arange(2.0), np.arange(3.0), np.arange(3.0))
