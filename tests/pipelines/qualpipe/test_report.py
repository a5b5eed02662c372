"""QualPipe on a real small observation: verdicts, reports and plots (UC-140-1.2.1)."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from dpps.pipelines.qualpipe.readers import read_dl1
from dpps.pipelines.tool import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, PROVENANCE_NAME, run_tool
from tests.pipelines.calibpipe.helpers import write_injected
from tests.pipelines.qualpipe.helpers import Observation, write_dl2

pytestmark = pytest.mark.verifies_usecase("UC-140-1.2.1")


def _inputs(obs: Observation) -> dict[str, list[Path]]:
    return {"calibration": obs.calibration, "dl1": [obs.dl1], "dl2": [obs.dl2]}


def _check(report: dict[str, object], metric: str, tel: int | None = None) -> dict[str, object]:
    checks = report["checks"]
    assert isinstance(checks, list)
    return next(c for c in checks if c["metric"] == metric and c["tel_id"] == tel)


def _metric(report: dict[str, object], name: str, tel: int | None = None) -> float:
    metrics = report["metrics"]
    assert isinstance(metrics, list)
    return float(next(m["value"] for m in metrics if m["name"] == name and m["tel_id"] == tel))


def test_good_observation_passes_with_the_default_criteria(
    observation: Observation, tmp_path: Path
) -> None:
    result = run_tool(
        "qualpipe-report", {"title": "Night 2026-11-21"}, _inputs(observation), tmp_path
    )
    assert result.exit_code == EXIT_OK, result.error
    report = json.loads((tmp_path / "quality_report.json").read_text())
    assert report["passed"] is True, [c for c in report["checks"] if c["status"] != "pass"]
    assert report["summary"]["missing"] == 0
    assert report["summary"]["failed_errors"] == 0
    assert report["product"]["DATALEVL"] == "QUAL"
    assert report["product"]["DATATYPE"] == "quality report"
    assert report["product"]["OBS_ID"] == 1
    # The metrics agree with what the simulator planned and DataPipe wrote.
    assert _metric(report, "dl2.n_events") == len(observation.shower_multiplicity)
    assert _metric(report, "dl2.multiplicity_mean") == pytest.approx(
        np.mean(observation.shower_multiplicity)
    )
    images = read_dl1(observation.dl1)
    span = images.time.max() - images.time.min()
    for tel in (1, 2):
        n = int((images.tel_id == tel).sum())
        assert _metric(report, "dl1.n_images", tel) == n
        assert _metric(report, "dl1.image_rate_hz", tel) == pytest.approx(n / span)
        assert _check(report, "calibration.unusable_fraction", tel)["status"] == "pass"
        width = _metric(report, "calibration.pedestal_width_median", tel)
        assert width == pytest.approx(46.6, rel=0.03)  # the simulator's LSTCam noise
    kinds = sorted(o.product_type for o in result.outputs)
    assert kinds == ["quality plot"] * 4 + ["quality report", "quality report page"]
    assert result.outputs[-1].metadata == {"passed": True, "obs_id": 1}


def test_plots_are_pngs_and_the_page_is_self_contained(
    observation: Observation, tmp_path: Path
) -> None:
    result = run_tool("qualpipe-report", {}, _inputs(observation), tmp_path)
    assert result.exit_code == EXIT_OK, result.error
    pngs = sorted((tmp_path / "quality_plots").glob("*.png"))
    assert [p.stem for p in pngs] == [
        "calibration_tel001",
        "calibration_tel002",
        "dl1_parameters",
        "dl2_events",
    ]
    for png in pngs:
        image = imread(png)
        assert image.ndim == 3
        assert image.shape[0] >= 400
        assert image.shape[1] >= 1000
        assert float(image[..., :3].std()) > 0.05  # not a blank canvas
    page = (tmp_path / "quality_report.html").read_text()
    assert "PASSED" in page
    inlined = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(inlined) == 4
    assert {base64.b64decode(i) for i in inlined} == {p.read_bytes() for p in pngs}
    assert imread(io.BytesIO(base64.b64decode(inlined[0]))).ndim == 3
    assert "http" not in page.replace("http-equiv", "")  # nothing fetched from anywhere


def test_criteria_that_the_data_miss_fail_the_report(
    observation: Observation, tmp_path: Path
) -> None:
    criteria = tmp_path / "strict.yaml"
    criteria.write_text(
        "criteria:\n"
        "  - {kind: threshold, metric: dl2.gamma_like_fraction, op: '>=', value: 0.9,\n"
        "     description: expects a gamma-ray burst}\n"
        "  - {kind: range, metric: dl1.image_rate_hz, min: 1000, severity: warning}\n"
        "  - {kind: range, metric: calibration.gain_median, min: 70, max: 90}\n"
    )
    result = run_tool(
        "qualpipe-report", {"criteria_file": str(criteria)}, _inputs(observation), tmp_path / "out"
    )
    assert result.exit_code == EXIT_OK, result.error  # a failed verdict is a result
    report = json.loads((tmp_path / "out" / "quality_report.json").read_text())
    assert report["passed"] is False
    gamma = _check(report, "dl2.gamma_like_fraction")
    assert (gamma["status"], gamma["severity"], gamma["criterion"]) == ("fail", "error", ">= 0.9")
    assert gamma["value"] == pytest.approx(_metric(report, "dl2.gamma_like_fraction"))
    assert _check(report, "dl1.image_rate_hz", 1)["status"] == "fail"  # a warning only
    assert _check(report, "calibration.gain_median", 2)["status"] == "pass"
    assert report["summary"] == {
        "checks": 5,
        "passed": 2,
        "failed": 3,
        "failed_errors": 1,
        "missing": 0,
    }
    assert result.outputs[-1].metadata["passed"] is False
    assert "FAILED" in (tmp_path / "out" / "quality_report.html").read_text()


def test_warnings_alone_do_not_fail_but_a_required_missing_metric_does(
    observation: Observation, tmp_path: Path
) -> None:
    inline = [
        {"kind": "range", "metric": "dl1.image_rate_hz", "min": 1000, "severity": "warning"},
        {"kind": "threshold", "metric": "dl2.n_events", "op": ">", "value": 0},
    ]
    result = run_tool(
        "qualpipe-report",
        {"criteria": inline, "plots": False},
        {"dl1": [observation.dl1]},
        tmp_path / "a",
    )
    report = json.loads((tmp_path / "a" / "quality_report.json").read_text())
    assert report["passed"] is True
    assert _check(report, "dl2.n_events")["status"] == "missing"
    assert not (tmp_path / "a" / "quality_plots").exists()
    inline[1]["required"] = True
    result = run_tool(
        "qualpipe-report",
        {"criteria": inline, "plots": False},
        {"dl1": [observation.dl1]},
        tmp_path / "b",
    )
    assert result.exit_code == EXIT_OK
    report = json.loads((tmp_path / "b" / "quality_report.json").read_text())
    assert report["passed"] is False
    assert _check(report, "dl2.n_events")["status"] == "fail"


def test_broken_camera_and_bad_reconstruction_fail_the_defaults(tmp_path: Path) -> None:
    """Ten dead pixels of 61 and events without an energy: the default criteria catch both."""
    dead = tuple(range(30, 40))
    injected = write_injected(tmp_path / "dl0", n_each=60, dead=dead, hot=())
    cal = run_tool("calibpipe-camera", {}, {"dl0": [injected.path]}, tmp_path / "cal")
    assert cal.exit_code == EXIT_OK, cal.error
    n = 200
    energy = np.where(np.arange(n) % 10 == 0, np.nan, 1.0)
    dl2 = write_dl2(
        tmp_path / "dl2.fits",
        time=np.linspace(0, 100, n),
        multiplicity=np.full(n, 2),
        energy=energy,
        gh_score=np.full(n, 0.5),
    )
    inputs = {"calibration": [cal.outputs[0].path], "dl2": [dl2]}
    result = run_tool("qualpipe-report", {}, inputs, tmp_path / "out")
    assert result.exit_code == EXIT_OK, result.error
    report = json.loads((tmp_path / "out" / "quality_report.json").read_text())
    assert report["passed"] is False
    unusable = _check(report, "calibration.unusable_fraction", 7)
    assert unusable["status"] == "fail"
    assert unusable["value"] == pytest.approx(len(dead) / 61)
    invalid = _check(report, "dl2.invalid_fraction")
    assert (invalid["status"], invalid["value"]) == ("fail", pytest.approx(0.1))


def test_dl1_in_ctapipe_layout_is_read_through_the_adapter(tmp_path: Path) -> None:
    from tests.pipelines.qualpipe.helpers import write_table_dl1

    rng = np.random.default_rng(0)
    columns = {
        tel: {
            "hillas_intensity": rng.lognormal(5, 1, 50),
            "hillas_width": rng.uniform(0.02, 0.1, 50),
            "hillas_length": rng.uniform(0.05, 0.3, 50),
            "time": np.linspace(0, 10, 50),
        }
        for tel in (3, 4)
    }
    path = write_table_dl1(tmp_path / "dl1.h5", columns)
    result = run_tool("qualpipe-report", {"plots": False}, {"dl1": [path]}, tmp_path / "out")
    assert result.exit_code == EXIT_OK, result.error
    report = json.loads((tmp_path / "out" / "quality_report.json").read_text())
    assert _metric(report, "dl1.n_images", 4) == 50
    assert _metric(report, "dl1.image_rate_hz", 3) == pytest.approx(5.0)
    assert _metric(report, "dl1.width_median", 3) == pytest.approx(
        np.median(columns[3]["hillas_width"])
    )


@pytest.mark.parametrize(
    ("inputs", "expected", "code"),
    [
        ({}, "give at least one input of", EXIT_CONFIG),
        ({"dl3": ["x.fits"]}, "unknown inputs ['dl3']", EXIT_CONFIG),
        ({"dl1": ["table.h5"]}, "no DL1 image-parameter table", EXIT_FAILURE),
        ({"dl2": ["events.fits"]}, "no EVENTS table: not a DL2 file", EXIT_FAILURE),
        ({"dl2": ["energy_in_m.fits"]}, "reco_energy has unit 'm', expected TeV", EXIT_FAILURE),
        ({"calibration": ["events.fits"]}, "no CALIBRATION HDU", EXIT_FAILURE),
        ({"dl2": ["missing.fits"]}, "DL2 file not found", EXIT_FAILURE),
    ],
)
def test_unreadable_inputs_are_clear_errors_and_write_no_report(
    tmp_path: Path, inputs: dict[str, list[str]], expected: str, code: int
) -> None:
    import astropy.units as u
    import h5py
    from astropy.io import fits

    with h5py.File(tmp_path / "table.h5", "w") as f:
        f.create_dataset("something", data=np.arange(3))
    fits.HDUList([fits.PrimaryHDU()]).writeto(tmp_path / "events.fits")
    write_dl2(
        tmp_path / "energy_in_m.fits",
        time=np.arange(3.0),
        multiplicity=np.ones(3),
        energy=np.ones(3),
        gh_score=np.ones(3),
        energy_unit=u.m,
    )
    given = {k: [tmp_path / p for p in v] for k, v in inputs.items()}
    result = run_tool("qualpipe-report", {}, given, tmp_path / "out")
    assert result.exit_code == code
    assert result.error is not None
    assert expected in result.error
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [PROVENANCE_NAME]
