"""The scenarios refuse wrong arguments before they look for a testbed: no root, no
namespace and nothing on disk needed to say so."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpps.core.errors import InvalidInput
from dpps.testbed.scenario import longhaul, night


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"agent_catalog": "carrier-pigeon"}, "--agent-catalog 'carrier-pigeon'"),
        ({"files": 0}, "--files and --size-kib"),
        ({"size_kib": 0}, "--files and --size-kib"),
    ],
)
def test_wrong_arguments_are_refused_before_anything_starts(
    kwargs: dict[str, object], message: str, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInput, match=message):
        longhaul.run(tmp_path, **kwargs)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []  # no scenario directory, no state file


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"blocks": 0}, "--blocks must be at least 1"),
        ({"workers": ["CTAO-North", "DESY"]}, "workers run at CTAO-North and/or PIC"),
        ({"workers": []}, "none given"),
        ({"workers": ["CTAO-North"]}, "the models are produced at PIC, which needs a worker"),
    ],
)
def test_the_night_refuses_wrong_arguments_before_anything_starts(
    kwargs: dict[str, object], message: str, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInput, match=message):
        night.run(tmp_path, **kwargs)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
