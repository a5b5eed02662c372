"""One small, really processed observation, built once and shared by the xdist workers."""

from __future__ import annotations

import pytest
from filelock import FileLock

from tests.pipelines.qualpipe.helpers import Observation, observe


@pytest.fixture(scope="session")
def observation(tmp_path_factory: pytest.TempPathFactory) -> Observation:
    common = tmp_path_factory.getbasetemp()
    if common.name.startswith("popen-gw"):  # xdist: the workers' base dirs share a parent
        common = common.parent
    with FileLock(str(common / "qualpipe-observation.lock")):
        return observe(common / "qualpipe-observation")
