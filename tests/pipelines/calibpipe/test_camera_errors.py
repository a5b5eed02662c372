"""Bad input to the camera calibration: a clear error, and no product left behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dpps.core.errors import ConfigError
from dpps.pipelines.tool import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, PROVENANCE_NAME, run_tool
from tests.pipelines.calibpipe.helpers import Injected, write_injected

pytestmark = pytest.mark.verifies_usecase("UC-120-2.20")


@pytest.fixture(scope="module")
def injected(tmp_path_factory: pytest.TempPathFactory) -> Injected:
    return write_injected(tmp_path_factory.mktemp("injected"), n_each=60)


def _fails(
    out: Path,
    inputs: dict[str, list[Path]],
    config: dict[str, object] | None = None,
    code: int = EXIT_FAILURE,
) -> str:
    result = run_tool("calibpipe-camera", config or {}, inputs, out)
    assert result.exit_code == code, result.error
    assert result.outputs == []
    assert sorted(p.name for p in out.iterdir()) == [PROVENANCE_NAME]  # no product, no temp
    provenance = json.loads((out / PROVENANCE_NAME).read_text())
    assert provenance["exit_code"] == code
    assert provenance["error"] == result.error
    assert result.error is not None
    return result.error


def test_truncated_dl0_is_an_integrity_failure(injected: Injected, tmp_path: Path) -> None:
    broken = tmp_path / "in" / injected.path.name
    broken.parent.mkdir()
    broken.write_bytes(injected.path.read_bytes()[: injected.path.stat().st_size // 2])
    error = _fails(tmp_path / "out", {"dl0": [broken]})
    assert "truncated" in error


def test_corrupted_bytes_are_caught_by_the_checksums(injected: Injected, tmp_path: Path) -> None:
    broken = tmp_path / injected.path.name
    data = bytearray(injected.path.read_bytes())
    data[-3000] ^= 0xFF  # inside the compressed event data
    broken.write_bytes(bytes(data))
    error = _fails(tmp_path / "out", {"dl0": [broken]})
    assert "DATASUM mismatch" in error or "CHECKSUM mismatch" in error


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("notes.fits.fz", b"hello", "is named like FITS but is not one"),
        ("notes.txt", b"hello", "is not a DL0 zfits file"),
    ],
)
def test_a_file_that_is_not_dl0(tmp_path: Path, name: str, content: bytes, expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert expected in _fails(tmp_path / "out", {"dl0": [path]})


def test_missing_file_and_no_calibration_stream(tmp_path: Path) -> None:
    error = _fails(tmp_path / "a", {"dl0": [tmp_path / "nowhere.fits.fz"]})
    assert "does not exist" in error
    error = _fails(tmp_path / "b", {"dl0": []})
    assert "no DL0 telescope event file with calibration events" in error


def test_too_few_events_writes_nothing_for_any_telescope(
    injected: Injected, tmp_path: Path
) -> None:
    """Telescope 7 has enough events, telescope 8 does not: neither product is written."""
    few = write_injected(tmp_path / "few", n_each=5, tel_id=8, seed=3)
    error = _fails(tmp_path / "out", {"dl0": [injected.path, few.path]}, {"min_events": 20})
    assert "telescope 8, observation 42: only 5 pedestal events" in error


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"window_widht": 5}, "window_widht: Extra inputs are not permitted"),
        ({"window_width": 0}, "window_width: Input should be greater than or equal to 1"),
        ({"excess_noise_f2": "big"}, "excess_noise_f2: Input should be a valid number"),
    ],
)
def test_bad_configuration_is_refused_before_running(
    injected: Injected, tmp_path: Path, config: dict[str, object], expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        run_tool("calibpipe-camera", config, {"dl0": [injected.path]}, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_window_longer_than_the_waveform(injected: Injected, tmp_path: Path) -> None:
    error = _fails(tmp_path / "out", {"dl0": [injected.path]}, {"window_width": 99})
    assert "window_width 99 exceeds the 30 samples" in error


def test_missing_input_name(tmp_path: Path) -> None:
    error = _fails(tmp_path / "out", {"waveforms": []}, code=EXIT_CONFIG)
    assert "missing input 'dl0'" in error


def test_never_overwrites_a_product(injected: Injected, tmp_path: Path) -> None:
    first = run_tool("calibpipe-camera", {}, {"dl0": [injected.path]}, tmp_path)
    assert first.exit_code == EXIT_OK
    product = first.outputs[0].path
    before = product.read_bytes()
    shutil.copy(injected.path, tmp_path / "copy.fits.fz")
    again = run_tool("calibpipe-camera", {}, {"dl0": [tmp_path / "copy.fits.fz"]}, tmp_path)
    assert again.exit_code == EXIT_FAILURE
    assert again.error is not None
    assert "exists already" in again.error
    assert product.read_bytes() == before


def test_a_camera_without_any_working_pixel(tmp_path: Path) -> None:
    dead = write_injected(tmp_path / "dead", n_each=30, dead=tuple(range(61)), hot=())
    error = _fails(tmp_path / "out", {"dl0": [dead.path]})
    assert "no usable pixel" in error
