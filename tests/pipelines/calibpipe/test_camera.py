"""Camera calibration recovers what the DL0 was made with (UC-120-2.20)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from dpps.instrument.camera import CAMERAS
from dpps.pipelines.calibpipe.camera import Flag
from dpps.pipelines.calibpipe.product import parse_time, read_calibration
from dpps.pipelines.tool import EXIT_OK, PROVENANCE_NAME, run_tool, wms_entry
from tests.pipelines.calibpipe.helpers import (
    Injected,
    simulate_calibration,
    write_injected,
)

pytestmark = pytest.mark.verifies_usecase("UC-120-2.20")


@pytest.fixture(scope="module")
def acada_dl0(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return simulate_calibration(tmp_path_factory.mktemp("acada"), telescopes=(1, 2), events=120)


@pytest.fixture(scope="module")
def injected(tmp_path_factory: pytest.TempPathFactory) -> Injected:
    return write_injected(tmp_path_factory.mktemp("injected"))


def test_recovers_the_acada_simulator_truth(acada_dl0: list[Path], tmp_path: Path) -> None:
    """Every pixel of the simulator has gain = waveform_scale, pedestal = offset x scale and
    a width set by electronic noise and night-sky light; no time shifts."""
    result = run_tool("calibpipe-camera", {}, {"dl0": acada_dl0}, tmp_path)
    assert result.exit_code == EXIT_OK, result.error
    assert sorted(o.path.name for o in result.outputs) == [
        "TEL001_OBSID0000000001_CAMERA_CALIBRATION.fits",
        "TEL002_OBSID0000000001_CAMERA_CALIBRATION.fits",
    ]
    spec = CAMERAS["LSTCam"]
    true_gain = spec.waveform_scale
    true_pedestal = spec.waveform_offset * spec.waveform_scale
    noise_pe = np.sqrt(spec.noise_pe**2 + spec.nsb_pe_per_ns / spec.sampling_ghz)
    true_width = np.sqrt((noise_pe * spec.waveform_scale) ** 2 + 1 / 12)  # + rounding
    for output in result.outputs:
        product = read_calibration(output.path)
        usable = ~product.unusable
        assert product.camera == "LSTCam"
        assert product.pixel_id.tolist() == list(range(spec.n_pixels))
        assert usable.mean() > 0.99
        assert abs(product.gain[usable].mean() / true_gain - 1) < 0.03
        assert np.all(np.abs(product.pedestal - true_pedestal) < 6.0)
        assert abs(np.median(product.pedestal_width) / true_width - 1) < 0.01
        deviation = product.pedestal_width / true_width - 1  # Poisson NSB: heavy tails
        assert np.all(np.abs(deviation) < 0.15)
        assert np.sqrt(np.mean(deviation**2)) < 0.04
        assert np.all(np.abs(product.time_shift[usable]) < 0.5)
        assert output.metadata["tel_id"] == product.tel_id
        assert output.data_level == "CAL"
        assert output.product_type == "camera calibration"


def test_product_header_validity_and_provenance(acada_dl0: list[Path], tmp_path: Path) -> None:
    result = run_tool("calibpipe-camera", {"validity_after_s": 600}, {"dl0": acada_dl0}, tmp_path)
    assert result.exit_code == EXIT_OK, result.error
    path = result.outputs[0].path
    with fits.open(path, checksum=True) as hdul:
        primary, table = hdul[0].header, hdul["CALIBRATION"].header
        assert hdul["CALIBRATION"].columns.names[:6] == [
            "pixel_id",
            "pedestal",
            "pedestal_width",
            "gain",
            "time_shift",
            "unusable",
        ]
        for header in (primary, table):
            assert header["TEL_ID"] == 1
            assert header["OBS_ID"] == 1
        assert primary["DATALEVL"] == "CAL"
        assert primary["DATATYPE"] == "camera calibration"
        first, last = parse_time(primary["DATE-OBS"]), parse_time(primary["DATE-END"])
        valid_from, valid_to = parse_time(primary["VALID_FROM"]), parse_time(primary["VALID_TO"])
        assert table["VALID_FROM"] == primary["VALID_FROM"]
    assert (first - valid_from).total_seconds() == pytest.approx(3600, abs=1)
    assert (valid_to - last).total_seconds() == pytest.approx(600, abs=1)
    assert last > first
    provenance = json.loads((tmp_path / PROVENANCE_NAME).read_text())
    assert provenance["tool"] == "calibpipe-camera"
    assert provenance["config"]["validity_after_s"] == 600
    assert len(provenance["outputs"]) == 2
    assert {i["path"] for i in provenance["inputs"]["dl0"]} == {str(p) for p in acada_dl0}


def test_recovers_injected_per_pixel_truth(injected: Injected, tmp_path: Path) -> None:
    result = run_tool("calibpipe-camera", {}, {"dl0": [injected.path]}, tmp_path)
    assert result.exit_code == EXIT_OK, result.error
    product = read_calibration(result.outputs[0].path)
    flags = np.asarray(fits.getdata(result.outputs[0].path, "CALIBRATION")["flags"])
    assert (product.tel_id, product.obs_id) == (7, 42)
    assert sorted(np.flatnonzero(product.unusable).tolist()) == sorted(
        injected.dead + injected.hot
    )
    assert all(flags[p] & Flag.DEAD for p in injected.dead)
    assert all(flags[p] & Flag.HOT for p in injected.hot)
    live = ~product.unusable
    assert np.all(np.abs(product.pedestal - injected.pedestal)[live] < 1.5)
    assert product.pedestal[injected.dead[0]] == pytest.approx(
        injected.pedestal[injected.dead[0]], abs=0.5
    )
    gain_error = np.asarray(fits.getdata(result.outputs[0].path, "CALIBRATION")["gain_error"])
    pulls = (product.gain[live] - injected.gain[live]) / gain_error[live]
    assert np.all(np.abs(pulls) < 4.5)  # every pixel within its statistical error
    assert 0.5 < np.std(pulls) < 1.5  # and the errors are neither inflated nor too small
    assert np.median(gain_error[live] / product.gain[live]) < 0.12
    truth = injected.time_shift - np.median(injected.time_shift[live])
    assert np.all(np.abs(product.time_shift[live] - truth[live]) < 0.15)
    # Stand-in values of unusable pixels are finite, so consumers never meet NaN.
    assert np.all(np.isfinite(product.gain))
    assert np.all(np.isfinite(product.time_shift))


def test_second_pass_rereads_when_events_exceed_the_cache(
    injected: Injected, tmp_path: Path
) -> None:
    cached = run_tool("calibpipe-camera", {}, {"dl0": [injected.path]}, tmp_path / "a")
    reread = run_tool(
        "calibpipe-camera", {"cache_mb": 0}, {"dl0": [injected.path]}, tmp_path / "b"
    )
    assert cached.exit_code == reread.exit_code == EXIT_OK
    assert cached.outputs[0].path.read_bytes() == reread.outputs[0].path.read_bytes()


def test_skips_other_streams_and_runs_as_a_wms_tool(
    tmp_path: Path, injected: Injected, acada_dl0: list[Path]
) -> None:
    """Monitoring tables among the inputs are ignored; the WMS entry point writes the
    manifest of outputs the WMS registers."""
    monitoring = [p for p in acada_dl0 if p.name.endswith("POINTING.fits")]
    assert monitoring
    code = wms_entry(
        inputs={"dl0": [str(injected.path), *map(str, monitoring)]},
        parameters={"tool": "calibpipe-camera", "config": {"min_events": 50}},
        outdir=tmp_path,
    )
    assert code == EXIT_OK
    manifest = json.loads((tmp_path / "outputs.json").read_text())
    assert [m["product_type"] for m in manifest] == ["camera calibration"]
    assert manifest[0]["metadata"]["tel_id"] == 7
    assert manifest[0]["metadata"]["unusable_pixels"] == 2
