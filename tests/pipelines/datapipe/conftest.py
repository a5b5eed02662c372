"""DataPipe fixtures: the real simulated chain, shared by the session's workers."""

from __future__ import annotations

import pytest

from tests.pipelines.datapipe.chain import Chain, shared_chain


@pytest.fixture(scope="session")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    return shared_chain(tmp_path_factory)
