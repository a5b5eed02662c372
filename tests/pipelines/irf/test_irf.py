"""datapipe-irf: point-like IRFs and cuts from simulated DL2, checked against known answers."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import QTable
from pyirf.simulations import SimulatedEventsInfo

from dpps.core.errors import ConfigError
from dpps.pipelines.datapipe import toy_dl2 as dl2_factory
from dpps.pipelines.datapipe.dl2_contract import read_dl2
from dpps.pipelines.datapipe.toy_dl2 import ToyInstrument
from dpps.pipelines.tool import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, PROVENANCE_NAME, run_tool
from tests.pipelines.irf.oracle import gh_pass, theta_deg

FIXED_OPEN = {"cuts": "fixed", "gh_cut": 0.0, "theta_cut_deg": 1.0, "multiplicity_min": 2}


def _table(path: Path, extname: str) -> QTable:
    return QTable.read(path, hdu=extname)


@pytest.mark.verifies_usecase("UC-130-1.6")
def test_effective_area_without_cuts_is_the_instruments(
    production: dict[str, Path], tmp_path: Path
) -> None:
    """With cuts that keep everything, A(E) must be pi R^2 p(E) of the toy instrument."""
    result = run_tool("datapipe-irf", FIXED_OPEN, {"gammas": [production["gamma"]]}, tmp_path)
    assert result.exit_code == EXIT_OK, result.error
    aeff = _table(tmp_path / "irf.fits", "EFFECTIVE AREA")
    lo, hi = aeff["ENERG_LO"][0].to_value(u.TeV), aeff["ENERG_HI"][0].to_value(u.TeV)
    measured = aeff["EFFAREA"][0, 0].to_value(u.m**2)
    header = fits.getheader(production["gamma"])
    info = SimulatedEventsInfo(
        header["SIM_NSHW"],
        header["SIM_EMIN"] * u.TeV,
        header["SIM_EMAX"] * u.TeV,
        header["SIM_RMAX"] * u.m,
        header["SIM_IDX"],
        0 * u.deg,
        0 * u.deg,
    )
    thrown = info.calculate_n_showers_per_energy(np.append(lo, hi[-1]) * u.TeV)
    instrument = ToyInstrument()
    compared = 0
    for i in range(len(lo)):
        grid = np.geomspace(lo[i], hi[i], 400)
        weight = grid ** header["SIM_IDX"]
        expected = np.trapezoid(
            weight * instrument.true_effective_area(grid * u.TeV).to_value(u.m**2), grid
        ) / np.trapezoid(weight, grid)
        n_selected = measured[i] / instrument.area.to_value(u.m**2) * thrown[i]
        if lo[i] < 0.1 or n_selected < 100:  # reco energies below the lowest bin are dropped
            continue
        sigma = measured[i] / np.sqrt(n_selected)
        assert abs(measured[i] - expected) < 5 * sigma, (lo[i], measured[i], expected)
        compared += 1
    assert compared >= 8
    rad_max = _table(tmp_path / "irf.fits", "RAD_MAX")["RAD_MAX"]
    assert np.allclose(rad_max.to_value(u.deg), 1.0)


@pytest.mark.verifies_usecase("UC-130-1.6")
def test_optimised_cuts_separate_gammas_from_protons(
    production: dict[str, Path], irf_file: Path
) -> None:
    with fits.open(irf_file) as hdul:
        assert [h.name for h in hdul[1:]] == [
            "EFFECTIVE AREA",
            "ENERGY DISPERSION",
            "RAD_MAX",
            "GH_CUTS",
            "SENSITIVITY",
        ]
        assert hdul["EFFECTIVE AREA"].header["HDUCLAS3"] == "POINT-LIKE"
        assert hdul[0].header["CUTMODE"] == "optimised"
        assert hdul[0].header["IRF_ID"].startswith("irf-")
        multiplicity = hdul["GH_CUTS"].header["MULTIMIN"]
        for name, column in (
            ("EFFECTIVE AREA", "EFFAREA"),
            ("ENERGY DISPERSION", "MATRIX"),
            ("RAD_MAX", "RAD_MAX"),
            ("GH_CUTS", "cut"),
        ):
            assert np.all(np.isfinite(hdul[name].data[column])), name
    gh = _table(irf_file, "GH_CUTS")
    gammas = read_dl2(production["gamma"], simulated=True).events
    protons = read_dl2(production["proton"], simulated=True).events
    core = (gammas["reco_energy"] > 0.3 * u.TeV) & (gammas["reco_energy"] < 10 * u.TeV)
    core_p = (protons["reco_energy"] > 0.3 * u.TeV) & (protons["reco_energy"] < 10 * u.TeV)
    eff_gamma = gh_pass(gammas[core], gh, multiplicity).mean()
    eff_proton = gh_pass(protons[core_p], gh, multiplicity).mean()
    assert eff_gamma > 0.3
    assert eff_proton < eff_gamma / 5
    # RAD_MAX holds the configured containment (68 %) of the gammas, where not clipped
    rad = _table(irf_file, "RAD_MAX")
    theta_cut = rad["RAD_MAX"][0, 0].to_value(u.deg)
    assert np.all((theta_cut >= 0.05 - 1e-9) & (theta_cut <= 0.25 + 1e-9))
    lo, hi = rad["ENERG_LO"][0].to_value(u.TeV), rad["ENERG_HI"][0].to_value(u.TeV)
    chosen = gammas[np.asarray(gammas["multiplicity"]) >= multiplicity]
    theta = theta_deg(chosen)
    energy = chosen["reco_energy"].to_value(u.TeV)
    checked = 0
    for i in range(len(lo)):
        in_bin = (energy >= lo[i]) & (energy < hi[i])
        cut = theta_cut[i]
        if in_bin.sum() < 500 or cut <= 0.05 + 1e-6 or cut >= 0.25 - 1e-6:
            continue  # clipped bins do not hold the containment by construction
        assert np.mean(theta[in_bin] <= cut) == pytest.approx(0.68, abs=0.02)
        checked += 1
    assert checked >= 3


def test_gammapy_reads_the_irfs(irf_file: Path) -> None:
    from gammapy.irf import EffectiveAreaTable2D, EnergyDispersion2D, RadMax2D

    aeff = EffectiveAreaTable2D.read(irf_file, hdu="EFFECTIVE AREA")
    value = aeff.evaluate(energy_true=1 * u.TeV, offset=0.4 * u.deg)
    assert 1e4 * u.m**2 < value < ToyInstrument().area
    edisp = EnergyDispersion2D.read(irf_file, hdu="ENERGY DISPERSION")
    kernel = edisp.to_edisp_kernel(offset=0.4 * u.deg)
    bias = kernel.get_bias(1 * u.TeV)
    assert abs(float(np.squeeze(bias))) < 0.1
    rad_max = RadMax2D.read(irf_file, hdu="RAD_MAX")
    assert 0.05 * u.deg <= rad_max.evaluate(energy=1 * u.TeV, offset=0.4 * u.deg) <= 0.25 * u.deg


def test_background_and_provenance(production: dict[str, Path], tmp_path: Path) -> None:
    config = {**FIXED_OPEN, "gh_cut": 0.7, "theta_cut_deg": 0.2, "background": True}
    inputs = {"gammas": [production["gamma"]], "protons": [production["proton"]]}
    result = run_tool("datapipe-irf", config, inputs, tmp_path)
    assert result.exit_code == EXIT_OK, result.error
    from gammapy.irf import Background2D

    bkg = Background2D.read(tmp_path / "irf.fits", hdu="BACKGROUND")
    rate = bkg.evaluate(energy=1 * u.TeV, offset=[0.2, 0.7] * u.deg)
    assert np.all(rate > 0 * u.Unit("s-1 TeV-1 sr-1"))
    assert float((rate[0] / rate[1]).to_value(u.one)) == pytest.approx(
        1.0, rel=0.4
    )  # diffuse protons: flat in the FOV
    record = json.loads((tmp_path / PROVENANCE_NAME).read_text())
    assert record["tool"] == "datapipe-irf"
    assert record["config"]["background"] is True
    assert record["inputs"]["gammas"][0]["adler32"]
    assert record["outputs"][0]["product_type"] == "irf"
    assert [o.product_type for o in result.outputs] == ["irf"]


def _rewrite(
    src: Path,
    dst: Path,
    *,
    drop_key: str | None = None,
    drop_column: str | None = None,
    set_keys: dict[str, object] | None = None,
) -> Path:
    with fits.open(src) as hdul:
        primary = hdul[0].copy()
        table = QTable.read(hdul["EVENTS"])
    if drop_key:
        del primary.header[drop_key]
    for key, value in (set_keys or {}).items():
        primary.header[key] = value
    if drop_column:
        table.remove_column(drop_column)
    hdu = fits.table_to_hdu(table)
    hdu.name = "EVENTS"
    fits.HDUList([primary, hdu]).writeto(dst)
    return dst


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("no_protons", EXIT_CONFIG, "missing input 'protons'"),
        ("no_sim_keyword", EXIT_FAILURE, "SIM_NSHW"),
        ("missing_column", EXIT_FAILURE, "reco_energy"),
        ("protons_as_gammas", EXIT_FAILURE, "expected gamma"),
        ("diffuse_gammas", EXIT_FAILURE, "point-source simulation"),
        ("mixed_setups", EXIT_FAILURE, "different simulation setups"),
        ("truncated", EXIT_FAILURE, "sim_gamma.dl2.fits: truncated DL2 file"),
    ],
)
def test_bad_input_is_refused_clearly(
    case: str, code: int, message: str, production: dict[str, Path], tmp_path: Path
) -> None:
    gamma, proton = production["gamma"], production["proton"]
    config: dict[str, object] = {}
    inputs: dict[str, list[Path]] = {"gammas": [gamma], "protons": [proton]}
    if case == "no_protons":
        inputs = {"gammas": [gamma]}
    elif case == "no_sim_keyword":
        inputs["gammas"] = [_rewrite(gamma, tmp_path / "g.fits", drop_key="SIM_NSHW")]
    elif case == "missing_column":
        inputs["gammas"] = [_rewrite(gamma, tmp_path / "g.fits", drop_column="reco_energy")]
    elif case == "protons_as_gammas":
        inputs["gammas"] = [proton]
    elif case == "diffuse_gammas":
        inputs["gammas"] = [_rewrite(gamma, tmp_path / "g.fits", set_keys={"SIM_VCON": 2.0})]
    elif case == "mixed_setups":
        other = _rewrite(gamma, tmp_path / "g2.fits", set_keys={"SIM_EMIN": 0.05})
        inputs["gammas"] = [gamma, other]
    elif case == "truncated":
        broken = tmp_path / "sim_gamma.dl2.fits"
        broken.write_bytes(gamma.read_bytes()[: gamma.stat().st_size // 2])
        inputs["gammas"] = [broken]
    before = {p: _digest(p) for paths in inputs.values() for p in paths}
    out = tmp_path / "out"
    result = run_tool("datapipe-irf", config, inputs, out)
    assert result.exit_code == code
    assert result.error is not None
    assert message in result.error
    assert result.outputs == []
    assert not (out / "irf.fits").exists()
    assert json.loads((out / PROVENANCE_NAME).read_text())["exit_code"] == code
    assert before == {p: _digest(p) for p in before}  # inputs are never touched


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"gh_cutt": 0.5}, "gh_cutt: Extra inputs are not permitted"),
        ({"theta_min_deg": 0.3, "theta_max_deg": 0.1}, "theta_min_deg must not exceed"),
        ({"cuts": "magic"}, "cuts: Input should be 'optimised' or 'fixed'"),
        ({"gh_efficiencies": [0.0, 0.5]}, "gh_efficiencies must lie in (0, 1]"),
    ],
)
def test_bad_configuration_is_a_config_error(
    config: dict[str, object], message: str, production: dict[str, Path], tmp_path: Path
) -> None:
    """Refused before anything runs (the CLI maps ConfigError to its exit code)."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        run_tool("datapipe-irf", config, {"gammas": [production["gamma"]]}, tmp_path)
    assert not tmp_path.joinpath("irf.fits").exists()


def test_factory_is_deterministic(tmp_path: Path) -> None:
    """Same seed, same events: the tests' known answers do not move between runs."""
    prod = dl2_factory.Production("gamma", 20000)
    first, _ = dl2_factory.simulated_dl2(prod, seed=3)
    second, _ = dl2_factory.simulated_dl2(prod, seed=3)
    assert len(first) > 100
    assert np.array_equal(first["reco_energy"], second["reco_energy"])
