"""Simulation productions: grids from YAML/ECSV, validated up front, run as WMS jobs."""

from __future__ import annotations

import datetime as dt
import json
import re
import textwrap
from pathlib import Path

import pytest
from astropy.table import Table
from sqlalchemy import select
from typer.testing import CliRunner

from dpps.bdms.archive import Archive
from dpps.catalog.models import DIDRow
from dpps.cli.main import app
from dpps.core.errors import ConfigError
from dpps.pipelines.simpipe import production

runner = CliRunner()
SMALL = {"n_showers": 25, "max_impact_m": 200.0, "compression": "zstd1"}


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_yaml_grid_expands_to_numbered_validated_cards(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "prod.yaml",
        """\
        name: prod-a
        first_obs_id: 100
        defaults: {n_showers: 500, view_cone_deg: 0.0}
        grid:
          particle: [gamma, proton]
          e_max_tev: [10.0, 50.0]
        runs:
          - {particle: proton, view_cone_deg: 5.0, obs_id: 7}
        """,
    )
    plan = production.load(spec)
    assert plan.name == "prod-a"
    assert plan.lfn_dir() == "/ctao/sim/prod-a"
    assert [c.obs_id for c in plan.cards] == [7, 8, 9, 10, 11]  # explicit run first, then on
    assert [c.seed for c in plan.cards] == [7, 8, 9, 10, 11]  # seed defaults to the obs_id
    assert [(c.particle, c.e_max_tev) for c in plan.cards[1:]] == [
        ("gamma", 10.0),
        ("gamma", 50.0),
        ("proton", 10.0),
        ("proton", 50.0),
    ]
    assert plan.cards[0].view_cone_deg == 5.0
    assert plan.cards[1].n_showers == 500
    assert production.summary(plan.cards) == {
        "proton": {"runs": 3, "showers": 1500},
        "gamma": {"runs": 2, "showers": 1000},
    }


def test_ecsv_rows_are_runs(tmp_path: Path) -> None:
    table = Table(
        {"particle": ["gamma", "proton"], "n_showers": [100, 300], "view_cone_deg": [0.0, 4.0]}
    )
    table.meta = {
        "name": "ecsv-prod",
        "lfn_prefix": "/ctao/sim/2026",
        "defaults": {"max_impact_m": 600.0},
    }
    table.write(tmp_path / "grid.ecsv", format="ascii.ecsv")
    plan = production.load(tmp_path / "grid.ecsv")
    assert plan.lfn_dir() == "/ctao/sim/2026/ecsv-prod"
    assert [
        (c.particle, c.n_showers, c.view_cone_deg, c.max_impact_m, c.obs_id) for c in plan.cards
    ] == [("gamma", 100, 0.0, 600.0, 1), ("proton", 300, 4.0, 600.0, 2)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: p\nruns: [{particle: gamma}, {particle: muon}]\n", "run 2: particle"),
        ("name: p\nruns: [{obs_id: 3}, {obs_id: 3}]\n", "share obs_id 3"),
        ("name: p\nruns: [{n_shower: 3}]\n", "run 1: n_shower"),
        ("name: p\nrun: [{}]\n", "unknown keys ['run']"),
        ("name: 'a b'\nruns: [{}]\n", "simple word"),
        ("name: p\n", "no runs"),
        ("name: p\ngrid: {seed: 3}\n", "lists of values"),
        ("- just a list\n", "a production is a mapping"),
    ],
)
def test_bad_productions_are_refused_before_anything_runs(
    tmp_path: Path, text: str, message: str
) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        production.load(spec)
    res = runner.invoke(
        app, ["pipeline", "production", str(spec), "--local", str(tmp_path / "out")]
    )
    assert res.exit_code == ConfigError.exit_code
    assert "error:" in res.output
    assert not (tmp_path / "out").exists()


def test_local_run_and_dry_run(tmp_path: Path) -> None:
    spec = write(
        tmp_path / "p.yaml",
        f"""\
        name: local
        defaults: {json.dumps(SMALL)}
        runs: [{{particle: gamma}}, {{particle: proton, view_cone_deg: 2.0}}]
        """,
    )
    res = runner.invoke(app, ["pipeline", "production", str(spec), "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    assert [c["particle"] for c in json.loads(res.stdout)["cards"]] == ["gamma", "proton"]
    res = runner.invoke(
        app, ["pipeline", "production", str(spec), "--local", str(tmp_path / "out"), "--json"]
    )
    assert res.exit_code == 0, res.output
    results = json.loads(res.stdout)["results"]
    assert [r["exit_code"] for r in results] == [0, 0]
    assert (tmp_path / "out" / "run000002" / "sim_proton_run000002_truth.fits").is_file()


@pytest.mark.verifies_usecase("UC-150-2.1")
def test_production_runs_as_wms_jobs_and_lands_in_the_archive(
    archive: Archive, tmp_path: Path
) -> None:
    spec = write(
        tmp_path / "prod.yaml",
        f"""\
        name: wms-prod
        defaults: {json.dumps(SMALL)}
        runs: [{{particle: gamma, obs_id: 201}}, {{particle: proton, obs_id: 202,
                 view_cone_deg: 2.0, n_showers: 40}}]
        """,
    )
    workspace = str(archive.config.workspace)
    res = runner.invoke(
        app,
        [
            "-w",
            workspace,
            "pipeline",
            "production",
            str(spec),
            "--wait",
            "--executor",
            "local",
            "--timeout",
            "600",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [j["state"] for j in out["jobs"]] == ["DONE", "DONE"]
    files = list(archive.list_files("category=SIM and name like '/ctao/sim/wms-prod/%'"))
    names = {f.name.rsplit("/", 1)[1] for f in files}
    assert "sim_gamma_run000201_truth.fits" in names
    assert "sim_proton_run000202_truth.fits" in names
    dl0 = [f for f in files if f.data_level == "DL0"]
    assert dl0
    assert {f.obs_id for f in dl0} <= {201, 202}
    assert all(f.meta.get("wms_job") in {j["id"] for j in out["jobs"]} for f in files)
    assert all(f.meta["provenance"]["parameters"]["tool"] == "simpipe-simulate" for f in files)
    with archive.sessions() as s:  # the LIFETIME_DAYS header became an end of life
        rows = s.scalars(select(DIDRow).where(DIDRow.name.like("/ctao/sim/wms-prod/%"))).all()
    assert len(rows) == len(files)
    assert all(r.expires_at - r.created_at == dt.timedelta(days=1096) for r in rows)
