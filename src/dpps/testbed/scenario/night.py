"""The observing night across the testbed: jobs at the sites that hold their inputs (issue 11).

What ``dpps night`` plays in one process, placed here as in a deployment, each process in its
data center's namespace (docs/deployment.md, "The observing night across data centers"):

* central: the catalog (PostgreSQL), ``dpps serve`` (the API, the rule evaluator, the WMS job
  manager and the transformation daemon; the manager's executor is Dask) and the Dask
  scheduler, bound to the central namespace's WAN address only;
* CTAO-North (the telescope site): the XRootD server exporting its RSE, the ACADA ingestion
  queue, a transfer agent pulling into its RSE, and a Dask worker declaring
  ``SITE_CTAO-North``;
* PIC (an off-site center): its XRootD (the testbed's), a transfer agent pulling into its
  RSE, and a Dask worker declaring ``SITE_PIC``.

Each site's worker runs with that site's workspace (``DPPS_WORKER_WORKSPACE``): at CTAO-North
its RSE is a local path, so a job there reads DL0 in place and writes its products to it;
PIC's RSE is its own XRootD server, reached from inside PIC. Jobs are matched by the job
manager to the site holding most of their input bytes and run only there.

The models and IRF are WMS jobs too. They are produced before the night by PIC's worker (the
production asks for PIC: simulation and training are off-site work, and a telescope site's
farm is busy with the night), then a rule copies them to CTAO-North (pulled by its agent over
the WAN), as a site would hold the models it processes with. So every input of a block's
jobs is on CTAO-North's disk when the block arrives: the jobs run there, and PIC's worker could
take one only if PIC held as many of its input bytes (a block's DL0 already replicated there).

The night: ACADA writes the blocks into CTAO-North's landing area, the queue registers them in
place, the ``acada`` policy copies them to PIC; the transformation makes one workflow per
block; its products are registered at the site of their job and copied to PIC by the
``products`` policy; the scenario retrieves the night's DL3 (``dpps get`` in the central
namespace) and fits the source with gammapy. No reaper runs: the on-site copies stay for the
night's processing (their deletion is the long-haul scenario's subject).

The report: jobs per site, each job's run site checked against the catalog (it must hold an
AVAILABLE disk replica of every input of the job), DL0 and products lost (a file is safe when
a replica's bytes, read here from the directory its server exports, have the registered
adler32), rules not OK, bytes per link, and the analysis' ON/OFF counts. At the end the
scenario's processes are stopped and its directory removed (its logs kept if it failed).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from dpps.acada import wobble
from dpps.acada.observing import NightPlan
from dpps.acada.simulate import simulate, write_trigger
from dpps.bdms.archive import Archive
from dpps.catalog.models import DIDRow, ReplicaRow, RSERow, RuleRow
from dpps.catalog.models_wms import JobFileRow, JobRow, WorkflowRow
from dpps.core.errors import DppsError, InvalidInput, Unavailable
from dpps.core.laps import Laps
from dpps.core.workspace import find_workspace
from dpps.instrument.dl0 import quiet_native_stdout
from dpps.pipelines.night.models import NightModels, ProductionSize, ensure_models
from dpps.pipelines.night.transformation import ensure_transformation
from dpps.pipelines.night.workflow import Target
from dpps.testbed.scenario import longhaul, sites
from dpps.testing import netns

#: Data centers that can run a worker here (those whose RSEs the scenario's workspaces hold).
WORKER_SITES = ("CTAO-North", "PIC")
#: Where the models and IRF are produced (its worker must run).
MODELS_SITE = "PIC"
SCHEDULER_PORT = 8786
#: Slots (threads) of each site's worker.
SLOTS = 2
PRODUCTS_POLICY = "products"
#: Disk a block needs at most: DL0 at CTAO-North and PIC, products, sandboxes (bytes).
BLOCK_BYTES = 1_500_000_000


def run(
    directory: Path | None,
    *,
    blocks: int = 2,
    workers: Sequence[str] = WORKER_SITES,
    timeout_s: float | None = None,
    size: ProductionSize | None = None,
) -> dict[str, Any]:
    """Run the night on the testbed that is up (it stays up); the report. ``workers``: the
    data centers that run a Dask worker (PIC's produces the models)."""
    if blocks < 1:
        raise InvalidInput("--blocks must be at least 1")
    unknown = [w for w in workers if w not in WORKER_SITES]
    if unknown or not workers:
        raise InvalidInput(
            f"--workers {','.join(workers)}: workers run at {' and/or '.join(WORKER_SITES)} "
            f"(unknown: {', '.join(unknown) or 'none given'})"
        )
    if MODELS_SITE not in workers:
        raise InvalidInput(
            f"--workers {','.join(workers)}: the models are produced at {MODELS_SITE}, which "
            "needs a worker"
        )
    current = longhaul.running_testbed(directory)
    plan = longhaul._plan(current)
    need = blocks * BLOCK_BYTES
    free = shutil.disk_usage(Path(current["dir"])).free
    if need > free:
        raise InvalidInput(
            f"the night needs about {need / 2**30:.1f} GiB and {current['dir']} has "
            f"{free / 2**30:.1f} GiB free: use fewer --blocks"
        )
    base = Path(current["dir"]) / "scenario" / f"night-{int(time.time() * 1000)}"
    base.mkdir(parents=True)
    dep = sites.Deployment(base=base, plan=plan, testbed=current, agent_catalog="api")
    dep.table = _table(dep)
    night = NightPlan(blocks=blocks)
    report: dict[str, Any] = {"ok": False}
    try:
        report = _run(dep, night, tuple(dict.fromkeys(workers)), size, timeout_s)
    finally:
        sites.stop(dep)
        _remove_offsite_copies(dep, report.pop("_pic_paths", []))
        _clean(base, keep_logs=not report["ok"])
    return report


def _table(dep: sites.Deployment) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """The scenario's daemons: ``dpps serve`` in the central namespace with the WMS's
    daemons, the ingestion queue at the telescope site, a transfer agent at each site."""
    address = dep.plan.node("central").address
    only = "evaluator,wms-manager,wms-transformer"
    serve = ("serve", "--only", only, "--host", address, "--port", str(sites.API_PORT))
    return (
        ("central", "central", serve),
        ("ingest@CTAO-North", "CTAO-North", ("ingest", "--rse", sites.ONSITE_RSE)),
        ("transfer@PIC", "PIC", ("transfer", "--site", "PIC")),
        ("transfer@CTAO-North", "CTAO-North", ("transfer", "--site", "CTAO-North")),
    )


def scheduler_address(dep: sites.Deployment) -> str:
    return f"tcp://{dep.plan.node('central').address}:{SCHEDULER_PORT}"


def _config(dep: sites.Deployment, site: str) -> dict[str, Any]:
    """A site's ``dpps.yaml``: the long-haul one (its own RSE local, the others' URLs), the
    products' policy (one copy on PIC's disk) and the WMS on the central Dask scheduler."""
    config = sites.config(dep, site, {})
    config["policies"][PRODUCTS_POLICY] = [
        {"copies": 1, "rses": sites.OFFSITE_RSE, "priority": 2, "activity": "products"}
    ]
    config["wms"] = {"executor": "dask", "dask_scheduler": scheduler_address(dep)}
    # as seen from this site: its own storage fast and near, the others' behind the WAN (a
    # retrieval reads the site's own replica first)
    for entry in config["rses"].values():
        where = str(entry["site"])
        if where == site:
            entry.update(bandwidth_mb_s=1000.0, latency_ms=0.5)
        else:
            slowest = min(dep.plan.node(site).bandwidth_mbit, dep.plan.node(where).bandwidth_mbit)
            entry.update(bandwidth_mb_s=slowest / 8, latency_ms=dep.plan.path_rtt_ms(site, where))
    return config


def _start_dask(dep: sites.Deployment, workers: Sequence[str]) -> None:
    """The scheduler in the central namespace, one worker per site in its own, each listener
    on its namespace's WAN address only; returns once every worker has joined."""
    python = sys.executable
    central = dep.plan.node("central").address
    sites.launch(
        dep,
        "dask-scheduler",
        "central",
        [
            python,
            "-m",
            "distributed.cli.dask_scheduler",
            "--host",
            central,
            "--port",
            str(SCHEDULER_PORT),
            "--dashboard-address",
            f"{central}:0",
            "--idle-timeout",
            "3600",
        ],
        {},
    )
    for site in workers:
        node = dep.plan.node(site)
        local = dep.base / "dask" / site
        local.mkdir(parents=True, exist_ok=True)
        sites.launch(
            dep,
            f"worker@{site}",
            site,
            [
                python,
                "-m",
                "distributed.cli.dask_worker",
                scheduler_address(dep),
                "--host",
                node.address,
                "--dashboard-address",
                f"{node.address}:0",
                "--no-nanny",
                "--nthreads",
                str(SLOTS),
                "--resources",
                f"SITE_{site}={SLOTS}",
                "--name",
                site,
                "--local-directory",
                str(local),
                "--death-timeout",
                "60",
            ],
            {"DPPS_WORKER_WORKSPACE": str(dep.workspace(site))},
        )
    wait = (
        "from distributed import Client; "
        f"c = Client({scheduler_address(dep)!r}, timeout=120); "
        f"c.wait_for_workers({len(workers)}, timeout=120); c.close()"
    )
    done = subprocess.run(
        netns.command_in(dep.plan.node("central").netns, [python, "-c", wait]),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if done.returncode != 0:
        raise Unavailable(
            f"the Dask workers did not join: {done.stderr.strip()[-500:]} "
            f"(logs in {dep.base / 'logs'}; {sites.dead_processes(dep)})"
        )


def _run(
    dep: sites.Deployment,
    night: NightPlan,
    workers: tuple[str, ...],
    size: ProductionSize | None,
    timeout_s: float | None,
) -> dict[str, Any]:
    plan, central = dep.plan, dep.plan.node("central").netns
    limit = timeout_s or 900.0 + 300.0 * night.blocks
    started = time.time()
    deadline = started + limit
    laps = Laps()
    lap, seconds = laps.lap, laps.seconds

    sites.start_servers(dep)
    for site in sites.centers(dep):
        ws = dep.workspace(site)
        ws.mkdir(parents=True, exist_ok=True)
        (ws / "dpps.yaml").write_text(
            yaml.safe_dump(_config(dep, site), sort_keys=False), encoding="utf-8"
        )
    with netns.inside(central):  # migrated once, before any other process opens it
        archive = Archive.open(find_workspace(str(dep.workspace("central"))))
    try:
        sites.create_agent_token(dep)
        _start_dask(dep, workers)
        sites.start_processes(dep)
        lap("start")
        before = {n.name: netns.link_counters(n.netns, n.link) for n in plan.nodes}
        src = night.source
        target = Target(src.name, src.ra_deg, src.dec_deg)
        with netns.inside(central):
            models = _models(archive, size, deadline)
            lap("models")
            _models_to_the_site(archive, models, dep, deadline)
            lap("models_to_site")
            from dpps.wms.api import WMS

            tf = ensure_transformation(WMS(archive), models, target=target, policy=PRODUCTS_POLICY)
        files = _observe(dep, night)
        lap("simulate")
        with netns.inside(central):
            progress = _wait_night(dep, archive, tf.name, len(files), deadline)
        lap("night")
        after = {n.name: netns.link_counters(n.netns, n.link) for n in plan.nodes}
        analysis = _analyse(dep, archive, target, night.obs_ids())
        lap("analysis")
        sites.stop_processes(dep)
        with netns.inside(central):
            outcome = _outcome(dep, archive.engine, tf.id, files)
    finally:
        with netns.inside(central):
            archive.close()
    links = {
        name: {
            "tx_bytes": after[name]["tx_bytes"] - before[name]["tx_bytes"],
            "rx_bytes": after[name]["rx_bytes"] - before[name]["rx_bytes"],
        }
        for name in before
    }
    report: dict[str, Any] = {
        "scenario": "night",
        "blocks": night.blocks,
        "workers": list(workers),
        "models_site": MODELS_SITE,
        "complete": progress["complete"],
        "seconds": {**seconds, "total": round(time.time() - started, 2)},
        "acada": {"files": len(files), "bytes": sum(p.stat().st_size for p in files)},
        "transformation": progress["files"],
        **outcome,
        "links": links,
        "analysis": analysis,
        "dead_processes": progress["dead"],
        "dir": str(dep.base),
    }
    report["ok"] = bool(
        report["complete"]
        and outcome["jobs_not_done"] == 0
        and not outcome["jobs_away_from_inputs"]
        and outcome["dl0"]["lost"] == 0
        and outcome["products"]["lost"] == 0
        and outcome["products"]["not_at_pic"] == 0
        and outcome["rules_not_ok"] == 0
        and int(analysis.get("n_on") or 0) > 0
    )
    return report


def _observe(dep: sites.Deployment, night: NightPlan) -> list[Path]:
    """ACADA writes the night into CTAO-North's landing area and hands each block over when
    it ends (the triggers of its files): the ingestion queue runs meanwhile, and a block
    whose files trickled in (this machine writes slower than real time) would be cut into
    several tasks by the transformation's settle time, one without the block's weather."""
    pending: list[Path] = []

    def hand_over(_block: int) -> None:
        for path in pending:
            write_trigger(path)
        pending.clear()

    config = replace(night.simulation(), triggers=False)
    with quiet_native_stdout():  # the FITS writer logs on fd 1, which carries --json
        return simulate(dep.landing, config, on_file=pending.append, on_block=hand_over)


def _models(archive: Archive, size: ProductionSize | None, deadline: float) -> NightModels:
    """The models and IRF, produced by the WMS at :data:`MODELS_SITE` (the central job
    manager dispatches the production; this only submits it and waits). The cuts are
    optimised for the night's source against its cosmic rays, as ``dpps night`` does."""
    from dpps.wms.api import WMS

    src = NightPlan().source
    size = size or ProductionSize()
    if size.gamma_flux is None and size.proton_flux is None:
        size = replace(
            size, gamma_flux=wobble.source_flux(src), proton_flux=wobble.hadron_flux(src)
        )
    return ensure_models(
        WMS(archive),
        size,
        site=MODELS_SITE,
        run=False,
        timeout_s=max(1.0, deadline - time.time()),
    )


def _models_to_the_site(
    archive: Archive, models: NightModels, dep: sites.Deployment, deadline: float
) -> None:
    """A copy of the models and IRF on the telescope site's disk (its agent pulls them from
    PIC over the WAN), waited for: the site processes its night with its own copy."""
    dids = [models.models.did, models.irf.did]
    archive.add_rules(dids, copies=1, rses=sites.ONSITE_RSE, activity="products")
    while True:
        with archive.engine.connect() as conn:
            states = Counter(
                conn.execute(
                    select(RuleRow.state)
                    .join(DIDRow, DIDRow.id == RuleRow.did_id)
                    .where(
                        DIDRow.name.in_([models.models.name, models.irf.name]),
                        RuleRow.rse_expression == sites.ONSITE_RSE,
                    )
                ).scalars()
            )
        if states and set(states) == {"OK"}:
            return
        dead = sites.dead_processes(dep)
        if dead:
            raise Unavailable(f"site processes died: {dead}")
        if time.time() > deadline:
            raise Unavailable(f"the models did not reach {sites.ONSITE_RSE}: rules {states}")
        time.sleep(0.5)


def _wait_night(
    dep: sites.Deployment, archive: Archive, name: str, expected: int, deadline: float
) -> dict[str, Any]:
    """Until every DL0 file of the night is settled by the transformation (processed or
    problematic) and every rule is OK, or the deadline, or a site process died."""
    from dpps.wms.api import WMS

    wms = WMS(archive)
    files: dict[str, int] = {}
    while time.time() < deadline:
        files = dict(wms.transformation(name).files)
        settled = sum(files.values()) >= expected and not (
            files.get("NEW", 0) or files.get("ASSIGNED", 0)
        )
        rules = archive.views.rules_by_state()
        if settled and rules and set(rules) == {"OK"}:
            return {"complete": True, "files": files, "dead": {}}
        dead = sites.dead_processes(dep)
        if dead:
            raise Unavailable(f"site processes died: {dead}")
        time.sleep(1.0)
    return {"complete": False, "files": files, "dead": sites.dead_processes(dep)}


def _analyse(
    dep: sites.Deployment, archive: Archive, target: Target, obs_ids: list[int]
) -> dict[str, Any]:
    """The night's DL3 found by archive queries, retrieved with ``dpps get`` inside the
    central namespace (from the sites' servers over the WAN), fitted with gammapy here."""
    from dpps.pipelines.datapipe.dl3_analysis import find_observations, fit_power_law
    from dpps.pipelines.datapipe.gadf import write_index_tables

    central = dep.plan.node("central").netns
    dest = dep.base / "analysis"
    try:
        with netns.inside(central):
            found = [
                f
                for f in find_observations(archive, target.name, category="B")
                if f.obs_id in set(obs_ids)
            ]
        if not found:
            raise DppsError(f"no DL3 event list of {target.name} for observations {obs_ids}")
        dids = [d for f in found for d in (f.events.did, f.irf.did)]
        dpps = str(Path(sys.executable).parent / "dpps")
        argv = [dpps, "--workspace", str(dep.workspace("central")), "get", *dids, str(dest)]
        done = subprocess.run(
            netns.command_in(central, [*argv, "--overwrite"]),
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if done.returncode != 0:
            raise DppsError(f"dpps get: {done.stderr.strip()[-500:]}")
        paths = [dest / Path(x.name).name for f in found for x in (f.events, f.irf)]
        write_index_tables(dest, paths)
        fit = fit_power_law(dest, target.ra_deg, target.dec_deg, n_off_regions=5)
    except (DppsError, Unavailable) as exc:
        return {"error": str(exc)}
    result = {k: v for k, v in asdict(fit).items() if k != "off_exposure"}
    return {"observations": [f.obs_id for f in found], **result}


def _outcome(
    dep: sites.Deployment, engine: Engine, transformation_id: int, files: Sequence[Path]
) -> dict[str, Any]:
    """From the catalog, checked against the bytes: where each job ran and whether that site
    held its inputs, what was lost, the rules' states."""
    with engine.connect() as conn:
        rse_site = {
            int(i): (name, site, kind)
            for i, name, site, kind in conn.execute(
                select(RSERow.id, RSERow.name, RSERow.site, RSERow.kind)
            )
        }
        replicas: dict[int, list[tuple[str, str, str]]] = {}
        for did, rse_id, path in conn.execute(
            select(ReplicaRow.did_id, ReplicaRow.rse_id, ReplicaRow.path).where(
                ReplicaRow.state == "AVAILABLE"
            )
        ):
            name, site, kind = rse_site[int(rse_id)]
            if kind == "disk":
                replicas.setdefault(int(did), []).append((name, site, str(path)))
        jobs = conn.execute(
            select(JobRow.id, JobRow.state, JobRow.run_site, WorkflowRow.transformation_id)
            .join(WorkflowRow, WorkflowRow.id == JobRow.workflow_id)
            .where(JobRow.executor == "dask")
        ).all()
        job_files = conn.execute(select(JobFileRow.job_id, JobFileRow.did_id, JobFileRow.role))
        inputs: dict[int, list[int]] = {}
        outputs: list[int] = []
        night_jobs = {int(j.id) for j in jobs if j.transformation_id == transformation_id}
        for job_id, did_id, role in job_files:
            if role == "input":
                inputs.setdefault(int(job_id), []).append(int(did_id))
            elif int(job_id) in night_jobs:
                outputs.append(int(did_id))
        checksums = dict(conn.execute(select(DIDRow.id, DIDRow.adler32)).all())
        names = dict(
            conn.execute(select(DIDRow.id, DIDRow.name).where(DIDRow.did_type == "FILE")).all()
        )
        sizes = dict(conn.execute(select(DIDRow.id, DIDRow.bytes)).all())
        by_state = select(RuleRow.state, func.count()).group_by(RuleRow.state)
        rules: dict[str, int] = {str(k): int(v) for k, v in conn.execute(by_state).all()}
    per_site: dict[str, dict[str, int]] = {}
    away: list[dict[str, Any]] = []
    for job in jobs:
        kind = "night" if job.transformation_id == transformation_id else "models"
        site = str(job.run_site)
        per_site.setdefault(site, Counter())[kind] += 1
        missing = [
            names.get(d, str(d))
            for d in inputs.get(int(job.id), [])
            if not any(s == job.run_site for _r, s, _p in replicas.get(d, []))
        ]
        if missing:
            away.append({"job": int(job.id), "site": site, "inputs_not_there": missing[:3]})
    dl0 = [d for d, n in names.items() if str(n).startswith("/ctao/dl0/")]
    return {
        "jobs_per_site": {k: dict(v) for k, v in sorted(per_site.items())},
        "jobs_not_done": sum(1 for j in jobs if j.state != "DONE"),
        "jobs_away_from_inputs": away,
        "dl0": _safety(dep, dl0, replicas, checksums, sizes, expected=len(files)),
        "products": _safety(dep, outputs, replicas, checksums, sizes, expected=len(outputs)),
        "rules": rules,
        "rules_not_ok": sum(n for s, n in rules.items() if s != "OK"),
        "_pic_paths": [p for d in replicas.values() for r, _s, p in d if r == sites.OFFSITE_RSE],
    }


def _safety(
    dep: sites.Deployment,
    dids: Sequence[int],
    replicas: dict[int, list[tuple[str, str, str]]],
    checksums: dict[int, str | None],
    sizes: dict[int, int | None],
    *,
    expected: int,
) -> dict[str, int]:
    """Files with a good replica (its bytes' adler32 recomputed here from the directory the
    RSE's server exports) anywhere and on PIC's disk; lost: expected but good nowhere."""
    good = at_pic = 0
    for did in dids:
        ok_at = {
            rse
            for rse, _site, path in replicas.get(did, [])
            if longhaul._adler32(_exported(dep, rse, path)) == checksums.get(did)
        }
        good += bool(ok_at)
        at_pic += sites.OFFSITE_RSE in ok_at
    return {
        "files": len(dids),
        "bytes": sum(int(sizes.get(d) or 0) for d in dids),
        "safe": good,
        "at_pic": at_pic,
        "not_at_pic": len(dids) - at_pic,
        "lost": expected - good,
    }


def _exported(dep: sites.Deployment, rse: str, path: str) -> Path:
    """Where an RSE's server keeps a replica: CTAO-North's exported directory, PIC's."""
    if rse == sites.ONSITE_RSE:
        return dep.onsite_root / path
    return dep.offsite_path(path)


def _remove_offsite_copies(dep: sites.Deployment, paths: Sequence[str]) -> None:
    """The copies this night left on PIC's disk (the testbed's storage, which stays up)."""
    for path in paths:
        with contextlib.suppress(OSError):
            dep.offsite_path(path).unlink()


def _clean(base: Path, *, keep_logs: bool) -> None:
    """Remove the scenario's directory (catalog, CTAO-North's storage, workspaces,
    sandboxes), all but its logs when they are needed to see what went wrong."""
    if not keep_logs:
        shutil.rmtree(base, ignore_errors=True)
        return
    for child in base.iterdir():
        if child.name != "logs":
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
