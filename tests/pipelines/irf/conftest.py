"""Shared, session-wide products of the toy chain: simulated and observed DL2, IRF, DL3.

Each is made once per test process (xdist worker) because every step takes seconds; tests
only read them and write whatever they produce into their own ``tmp_path``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dpps.pipelines.datapipe import toy_dl2 as dl2_factory
from dpps.pipelines.tool import run_tool


@pytest.fixture(scope="session")
def production(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return dl2_factory.write_production(tmp_path_factory.mktemp("production"))


@pytest.fixture(scope="session")
def observations(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return dl2_factory.write_observations(tmp_path_factory.mktemp("observed"))


@pytest.fixture(scope="session")
def irf_file(production: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """IRFs with cuts optimised for sensitivity (the tool's default configuration)."""
    out = tmp_path_factory.mktemp("irf")
    inputs = {"gammas": [production["gamma"]], "protons": [production["proton"]]}
    result = run_tool("datapipe-irf", {}, inputs, out)
    assert result.exit_code == 0, result.error
    return out / "irf.fits"


@pytest.fixture(scope="session")
def dl3_dir(
    observations: list[Path], irf_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("dl3")
    result = run_tool("datapipe-dl3", {}, {"dl2": observations, "irf": [irf_file]}, out)
    assert result.exit_code == 0, result.error
    return out
