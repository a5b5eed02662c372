"""The real SimPipe -> DataPipe chain on a small array, built once per test session.

Four runs (gamma and proton, for training and for testing) on the four LSTs of the north
layout, each through ``datapipe-dl1``; models trained on the training runs; DL2 of the test
runs. Pytest-xdist workers share one build: the first worker to get the lock builds it in the
session's common temporary directory, the others wait and reuse it (``shared_chain``).

Other test packages (IRF/DL3) may use ``shared_chain`` for tests on the real chain.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from dpps.pipelines.tool import run_tool

#: Small but enough for stable physics checks (a few hundred events each).
RUNS: dict[str, dict[str, Any]] = {
    "gamma_train": {"particle": "gamma", "n_showers": 500, "obs_id": 11, "seed": 11},
    "proton_train": {
        "particle": "proton",
        "n_showers": 1200,
        "obs_id": 12,
        "seed": 12,
        "view_cone_deg": 3.0,
        "e_min_tev": 0.1,
        "e_max_tev": 100.0,
    },
    "gamma_test": {"particle": "gamma", "n_showers": 400, "obs_id": 13, "seed": 13},
    "proton_test": {
        "particle": "proton",
        "n_showers": 800,
        "obs_id": 14,
        "seed": 14,
        "view_cone_deg": 3.0,
        "e_min_tev": 0.1,
        "e_max_tev": 100.0,
    },
}
COMMON = {"max_impact_m": 350.0, "compression": "zstd1"}
TRAIN = {"n_estimators": 60, "seed": 1}


@dataclass(frozen=True)
class Chain:
    root: Path
    dl0: dict[str, list[Path]]
    truth: dict[str, Path]
    dl1: dict[str, Path]
    models: Path
    card: Path
    dl2: dict[str, Path]

    @property
    def card_data(self) -> dict[str, Any]:
        return dict(json.loads(self.card.read_text()))


def _check(result: Any, what: str) -> Any:
    assert result.exit_code == 0, f"{what}: {result.error}"
    return result


def build(root: Path) -> Chain:
    """Run the chain into ``root`` (idempotent: a finished build is reused; a build that a
    killed worker left half done is started again from scratch)."""
    done = root / "chain.json"
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        for name, card in RUNS.items():
            sim = root / name / "dl0"
            _check(run_tool("simpipe-simulate", {**COMMON, **card}, {}, sim), name)
            dl0 = sorted(sim.glob("*.fits.fz"))
            truth = sorted(sim.glob("*_truth.fits"))
            _check(
                run_tool("datapipe-dl1", {}, {"dl0": dl0, "truth": truth}, root / name / "dl1"),
                f"{name} dl1",
            )
        dl1 = {n: next((root / n / "dl1").glob("*_dl1.h5")) for n in RUNS}
        _check(
            run_tool(
                "datapipe-train",
                TRAIN,
                {"gammas": [dl1["gamma_train"]], "protons": [dl1["proton_train"]]},
                root / "models",
            ),
            "train",
        )
        for name in ("gamma_test", "proton_test"):
            _check(
                run_tool(
                    "datapipe-dl2",
                    {},
                    {"dl1": [dl1[name]], "models": [root / "models" / "models.joblib"]},
                    root / name / "dl2",
                ),
                f"{name} dl2",
            )
        done.write_text("{}")
    return Chain(
        root=root,
        dl0={n: sorted((root / n / "dl0").glob("*.fits.fz")) for n in RUNS},
        truth={n: next((root / n / "dl0").glob("*_truth.fits")) for n in RUNS},
        dl1={n: next((root / n / "dl1").glob("*_dl1.h5")) for n in RUNS},
        models=root / "models" / "models.joblib",
        card=root / "models" / "model_card.json",
        dl2={
            n: next((root / n / "dl2").glob("*_dl2.fits")) for n in ("gamma_test", "proton_test")
        },
    )


def shared_chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    """The session's chain, built by whichever xdist worker gets there first."""
    common = tmp_path_factory.getbasetemp()
    if common.name.startswith("popen-gw"):  # xdist: the workers' base dirs share a parent
        common = common.parent
    root = common / "pipeline-chain"
    with FileLock(str(common / "pipeline-chain.lock")):
        return build(root)
