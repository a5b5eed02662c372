"""Quality criteria: strict YAML, exact evaluation, metrics from known arrays."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from dpps.core.errors import ConfigError
from dpps.pipelines.qualpipe.criteria import Range, Threshold, evaluate, load_criteria
from dpps.pipelines.qualpipe.metrics import METRICS, MetricValue, dl1_metrics, dl2_metrics
from dpps.pipelines.qualpipe.readers import DL1Images, DL2Events
from dpps.pipelines.tool import EXIT_CONFIG, PROVENANCE_NAME, run_tool

pytestmark = pytest.mark.verifies_usecase("UC-140-1.2.1")


def test_packaged_defaults_load_and_name_known_metrics() -> None:
    criteria = load_criteria()
    assert len(criteria) >= 8
    assert {c.metric for c in criteria} <= set(METRICS)
    assert {type(c) for c in criteria} == {Range, Threshold}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("criteria: [\n  - kind: range", "is not valid YAML"),
        (
            "criteria:\n  - {kind: range, metric: dl2.n_events, maximum: 5}",
            "criteria.0.range.maximum: Extra inputs are not permitted",
        ),
        (
            "criteria:\n  - {kind: range, metric: dl2.n_event, max: 5}",
            "criteria.0.range.metric: Value error, unknown metric 'dl2.n_event'",
        ),
        (
            "criteria:\n  - {kind: range, metric: dl2.n_events, min: 5, max: 1}",
            "min 5.0 is above max 1.0",
        ),
        ("criteria:\n  - {kind: range, metric: dl2.n_events}", "a range needs min, max or both"),
        ("criteria:\n  - {metric: dl2.n_events, max: 1}", "criteria.0: Unable to extract tag"),
        ("criteria:\n  - {kind: interval, metric: dl2.n_events}", "does not match any of the"),
        (
            "criteria:\n  - {kind: threshold, metric: dl2.n_events, op: '=<', value: 1}",
            "criteria.0.threshold.op: Input should be '<', '<=', '>' or '>='",
        ),
        (
            "criteria:\n  - {kind: threshold, metric: dl2.n_events, op: '<', value: lots}",
            "criteria.0.threshold.value: Input should be a valid number",
        ),
        (
            "criteria:\n  - {kind: threshold, metric: dl2.n_events, op: '<', value: 1,\n"
            "     severity: fatal}",
            "severity: Input should be 'error' or 'warning'",
        ),
        ("criteria: []", "criteria: List should have at least 1 item"),
        ("- {kind: range, metric: dl2.n_events, max: 1}", "(top level): Input should be a valid"),
        ("", "(top level): Input should be a valid dictionary"),
        ("rules:\n  - {kind: range, metric: dl2.n_events, max: 1}", "rules: Extra inputs"),
    ],
)
def test_malformed_criteria_are_a_config_error(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "criteria.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_criteria(path)
    message = str(caught.value)
    assert message.startswith(f"quality criteria {path}")
    assert expected in message
    assert "\n" not in message.split(": ", 1)[0]


def test_the_tool_refuses_bad_criteria_with_exit_code_2(tmp_path: Path) -> None:
    bad = tmp_path / "criteria.yaml"
    bad.write_text("criteria:\n  - {kind: range, metric: dl1.rate, min: 1}\n")
    dl2 = tmp_path / "unused.fits"
    result = run_tool(
        "qualpipe-report", {"criteria_file": str(bad)}, {"dl2": [dl2]}, tmp_path / "out"
    )
    assert result.exit_code == EXIT_CONFIG
    assert result.error is not None
    assert "unknown metric 'dl1.rate'" in result.error
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [PROVENANCE_NAME]
    missing = run_tool(
        "qualpipe-report",
        {"criteria_file": str(tmp_path / "nope.yaml")},
        {"dl2": [dl2]},
        tmp_path / "out2",
    )
    assert missing.exit_code == EXIT_CONFIG
    assert missing.error is not None
    assert "cannot read quality criteria" in missing.error
    inline = {"criteria": [{"kind": "range", "metric": "dl2.n_events", "max": "x"}]}
    with pytest.raises(ConfigError, match=r"criteria\.0\.range\.max: Input should be a valid"):
        run_tool("qualpipe-report", inline, {"dl2": [dl2]}, tmp_path)
    both = {
        "criteria_file": str(bad),
        "criteria": [{"kind": "range", "metric": "dl2.n_events", "max": 1}],
    }
    result = run_tool("qualpipe-report", both, {"dl2": [dl2]}, tmp_path / "out3")
    assert result.exit_code == EXIT_CONFIG
    assert result.error is not None
    assert "not both" in result.error


def test_evaluation_is_exact_at_the_edges() -> None:
    rng = Range(kind="range", metric="dl2.n_events", min=10, max=20)
    below = Threshold(kind="threshold", metric="dl2.gh_score_mean", op="<", value=0.5)
    at_most = Threshold(kind="threshold", metric="dl2.gh_score_mean", op="<=", value=0.5)
    open_top = Range(kind="range", metric="dl1.n_images", min=1)
    metrics = [
        MetricValue("dl2.n_events", 10.0),
        MetricValue("dl2.gh_score_mean", 0.5),
        MetricValue("dl1.n_images", 0.0, tel_id=1),
        MetricValue("dl1.n_images", 1e9, tel_id=2),
    ]
    results = evaluate([rng, below, at_most, open_top], metrics)
    assert [(r.metric, r.tel_id, r.status) for r in results] == [
        ("dl2.n_events", None, "pass"),
        ("dl2.gh_score_mean", None, "fail"),
        ("dl2.gh_score_mean", None, "pass"),
        ("dl1.n_images", 1, "fail"),
        ("dl1.n_images", 2, "pass"),
    ]
    assert [r.criterion for r in results[:2]] == ["in [10, 20]", "< 0.5"]
    nan = evaluate([open_top], [MetricValue("dl1.n_images", math.nan, tel_id=3)])
    assert nan[0].status == "fail"  # nothing to measure is not a pass
    assert nan[0].as_dict()["value"] == "nan"


def test_metrics_from_known_arrays() -> None:
    images = DL1Images(
        tel_id=np.array([1, 1, 1, 2]),
        intensity=np.array([100.0, 200.0, 0.0, 50.0]),
        width=np.array([0.1, 0.3, np.nan, 0.2]),
        length=np.array([0.2, 0.4, np.nan, 0.5]),
        time=np.array([0.0, 1.0, 2.0, 4.0]),
    )
    values = {(m.name, m.tel_id): m.value for m in dl1_metrics(images)}
    assert values[("dl1.n_images", 1)] == 3
    assert values[("dl1.image_rate_hz", 1)] == pytest.approx(0.75)  # 3 images in 4 s
    assert values[("dl1.parametrised_fraction", 1)] == pytest.approx(2 / 3)
    assert values[("dl1.intensity_median", 1)] == pytest.approx(150.0)  # parametrised only
    assert values[("dl1.width_median", 2)] == pytest.approx(0.2)
    events = DL2Events(
        time=np.array([0.0, 5.0, 10.0]),
        multiplicity=np.array([2.0, 3.0, 4.0]),
        reco_energy=np.array([1.0, np.nan, 3.0]),
        gh_score=np.array([0.9, 0.2, 0.4]),
        obs_id=None,
        header={},
    )
    values = {m.name: m.value for m in dl2_metrics(events)}
    assert values["dl2.event_rate_hz"] == pytest.approx(0.3)
    assert values["dl2.invalid_fraction"] == pytest.approx(1 / 3)
    assert values["dl2.multiplicity_mean"] == pytest.approx(3.0)  # valid events only
    assert values["dl2.gamma_like_fraction"] == pytest.approx(0.5)
    assert values["dl2.reco_energy_median"] == pytest.approx(2.0)
    no_times = DL1Images(
        tel_id=np.array([1]),
        intensity=np.array([1.0]),
        width=np.array([0.1]),
        length=np.array([0.1]),
    )
    assert "dl1.image_rate_hz" not in {m.name for m in dl1_metrics(no_times)}
