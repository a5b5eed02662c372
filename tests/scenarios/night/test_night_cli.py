"""``dpps night`` on bad input: a clear error before anything is written (UC-000-4)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dpps.cli.main import app

pytestmark = pytest.mark.verifies_usecase("UC-000-4")


def test_help_names_the_options() -> None:
    result = CliRunner().invoke(app, ["night", "--help"])
    assert result.exit_code == 0
    for option in ("--dir", "--blocks", "--block-seconds", "--reprocess", "--keep", "--json"):
        assert option in result.output


def test_a_directory_that_is_not_a_workspace_is_refused_untouched(tmp_path: Path) -> None:
    keep = tmp_path / "thesis.tex"
    keep.write_text("precious\n")
    result = CliRunner().invoke(app, ["night", "--dir", str(tmp_path), "--json"])
    assert result.exit_code == 3, result.output
    assert "neither empty nor a workspace" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]
    assert keep.read_text() == "precious\n"


@pytest.mark.parametrize("fails", [False, True])
@pytest.mark.parametrize("temporary", [False, True])
def test_a_temporary_workspace_goes_after_a_successful_night_only(
    tmp_path: Path, temporary: bool, fails: bool
) -> None:
    """The night's own temporary workspace (no --dir, no current workspace) is removed when
    the night succeeds and kept when it fails; a workspace the user named is never removed."""
    from dpps.bdms.archive import Archive
    from dpps.cli.night_cmds import removed_on_success

    workspace = tmp_path / "ws"
    archive = Archive.init(workspace)
    (workspace / "night").mkdir()
    (workspace / "night" / "dl0.fits").write_bytes(b"x" * 1024)
    expected = pytest.raises(RuntimeError) if fails else nullcontext()
    with expected, removed_on_success(archive, workspace, remove=temporary):
        if fails:
            raise RuntimeError("a block failed")
    assert workspace.exists() is (fails or not temporary)
    if workspace.exists():
        assert (workspace / "night" / "dl0.fits").stat().st_size == 1024
        with Archive.open(workspace) as again:  # closed cleanly: opens again
            assert again.list_files("", limit=1) == []


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


@pytest.mark.verifies_usecase("UC-130-3.1.1")
def test_the_comparison_prints_both_sensitivities_with_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The sensitivity part: per energy bin from both IRFs with errors and their ratio, the
    figure of merit with its error, and the night's implied sensitivity with its note."""
    from dpps.cli.campaign_cmds import print_sensitivity
    from dpps.pipelines.campaign.compare import sensitivity_change
    from dpps.pipelines.datapipe.sensitivity import implied_by_counts

    def bins(*rel: float | None) -> list[dict[str, object]]:
        return [
            {
                "reco_energy_low_tev": 0.1 * 10**i,
                "reco_energy_high_tev": 0.1 * 10 ** (i + 1),
                "n_signal_events": 200,
                "n_background_events": 50,
                "n_signal_weighted": 2000.0 if r is None else 10 / r,
                "n_background_weighted": 500.0,
                "relative_sensitivity": r,
                "relative_sensitivity_error": None if r is None else 0.1 * r,
                "e2_flux_sensitivity_erg_cm2_s": None if r is None else r * 1e-11,
            }
            for i, r in enumerate(rel)
        ]

    def version(rel: list[float | None], n_on: int, n_off: int) -> dict[str, object]:
        irf = {
            "observation_time_h": 50.0,
            "alpha": 0.2,
            "min_significance": 5.0,
            "min_signal_events": 10.0,
            "min_excess_over_background": 0.05,
            "bins": bins(*rel),
        }
        return {"sensitivity": {"irf": irf, "measured": implied_by_counts(n_on, n_off, 0.2, 45)}}

    old, new = version([0.01, 0.02, None], 48, 3), version([0.008, 0.015, None], 46, 2)
    comparison = {"previous": old, "new": new, "sensitivity": sensitivity_change(old, new)}
    change = comparison["sensitivity"]["irf"]
    assert change["ratio"] == pytest.approx((0.8 * 0.75) ** 0.5)
    a, b = old["sensitivity"]["measured"], new["sensitivity"]["measured"]  # type: ignore[index]
    measured = comparison["sensitivity"]["measured"]
    assert measured["ratio"] == pytest.approx(
        b["relative_sensitivity"] / a["relative_sensitivity"]
    )
    assert measured["ratio_error"] == pytest.approx(
        measured["ratio"]
        * np.hypot(
            a["relative_sensitivity_error"] / a["relative_sensitivity"],
            b["relative_sensitivity_error"] / b["relative_sensitivity"],
        )
    )
    print_sensitivity(comparison)
    out = " ".join(capsys.readouterr().out.split())
    assert "50 h, 5 sigma Li & Ma, >= 10 events, excess >= 5% of background, alpha 0.2" in out
    assert "0.01 ± 0.001" in out
    assert "0.800" in out
    assert f"{change['ratio']:.3f} ± {change['ratio_error']:.3f}" in out
    assert "implied by the night's counts, previous" in out
    whole = comparison["sensitivity"]["irf_integral"]
    assert f"new / previous {whole['ratio']:.3f} ± {whole['ratio_error']:.3f}" in out
    assert "only 3 OFF events" in out
    assert "new / previous from the night's counts" in out
    # a version whose IRF has no table: said, not hidden
    old["sensitivity"]["irf"] = None  # type: ignore[index]
    comparison["sensitivity"] = sensitivity_change(old, new)
    assert comparison["sensitivity"]["irf"] is None
    print_sensitivity(comparison)
    assert "sensitivity from the IRFs: not available" in capsys.readouterr().out


def test_a_one_block_night_reads_its_one_quality_report(tmp_path: Path) -> None:
    """``dpps night --blocks 1`` failed at the report: one archived quality report was fetched
    as the directory's name instead of into it (``get`` of one file names the target file)."""
    import json

    from dpps.bdms.archive import Archive
    from dpps.scenarios.night.report import quality_verdicts

    report = tmp_path / "r.json"
    report.write_text(json.dumps({"passed": False, "checks": [{"metric": "m", "status": "fail"}]}))
    meta = {"data_level": "QUAL", "category": "B", "obs_id": 1}
    with Archive.init(tmp_path / "ws") as archive:
        lfn = "/ctao/qual/obs1_quality_report.json"
        assert not archive.ingest([report], "CTAO-N", lfn=lfn, meta=meta).failed
        verdicts = quality_verdicts(archive, "B", tmp_path / "night" / "quality")
    assert verdicts == {1: {"passed": False, "failed_checks": ["m"], "did": f"ctao:{lfn}"}}
