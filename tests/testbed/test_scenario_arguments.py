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


def test_a_scaled_production_keeps_its_shape_and_refuses_nonsense() -> None:
    """``--showers`` scales every run of the models' production, none below 50 showers (a
    classifier needs both classes); a fraction outside (0, 1] is an error, not a bigger run."""
    from dpps.pipelines.night.models import ProductionSize

    full = ProductionSize()
    quarter = full.scaled(0.25)
    assert quarter.gammas_train == round(full.gammas_train / 4)
    assert quarter.protons_irf == round(full.protons_irf / 4)
    assert quarter.gammas_irf == full.gammas_irf  # the theta cut needs them all
    assert quarter.n_estimators == full.n_estimators
    assert full.scaled(0.001).gammas_train == 50
    for wrong in (0.0, 1.5, -1.0):
        with pytest.raises(InvalidInput, match="fraction"):
            full.scaled(wrong)
