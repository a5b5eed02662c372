"""The IRF and DL3 tools from the command line: ``dpps pipeline run``."""

from __future__ import annotations

import json
from pathlib import Path

from astropy.io import fits
from typer.testing import CliRunner

from dpps.cli.main import app

runner = CliRunner()


def test_irf_and_dl3_from_the_cli(
    production: dict[str, Path], observations: list[Path], tmp_path: Path
) -> None:
    config = tmp_path / "irf.yaml"
    config.write_text("cuts: fixed\ngh_cut: 0.7\ntheta_cut_deg: 0.2\n", encoding="utf-8")
    irf = runner.invoke(
        app,
        [
            "pipeline",
            "run",
            "datapipe-irf",
            "--config",
            str(config),
            "-i",
            f"gammas={production['gamma']}",
            "-o",
            str(tmp_path / "irf"),
            "--json",
        ],
    )
    assert irf.exit_code == 0, irf.stderr
    report = json.loads(irf.stdout)
    assert [o["product_type"] for o in report["outputs"]] == ["irf"]
    irf_path = tmp_path / "irf" / "irf.fits"
    assert fits.getheader(irf_path)["CUTMODE"] == "fixed"
    dl3 = runner.invoke(
        app,
        [
            "pipeline",
            "run",
            "datapipe-dl3",
            "--set",
            "category=C",
            "-i",
            f"dl2={observations[0]}",
            "-i",
            f"irf={irf_path}",
            "-o",
            str(tmp_path / "dl3"),
            "--json",
        ],
    )
    assert dl3.exit_code == 0, dl3.stderr
    outputs = json.loads(dl3.stdout)["outputs"]
    assert sorted(o["product_type"] for o in outputs) == ["event list", "index", "index", "irf"]
    assert {o["metadata"]["category"] for o in outputs} == {"C"}


def test_cli_errors_are_one_line_and_an_exit_code(
    production: dict[str, Path], tmp_path: Path
) -> None:
    # a DL2 file of the wrong kind: the tool fails (1) and says why
    wrong = runner.invoke(
        app,
        [
            "pipeline",
            "run",
            "datapipe-irf",
            "--set",
            "cuts=fixed",
            "-i",
            f"gammas={production['proton']}",
            "-o",
            str(tmp_path / "a"),
        ],
    )
    assert wrong.exit_code == 1
    assert "expected gamma events" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    # a misspelled option: a configuration error (2) before anything runs
    typo = runner.invoke(
        app,
        [
            "pipeline",
            "run",
            "datapipe-irf",
            "--set",
            "cutz=fixed",
            "-i",
            f"gammas={production['gamma']}",
            "-o",
            str(tmp_path / "b"),
        ],
    )
    assert typo.exit_code == 2
    assert "cutz" in typo.stderr
    assert not (tmp_path / "b" / "irf.fits").exists()
