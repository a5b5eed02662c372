"""Bad input to DataPipe: a clear error, the documented exit code, provenance, no outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dpps.cli.main import app
from dpps.core.errors import ConfigError
from dpps.pipelines.tool import EXIT_CONFIG, EXIT_FAILURE, PROVENANCE_NAME, run_tool
from tests.pipelines.datapipe.chain import Chain

runner = CliRunner()


def _corrupt(src: Path, dst: Path, how: str) -> Path:
    data = bytearray(src.read_bytes())
    if how == "flip":
        data[len(data) // 2 : len(data) // 2 + 64] = b"\x5a" * 64  # inside the events table
    elif how == "truncate":
        data = data[: len(data) // 3]
    else:
        data = bytearray(b"this is not a FITS file at all\n" * 100)
    dst.write_bytes(bytes(data))
    return dst


def _assert_failed_cleanly(out: Path, code: int, message: str) -> dict[str, object]:
    record = json.loads((out / PROVENANCE_NAME).read_text())
    assert record["exit_code"] == code
    assert message in str(record["error"])
    assert sorted(p.name for p in out.iterdir()) == [PROVENANCE_NAME]  # no (partial) output
    return dict(record)


@pytest.mark.verifies_usecase("UC-130-1.2.1")
@pytest.mark.parametrize(
    ("how", "message"),
    [("flip", "DATASUM mismatch"), ("truncate", "truncated"), ("garbage", "not")],
)
def test_corrupt_dl0_fails_with_provenance_and_no_outputs(
    chain: Chain, tmp_path: Path, how: str, message: str
) -> None:
    good = chain.dl0["gamma_test"]
    bad = _corrupt(good[1], tmp_path / good[1].name, how)
    out = tmp_path / "out"
    result = run_tool("datapipe-dl1", {}, {"dl0": [good[0], bad]}, out)
    assert result.exit_code == EXIT_FAILURE
    assert result.outputs == []
    record = _assert_failed_cleanly(out, EXIT_FAILURE, message)
    assert [i["path"] for i in record["inputs"]["dl0"]] == [str(good[0]), str(bad)]  # type: ignore[index]


def test_cli_run_exit_codes(chain: Chain, tmp_path: Path) -> None:
    good = chain.dl0["gamma_test"][0]
    bad = _corrupt(good, tmp_path / good.name, "flip")
    out = tmp_path / "cli"
    res = runner.invoke(
        app, ["pipeline", "run", "datapipe-dl1", "-i", f"dl0={bad}", "-o", str(out), "--json"]
    )
    assert res.exit_code == EXIT_FAILURE, res.output
    assert json.loads(res.stdout)["exit_code"] == EXIT_FAILURE
    _assert_failed_cleanly(out, EXIT_FAILURE, "DATASUM mismatch")
    # configuration errors: unknown tool, misspelled option, bad --input, missing file
    for args in (
        ["no-such-tool"],
        ["datapipe-dl1", "--set", "picture_thresh=5"],
        ["datapipe-dl1", "-i", "dl0"],
        ["datapipe-dl1", "-i", f"dl0={tmp_path}/x"],
    ):
        res = runner.invoke(app, ["pipeline", "run", *args, "-o", str(tmp_path / "c")])
        assert res.exit_code == EXIT_CONFIG, (args, res.output)
        assert "error:" in res.output
    # a tool without its required input: a configuration error, still with provenance
    res = runner.invoke(app, ["pipeline", "run", "datapipe-dl1", "-o", str(tmp_path / "none")])
    assert res.exit_code == EXIT_CONFIG
    _assert_failed_cleanly(tmp_path / "none", EXIT_CONFIG, "missing input 'dl0'")
    # success through the CLI, the outputs listed
    res = runner.invoke(
        app,
        [
            "pipeline",
            "run",
            "datapipe-dl1",
            "-i",
            f"dl0={good}",
            "-o",
            str(tmp_path / "ok"),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["outputs"][0]["data_level"] == "DL1"


def test_dl1_refuses_files_of_two_observations(chain: Chain, tmp_path: Path) -> None:
    files = [chain.dl0["gamma_test"][0], chain.dl0["proton_test"][0]]
    result = run_tool("datapipe-dl1", {}, {"dl0": files}, tmp_path)
    assert result.exit_code == EXIT_FAILURE
    _assert_failed_cleanly(tmp_path, EXIT_FAILURE, "inputs span observations [13, 14]")


def test_dl2_and_training_refuse_what_they_cannot_use(chain: Chain, tmp_path: Path) -> None:
    not_models = shutil.copy(chain.card, tmp_path / "models.joblib")
    result = run_tool(
        "datapipe-dl2",
        {},
        {"dl1": [chain.dl1["gamma_test"]], "models": [Path(not_models)]},
        tmp_path / "a",
    )
    assert result.exit_code == EXIT_FAILURE
    _assert_failed_cleanly(tmp_path / "a", EXIT_FAILURE, "cannot load models")
    result = run_tool(
        "datapipe-dl2",
        {},
        {"dl1": [chain.truth["gamma_test"]], "models": [chain.models]},
        tmp_path / "b",
    )
    assert result.exit_code == EXIT_FAILURE
    _assert_failed_cleanly(tmp_path / "b", EXIT_FAILURE, "cannot read DL1")
    swapped = {"gammas": [chain.dl1["proton_train"]], "protons": [chain.dl1["gamma_train"]]}
    result = run_tool("datapipe-train", {}, swapped, tmp_path / "c")
    assert result.exit_code == EXIT_FAILURE
    _assert_failed_cleanly(tmp_path / "c", EXIT_FAILURE, "given as gammas but holds 'proton'")
    with pytest.raises(ConfigError, match="n_estimators"):
        run_tool("datapipe-train", {"n_estimators": 0}, swapped, tmp_path / "d")


def test_dl1_refuses_a_truth_input_that_is_not_a_truth_table(chain: Chain, tmp_path: Path) -> None:
    dl0 = chain.dl0["gamma_test"][:1]
    result = run_tool(
        "datapipe-dl1", {}, {"dl0": dl0, "truth": [chain.dl2["gamma_test"]]}, tmp_path
    )
    assert result.exit_code == EXIT_FAILURE
    _assert_failed_cleanly(tmp_path, EXIT_FAILURE, "cannot read as a SimPipe truth table")
