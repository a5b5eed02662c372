"""A reprocessing campaign's world: two observation blocks of ACADA DL0, as the observing
night's plan simulates them, whose only copies are on tape (ingested on-site, replicated to
PIC-TAPE by a rule, on-site copies reaped); the models and IRF of the real SimPipe -> DataPipe
chain in the archive; and category-B products of the first block made by the "night" (with
other options, so the campaign's are different bytes and become new versions)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from filelock import FileLock

from dpps.bdms.archive import Archive
from dpps.core.daemon import DaemonContext
from dpps.pipelines.tool import run_tool

pytest.importorskip("dpps.pipelines.simpipe", reason="the pipelines extra is not installed")

from dpps.acada.observing import NightPlan
from dpps.acada.simulate import simulate
from dpps.instrument.dl0 import quiet_native_stdout
from tests.bdms.preservation_helpers import open_workspace, replicate
from tests.pipelines.datapipe.chain import Chain, shared_chain

DL0_PREFIX = "/ctao/dl0/north/2026/11/21"
#: Where the "night" put its products of block 1 (the campaign must find and version them).
NIGHT_DL1 = "/ctao/dl1/north/2026/11/21/obs_000001/night_obs1_dl1.h5"
NIGHT_DL2 = "/ctao/dl2/north/2026/11/21/obs_000001/night_obs1_dl2.fits"
TARGET = {"name": "Crab", "ra_deg": 83.63, "dec_deg": 22.01}


@dataclass(frozen=True)
class Inputs:
    landing: list[Path]
    models: Path
    irf: Path
    night_dl1: Path
    night_dl2: Path


def _ok(result: object, what: str) -> None:
    assert getattr(result, "exit_code", None) == 0, f"{what}: {getattr(result, 'error', None)}"


def _common(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's shared directory (xdist workers share their parent)."""
    common = tmp_path_factory.getbasetemp()
    return common.parent if common.name.startswith("popen-gw") else common


def simulate_landing(root: Path) -> list[Path]:
    """Two observation blocks of four telescopes as the observing night plans them (enough
    calibration events for CalibPipe, a wobble-mode source, monitoring tables), with the
    cosmic-ray rate the night had before issue 17 (8 Hz in a 2.5 deg cone): campaigns test
    staging and reprocessing, not the background, and the night's 80 Hz would make every
    campaign test several times longer."""
    night = NightPlan()
    source = replace(night.source, hadron_rate_hz=8.0, hadron_cone_deg=2.5, hadron_e_min_tev=0.05)
    config = NightPlan(blocks=2, source=source).simulation()
    if not (root / "landing.done").exists():
        with quiet_native_stdout():
            simulate(root / "landing", config)
        (root / "landing.done").write_text("")
    return sorted(p for p in (root / "landing").rglob("*") if p.is_file())


@pytest.fixture(scope="session")
def landing(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    common = _common(tmp_path_factory)
    with FileLock(str(common / "campaign-inputs.lock")):
        return simulate_landing(common / "campaign-inputs")


def _build(root: Path, chain: Chain) -> Inputs:
    simulate_landing(root)
    if not (root / "done").exists():
        irf = run_tool(
            "datapipe-irf",
            {"cuts": "fixed", "gh_cut": 0.5, "theta_cut_deg": 0.3},
            {"gammas": [chain.dl2["gamma_test"]], "protons": [chain.dl2["proton_test"]]},
            root / "irf",
        )
        _ok(irf, "datapipe-irf")
        files = sorted((root / "landing").rglob("*OBSID0000000001*"))
        shower = [f for f in files if f.name.endswith("_TEL_SHOWER_CHUNK000.fits.fz")]
        pointing = [f for f in files if f.name.endswith("_POINTING.fits")][:1]
        dl1 = run_tool(
            "datapipe-dl1",
            {"picture_pe": 10.0, "output_name": "night_obs1_dl1.h5"},
            {"dl0": shower, "pointing": pointing},
            root / "night-dl1",
        )
        _ok(dl1, "night dl1")
        dl2 = run_tool(
            "datapipe-dl2",
            {"target": TARGET, "category": "B", "output_name": "night_obs1_dl2.fits"},
            {"dl1": [dl1.outputs[0].path], "models": [chain.models]},
            root / "night-dl2",
        )
        _ok(dl2, "night dl2")
        (root / "done").write_text("")
    return Inputs(
        landing=sorted(p for p in (root / "landing").rglob("*") if p.is_file()),
        models=chain.models,
        irf=root / "irf" / "irf.fits",
        night_dl1=root / "night-dl1" / "night_obs1_dl1.h5",
        night_dl2=root / "night-dl2" / "night_obs1_dl2.fits",
    )


@pytest.fixture(scope="session")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    chain = shared_chain(tmp_path_factory)
    common = _common(tmp_path_factory)
    with FileLock(str(common / "campaign-inputs.lock")):
        return _build(common / "campaign-inputs", chain)


def tape_only_archive(tmp_path: Path, catalog_url: str, inputs: Inputs) -> Archive:
    """DL0 on tape only; models, IRF and the night's category-B products on disk."""
    from dpps.bdms.preservation import reaper

    archive = open_workspace(
        tmp_path,
        catalog_url,
        {
            "reaper": {"onsite_retention_days": 0, "min_offsite_copies": 1},
            "wms": {"local_workers": 2},
        },
    )
    report = archive.ingest(inputs.landing, "CTAO-N", lfn_prefix=DL0_PREFIX, dataset=DL0_PREFIX)
    assert not report.failed, report.failed
    archive.add_rule(DL0_PREFIX, copies=1, rses="PIC-TAPE")
    replicate(archive)
    reaper.one_pass(DaemonContext(name="reaper"), archive.sessions, archive.config)
    assert archive.count(f"name like {DL0_PREFIX}/%") == len(inputs.landing)
    products = [
        (
            inputs.models,
            "/ctao/models/v1/models.joblib",
            {"product_type": "reconstruction models", "category": "SIM", "data_level": "OTHER"},
        ),
        (inputs.irf, "/ctao/irf/v1/irf.fits", {}),  # CUTMODE in its header: found as is
        (inputs.night_dl1, NIGHT_DL1, {"category": "B"}),
        (inputs.night_dl2, NIGHT_DL2, {}),
    ]
    for path, lfn, meta in products:
        done = archive.ingest([path], "PIC", lfn=lfn, meta=meta)
        assert not done.failed, done.failed
    return archive


@pytest.fixture
def tape_archive(tmp_path: Path, catalog_url: str, inputs: Inputs) -> Iterator[Archive]:
    archive = tape_only_archive(tmp_path, catalog_url, inputs)
    try:
        yield archive
    finally:
        archive.close()
