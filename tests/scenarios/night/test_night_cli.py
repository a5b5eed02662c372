"""``dpps night`` on bad input: a clear error before anything is written (UC-000-4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dpps.cli.main import app

pytestmark = pytest.mark.verifies_usecase("UC-000-4")


def test_help_names_the_options() -> None:
    result = CliRunner().invoke(app, ["night", "--help"])
    assert result.exit_code == 0
    for option in ("--dir", "--blocks", "--block-seconds", "--reprocess", "--json"):
        assert option in result.output


def test_a_directory_that_is_not_a_workspace_is_refused_untouched(tmp_path: Path) -> None:
    keep = tmp_path / "thesis.tex"
    keep.write_text("precious\n")
    result = CliRunner().invoke(app, ["night", "--dir", str(tmp_path), "--json"])
    assert result.exit_code == 3, result.output
    assert "neither empty nor a workspace" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]
    assert keep.read_text() == "precious\n"


@pytest.mark.parametrize("args", [["--blocks", "0"], ["--block-seconds", "1"]])
def test_out_of_range_options_are_usage_errors(tmp_path: Path, args: list[str]) -> None:
    result = CliRunner().invoke(app, ["night", "--dir", str(tmp_path / "ws"), *args])
    assert result.exit_code == 2
    assert not (tmp_path / "ws").exists()


@pytest.mark.verifies_usecase("UC-130-3.1.1")
def test_the_comparison_prints_both_versions_and_the_difference(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What ``dpps night --reprocess`` and ``dpps campaign show`` print of a report's
    comparison: every figure of both versions, the difference, Q with its error."""
    from dpps.cli.campaign_cmds import print_comparison
    from dpps.pipelines.campaign.compare import quality_factor

    def version(eff: float, rej: float, n_on: int, n_off: int, sig: float) -> dict[str, object]:
        q, error = quality_factor(eff, rej, 473, 858)
        return {
            "software_version": f"v{eff}",
            "separation": {
                "gamma_efficiency": eff,
                "proton_rejection": rej,
                "roc_auc": 0.97,
                "test_gammas": 473,
                "test_protons": 858,
                "quality_factor": q,
                "quality_factor_error": error,
            },
            "analysis": {
                "n_on": n_on,
                "n_off": n_off,
                "alpha": 0.2,
                "excess": n_on - 0.2 * n_off,
                "significance": sig,
                "significance_per_sqrt_hour": sig * 8,
            },
        }

    old, new = version(0.873, 0.9394, 48, 3, 12.26), version(0.930, 0.9627, 46, 2, 12.2)
    q_old, q_new = old["separation"]["quality_factor"], new["separation"]["quality_factor"]
    assert q_old == pytest.approx(0.873 / 0.0606**0.5, rel=0.01)
    print_comparison(
        {
            "target": "Crab",
            "observations": [1, 2, 3],
            "previous": old,
            "new": new,
            "difference": {
                "n_on": -2,
                "quality_factor": q_new - q_old,
                "quality_factor_error": 0.49,
                "quality_factor_sigmas": (q_new - q_old) / 0.49,
            },
        }
    )
    out = " ".join(capsys.readouterr().out.split())
    for text in ("previous (v0.873) vs new (v0.93)", "proton rejection", "0.9394", "0.9627"):
        assert text in out
    assert f"{q_old:.2f} ± " in out
    assert f"+{q_new - q_old:.2f} ± 0.49" in out
    assert "Li & Ma significance" in out
    assert "-2" in out
