"""End to end: SimPipe DL0 -> DL1 -> trained models -> DL2, with physics sanity checks."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import QTable
from sklearn.metrics import roc_auc_score

from dpps.instrument.frames import angular_separation
from dpps.pipelines.datapipe.dl1_io import PARAMETERS_PATH, TRUTH_PATH, read_dl1
from dpps.pipelines.datapipe.dl2_contract import read_dl2
from dpps.pipelines.tool import run_tool
from tests.pipelines.datapipe.chain import RUNS, Chain


@pytest.mark.verifies_usecase("UC-130-1.2.1")
def test_dl1_holds_parameters_and_truth_for_every_triggered_image(chain: Chain) -> None:
    data = read_dl1(chain.dl1["gamma_test"])
    truth = QTable.read(chain.truth["gamma_test"], hdu="TRUTH")
    triggered = truth[truth["triggered"]]
    # one DL1 row per telescope image that DL0 holds, all of one observation
    with h5py.File(chain.dl1["gamma_test"]) as f:
        assert f.attrs["DATALEVL"] == "DL1"
        assert f.attrs["DATACAT"] == "SIM"
        assert json.loads(f[PARAMETERS_PATH].attrs["units"])["intensity"] == "pe"
        assert f[TRUTH_PATH].shape[0] == len(np.unique(data.parameters["event_id"]))
    assert len(data.parameters) == int(triggered["n_trigger"].sum())
    assert set(data.parameters["obs_id"]) == {RUNS["gamma_test"]["obs_id"]}
    assert set(data.parameters["tel_id"]) == {1, 2, 3, 4}
    # the images are where the model put them: Hillas axes point back to the source, which
    # SimPipe placed 0.4 deg off the camera centre towards larger altitude (+y)
    p = data.parameters[(data.parameters["intensity"] > 200) & (data.parameters["r"] > 0.3)]
    assert len(p) > 30
    psi = np.radians(p["psi"])
    miss = np.abs(-np.sin(psi) * (0.0 - p["x"]) + np.cos(psi) * (0.4 - p["y"]))
    assert np.median(miss) < 0.05  # deg: perpendicular distance of the axis from the source
    assert np.nanmedian(p["width"]) < np.nanmedian(p["length"])
    assert np.all(np.isfinite(p["time_slope"]))


def test_dl1_is_the_same_whatever_ran_before_it_and_whatever_its_input_order(
    chain: Chain, tmp_path: Path
) -> None:
    """A WMS worker runs several jobs in one process, and a transformation used to hand a
    block's files in their registration order: neither may change a byte of the parameters.
    The chain's DL1 was made earlier in this process, its inputs in name order; here they come
    reversed (the timing fit's random starts used to follow both)."""
    run = "gamma_test"
    inputs = {"dl0": chain.dl0[run][::-1], "truth": [chain.truth[run]]}
    result = run_tool("datapipe-dl1", {}, inputs, tmp_path)
    assert result.exit_code == 0, result.error
    again, before = read_dl1(next(tmp_path.glob("*_dl1.h5"))), read_dl1(chain.dl1[run])
    assert again.parameters.tobytes() == before.parameters.tobytes()
    assert again.header == before.header


@pytest.mark.verifies_usecase("UC-130-1.3.1")
def test_models_and_model_card(chain: Chain) -> None:
    card = chain.card_data
    assert card["features"][0] == "log_intensity"
    assert "disp" in card["features"]
    assert [f["name"] for f in card["training_files"]] == [
        chain.dl1["gamma_train"].name,
        chain.dl1["proton_train"].name,
    ]
    assert all(len(f["adler32"]) == 8 for f in card["training_files"])
    assert card["events"]["gamma"] > 100
    assert card["events"]["hadron"] > 50
    scores = card["scores"]
    assert scores["energy_median_abs_log10_ratio"] < 0.3
    assert scores["gh_roc_auc"] > 0.8
    assert card["hyperparameters"]["n_estimators"] == 60
    assert chain.models.stat().st_size > 10_000


@pytest.mark.verifies_usecase("UC-130-1.2.2")
def test_dl2_physics_on_independent_test_runs(chain: Chain) -> None:
    gammas = QTable.read(chain.dl2["gamma_test"], hdu="EVENTS")
    protons = QTable.read(chain.dl2["proton_test"], hdu="EVENTS")
    assert len(gammas) > 100
    assert len(protons) > 40
    ratio = np.log10((gammas["reco_energy"] / gammas["true_energy"]).to_value(""))
    assert np.median(np.abs(ratio)) < 0.3
    assert (
        np.corrcoef(np.log10(gammas["true_energy"].value), np.log10(gammas["reco_energy"].value))[
            0, 1
        ]
        > 0.8
    )
    sep = angular_separation(
        gammas["reco_alt"].value,
        gammas["reco_az"].value,
        gammas["true_alt"].value,
        gammas["true_az"].value,
    )
    assert np.percentile(sep, 68) < 0.5  # deg
    labels = np.r_[np.ones(len(gammas)), np.zeros(len(protons))]
    scores = np.r_[np.asarray(gammas["gh_score"]), np.asarray(protons["gh_score"])]
    assert roc_auc_score(labels, scores) > 0.8
    assert np.all(gammas["multiplicity"] >= 2)


@pytest.mark.verifies_usecase("UC-130-1.2.2")
def test_simulated_dl2_follows_the_contract(chain: Chain) -> None:
    """The IRF engineer's strict reader accepts it: columns, units, SIM_* keywords."""
    dl2 = read_dl2(chain.dl2["gamma_test"], simulated=True)
    header = fits.getheader(chain.dl2["gamma_test"])
    card = RUNS["gamma_test"]
    assert header["SIM_NSHW"] == card["n_showers"]
    assert header["SIM_EMIN"] == pytest.approx(0.05)
    assert header["SIM_IDX"] == -2.0
    assert header["SIM_RMAX"] == 350.0
    assert header["SIM_VCON"] == 0.0
    assert header["SRC_OFFS"] == pytest.approx(0.4)
    assert header["PARTICLE"] == "gamma"
    assert header["DATALEVL"] == "DL2"
    assert header["DATACAT"] == "SIM"
    assert set(dl2.events["particle_type"]) == {"gamma"}
    proton = fits.getheader(chain.dl2["proton_test"])
    assert proton["SIM_VCON"] == 3.0
    assert "SRC_OFFS" not in proton
