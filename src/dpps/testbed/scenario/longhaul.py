"""The long-haul scenario: files appear through ACADA at CTAO-North, go to PIC by a rule, and
the on-site copies are deleted once safe (issue 11, scenario 1).

It runs on a testbed that is up (``dpps testbed up``, any topology with CTAO-North and PIC, PIC
serving XRootD) and leaves it up: the scenario starts its own catalog, servers and site
processes (:mod:`dpps.testbed.scenario.sites`) and stops them at the end, so several scenarios
can run one after the other on one testbed. Files are FITS products of ``--size-kib`` written
into the landing area with their ``.trigger`` files, all at once (a night's backlog).

The report: files/s and bytes/s of the whole run against the telescope site's link cap;
catalog statements per file of each process (counted by the server); time from trigger to the
safe off-site copy (median, max) and from there to the on-site deletion; what was lost (a file
is safe when its replica on PIC's disk has the registered adler32, recomputed here from the
bytes, not taken from any catalog value; it is pending while its bytes are still in the
landing area, and lost when neither holds); and each link's byte counters, which prove the
copies flowed CTAO-North -> PIC and through no third site.
"""

from __future__ import annotations

import datetime as dt
import shutil
import statistics
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import Engine

from dpps.bdms.archive import Archive
from dpps.bdms.samples import write_fits_product
from dpps.catalog.models import DIDRow, EventRow, ReplicaRow, RSERow, RuleRow, TransferRow
from dpps.core.errors import InvalidInput, NotFound, Unavailable
from dpps.core.workspace import find_workspace
from dpps.testbed import state
from dpps.testbed import topology as topo
from dpps.testbed.scenario import sites
from dpps.testing import netns

#: Rows of a FITS product's EVENTS table per KiB (25 bytes a row).
_ROWS_PER_KIB = 1024 // 25
#: Bytes a third site's link may carry during the run (ARP and other broadcast chatter).
CHATTER_BYTES = 64 * 1024


def running_testbed(directory: Path | None) -> dict[str, Any]:
    current = state.read(directory)
    if current is None:
        raise NotFound("no testbed is up: run 'dpps testbed up' first")
    names = {n["name"] for n in current["plan"]["nodes"]}
    if not {"CTAO-North", "PIC"} <= names or "PIC" not in current.get("rses", {}):
        raise InvalidInput(
            "the scenario needs CTAO-North and PIC (serving XRootD) in the testbed's "
            "topology ('default' or 'small')"
        )
    if not str(current["rses"]["PIC"]["url"]).startswith("root://"):
        raise InvalidInput("the scenario needs PIC's RSE served by XRootD")
    return current


def _plan(current: dict[str, Any]) -> topo.Plan:
    plan = current["plan"]
    return topo.Plan(
        wan_netns=plan["wan_netns"],
        bridge=plan["bridge"],
        nodes=tuple(topo.Node(**{**n, "storage": tuple(n["storage"])}) for n in plan["nodes"]),
        prefixlen=plan["prefixlen"],
        proxy_port=plan["proxy_port"],
    )


def run(
    directory: Path | None,
    *,
    files: int = 190,
    size_kib: int = 64,
    timeout_s: float | None = None,
    during: Callable[[sites.Deployment, topo.Plan], None] | None = None,
    second_hop: str | None = None,
    agent_catalog: str = "api",
) -> dict[str, Any]:
    """Run the scenario on the testbed that is up; the report (``during`` runs once the files
    are announced: a fault injected in the middle of the transfers). ``second_hop``: a center
    that gets one more copy of every file, read from PIC (PIC -> it), by its own agent.
    ``agent_catalog``: the agents reach the catalog through the central API (``api``) or
    PostgreSQL over the WAN (``postgres``)."""
    if files < 1 or size_kib < 1:
        raise InvalidInput("--files and --size-kib must be at least 1")
    if agent_catalog not in sites.AGENT_CATALOGS:
        raise InvalidInput(
            f"--agent-catalog {agent_catalog!r}: one of {', '.join(sites.AGENT_CATALOGS)}"
        )
    current = running_testbed(directory)
    hops = second_hops(current)
    if second_hop is not None and second_hop not in hops:
        raise InvalidInput(
            f"--second-hop {second_hop}: not an off-site RSE of this testbed other than PIC's "
            f"disk (here: {', '.join(hops) or 'none'})"
        )
    plan = _plan(current)
    base = Path(current["dir"]) / "scenario" / f"longhaul-{int(time.time() * 1000)}"
    need = files * (size_kib + 8) * 1024 * 3  # landing, PIC's disk, logs and catalog
    free = shutil.disk_usage(Path(current["dir"])).free
    if need > free:
        raise InvalidInput(
            f"the scenario needs about {need / 2**30:.1f} GiB and {current['dir']} has "
            f"{free / 2**30:.1f} GiB free: use fewer or smaller files"
        )
    base.mkdir(parents=True)
    cap_mbit = plan.node("CTAO-North").bandwidth_mbit
    dep = sites.Deployment(
        base=base,
        plan=plan,
        testbed=current,
        second_hop=second_hop,
        agent_catalog=agent_catalog,
    )
    central = plan.node("central").netns
    try:
        sites.start_servers(dep)
        sites.write_workspaces(dep, {})
        with netns.inside(central):  # migrate once, before the site processes open it
            Archive.open(find_workspace(str(dep.workspace("central")))).close()
        if agent_catalog == "api":
            sites.create_agent_token(dep)
        engine = create_engine(f"{dep.catalog_url}?application_name=observer", pool_size=2)
        sites.start_processes(dep)
        before = {n.name: netns.link_counters(n.netns, n.link) for n in plan.nodes}
        started = time.time()
        announce(dep, files, size_kib)
        if during is not None:
            during(dep, plan)  # may announce more files (ACADA writing on)
        triggers, total_bytes, files = dep.announced, dep.announced_bytes, len(dep.announced)
        # four times the link's time for the bytes, plus half a second a file (a copy costs
        # at least XrdCl's 2.5 s check, with ~100 in flight): a deadline, not a target
        limit = timeout_s or 120.0 + total_bytes * 8 / (cap_mbit * 1e6) * 4 + files * 0.5
        if second_hop is not None and timeout_s is None:
            limit *= 2  # the second copies start only once the first are safe
        progress = _wait(dep, engine, central, files, started + limit, second_hop)
        elapsed = max(progress["finished"], time.time()) - started
        after = {n.name: netns.link_counters(n.netns, n.link) for n in plan.nodes}
        requests = sites.agent_requests(dep)
        sites.stop_processes(dep)
        outcome = _in(central, lambda: _outcome(engine, dep, triggers))
        engine.dispose()
    finally:
        sites.stop(dep)
    statements = sites.statements_by_client(dep.pg_log)
    links = {
        name: {
            "tx_bytes": after[name]["tx_bytes"] - before[name]["tx_bytes"],
            "rx_bytes": after[name]["rx_bytes"] - before[name]["rx_bytes"],
        }
        for name in before
    }
    third = {
        name: c["tx_bytes"] + c["rx_bytes"]
        for name, c in links.items()
        if name not in ("CTAO-North", "PIC", "central", dep.hop_center)
    }
    moved = outcome["bytes_offsite"]
    hop = outcome.pop("second_hop")
    report: dict[str, Any] = {
        "scenario": "longhaul",
        "files": files,
        "size_kib": size_kib,
        "bytes": total_bytes,
        "complete": progress["complete"],
        "seconds": round(elapsed, 2),
        "files_per_s": round(files / elapsed, 2),
        "bytes_per_s": round(total_bytes / elapsed),
        "link_cap_mbit": cap_mbit,
        "ratio_to_cap": round(total_bytes * 8 / elapsed / (cap_mbit * 1e6), 4),
        "replication_ratio_to_cap": _ratio(outcome["phases"], cap_mbit),
        "statements_per_file": {k: round(v / files, 2) for k, v in sorted(statements.items())},
        "statements": statements,
        "agent_catalog": agent_catalog,
        "agent_requests": requests,
        "agent_requests_per_file": {
            kind: round(sum(v for k, v in requests.items() if k.startswith(kind)) / files, 3)
            for kind in ("transfers/", "ingest/")
        },
        **{k: v for k, v in outcome.items() if k != "bytes_offsite"},
        "links": links,
        "bytes_moved_offsite": moved,
        "north_tx_over_moved": round(links["CTAO-North"]["tx_bytes"] / max(moved, 1), 3),
        "pic_rx_over_moved": round(links["PIC"]["rx_bytes"] / max(moved, 1), 3),
        "third_site_bytes": third,
        "relayed_by_third_site": any(v > CHATTER_BYTES for v in third.values()),
        "second_hop": hop,
        "dead_processes": progress["dead"],
        "quarantined": _files_under(base / "quarantine"),
        "dir": str(base),
    }
    report["ok"] = bool(
        report["complete"]
        and report["lost"] == 0
        and report["duplicated"] == 0
        and report["rules_not_ok"] == 0
        and not report["relayed_by_third_site"]
        and report["quarantined"] == 0
        and links["CTAO-North"]["tx_bytes"] >= moved
        and links["PIC"]["rx_bytes"] >= moved
    )
    if second_hop is not None and dep.hop_center is not None:
        report["ok"] = bool(report["ok"] and _hop_ok(hop, links, dep.hop_center, moved))
    return report


def _hop_ok(hop: dict[str, Any], links: dict[str, Any], center: str, moved: int) -> bool:
    """Each copy crossed each link once. To another center: PIC sent the second copies to
    it (and CTAO-North did not send its bytes a second time). To PIC's tape: the copies
    stayed inside PIC (its link carried neither them out nor a second copy in)."""
    pic, north = links["PIC"], links["CTAO-North"]
    hop["pic_tx_over_moved"] = round(pic["tx_bytes"] / max(hop["bytes"], 1), 3)
    hop["center_rx_over_moved"] = round(links[center]["rx_bytes"] / max(hop["bytes"], 1), 3)
    if hop["lost"] or hop["duplicated"] or north["tx_bytes"] >= moved + hop["bytes"]:
        return False
    if center == "PIC":
        return bool(
            pic["tx_bytes"] < hop["bytes"] / 2 and pic["rx_bytes"] < moved + hop["bytes"] / 2
        )
    return bool(pic["tx_bytes"] >= hop["bytes"] and links[center]["rx_bytes"] >= hop["bytes"])


def second_hops(current: dict[str, Any]) -> list[str]:
    """The RSEs a second copy can go to from PIC's disk: another off-site center's (pulled
    over the WAN by that center's agent) or a tape of PIC's own (copied inside PIC)."""
    return sorted(
        name
        for name, entry in current["rses"].items()
        if name != "PIC"
        and entry.get("site") not in ("CTAO-North", "central", None)
        and not entry.get("onsite")
    )


def _files_under(folder: Path) -> int:
    """Files ingestion set aside (a sound file must never land there)."""
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def _ratio(phases: dict[str, Any], cap_mbit: float) -> float | None:
    """The copies' own rate against the link's cap: replicated bytes over the time from the
    first transfer's creation to the last one's end (ingestion and deletion left out)."""
    seconds = phases.get("replication_s")
    if not seconds:
        return None
    return round(float(phases["replicated_bytes"]) * 8 / float(seconds) / (cap_mbit * 1e6), 4)


def _in[T](ns: str, work: Callable[[], T]) -> T:
    """Catalog work from this process: its connections are made inside the central namespace
    (the catalog's address exists only there)."""
    with netns.inside(ns):
        return work()


def announce(dep: sites.Deployment, files: int, size_kib: int) -> None:
    """ACADA writes ``files`` more files into the landing area, each with its trigger (kept
    in ``dep.announced``). Their names carry the run's name: scenarios run one after the
    other on one testbed, whose off-site disks keep what earlier runs copied (a file already
    there with the right checksum would be accepted without crossing the link)."""
    from dpps.acada.simulate import write_trigger

    night = dt.date(2026, 11, 21)
    start = dt.datetime(2026, 11, 21, 22)
    first = len(dep.announced)
    for i in range(first, first + files):
        rel = f"dl0/TEL001/events/2026/11/21/{dep.base.name}_{i:06d}.fits"
        path = write_fits_product(
            dep.landing / rel,
            obs_id=1 + i // 100,
            tel_id=1,
            night=night,
            start=start + dt.timedelta(seconds=i),
            n_events=max(1, size_kib * _ROWS_PER_KIB),
            extra_header={"SB_ID": 1},
            seed=i,
        )
        dep.announced_bytes += path.stat().st_size
        write_trigger(path)
        dep.announced[rel] = time.time()


def _counts(engine: Engine, second_hop: str | None = None) -> dict[str, int]:
    with engine.connect() as conn:
        per_rse = dict(
            conn.execute(
                select(RSERow.name, func.count())
                .join(ReplicaRow, ReplicaRow.rse_id == RSERow.id)
                .where(ReplicaRow.state == "AVAILABLE")
                .group_by(RSERow.name)
            ).all()
        )
        rules = dict(
            conn.execute(select(RuleRow.state, func.count()).group_by(RuleRow.state)).all()
        )
        registered = conn.execute(
            select(func.count()).select_from(DIDRow).where(DIDRow.did_type == "FILE")
        ).scalar_one()
    return {
        "registered": int(registered),
        "offsite": int(per_rse.get(sites.OFFSITE_RSE, 0)),
        "second_hop": int(per_rse.get(second_hop, 0)) if second_hop else 0,
        "onsite": int(per_rse.get(sites.ONSITE_RSE, 0)),
        "rules_not_ok": sum(int(n) for s, n in rules.items() if s != "OK"),
    }


def _wait(
    dep: sites.Deployment,
    engine: Engine,
    central: str,
    files: int,
    deadline: float,
    second_hop: str | None = None,
) -> dict[str, Any]:
    """Until every file is safe off site (at the second hop too, with one), every on-site
    copy deleted, every rule OK (or the deadline, or a site process died)."""
    counts: dict[str, int] = {}
    while time.time() < deadline:
        counts = _in(central, lambda: _counts(engine, second_hop))
        if (
            counts["registered"] >= files
            and counts["offsite"] >= files
            and (second_hop is None or counts["second_hop"] >= files)
            and counts["onsite"] == 0
            and counts["rules_not_ok"] == 0
        ):
            return {"complete": True, "finished": time.time(), "dead": {}, **counts}
        dead = sites.dead_processes(dep)
        if dead:
            raise Unavailable(f"site processes died: {dead}")
        time.sleep(0.25)
    return {"complete": False, "finished": time.time(), "dead": sites.dead_processes(dep)}


def _epoch(ts: dt.datetime) -> float:
    return ts.replace(tzinfo=dt.UTC).timestamp()


def _outcome(engine: Engine, dep: sites.Deployment, triggers: dict[str, float]) -> dict[str, Any]:
    """Latencies from the catalog's events, and the independent check of every replica."""
    with engine.connect() as conn:
        rse_ids = dict(conn.execute(select(RSERow.name, RSERow.id)).all())
        names = dict(
            conn.execute(select(DIDRow.id, DIDRow.name).where(DIDRow.did_type == "FILE")).all()
        )

        def done_at(rse_id: int) -> dict[int, list[float]]:
            found: dict[int, list[float]] = {}
            for did, ts in conn.execute(
                select(EventRow.did_id, EventRow.ts).where(
                    EventRow.action == "transfer.done", EventRow.rse_id == rse_id
                )
            ):
                found.setdefault(int(did or 0), []).append(_epoch(ts))
            return found

        done = done_at(rse_ids[sites.OFFSITE_RSE])
        hop_done = done_at(rse_ids[dep.second_hop]) if dep.second_hop else {}
        deleted = {
            int(did or 0): _epoch(ts)
            for did, ts in conn.execute(
                select(EventRow.did_id, EventRow.ts).where(
                    EventRow.action == "replica.delete",
                    EventRow.rse_id == rse_ids[sites.ONSITE_RSE],
                )
            )
        }
        replicas = conn.execute(
            select(ReplicaRow.did_id, RSERow.name, ReplicaRow.path, DIDRow.adler32, DIDRow.bytes)
            .join(RSERow, RSERow.id == ReplicaRow.rse_id)
            .join(DIDRow, DIDRow.id == ReplicaRow.did_id)
            .where(ReplicaRow.state == "AVAILABLE")
        ).all()
        rules_not_ok = conn.execute(
            select(func.count()).select_from(RuleRow).where(RuleRow.state != "OK")
        ).scalar_one()
        registered_span = conn.execute(
            select(func.min(DIDRow.created_at), func.max(DIDRow.created_at)).where(
                DIDRow.did_type == "FILE"
            )
        ).one()
        copied_span = conn.execute(
            select(
                func.min(TransferRow.created_at),
                func.max(TransferRow.finished_at),
                func.coalesce(func.sum(TransferRow.bytes), 0),
            ).where(
                TransferRow.state == "DONE",
                TransferRow.dest_rse_id == rse_ids[sites.OFFSITE_RSE],
            )
        ).one()
    good: set[int] = set()
    bad: list[str] = []
    moved = 0
    for did, rse, path, adler, size in replicas:
        if rse != sites.OFFSITE_RSE:
            continue
        moved += int(size or 0)
        if _adler32(dep.offsite_path(path)) == adler:
            good.add(int(did))
        else:
            bad.append(names.get(int(did), str(did)))
    safe, lag = [], []
    for did, name in names.items():
        rel = next((r for r in triggers if name.endswith("/" + r)), None)
        if rel is not None and did in done:
            safe.append(min(done[did]) - triggers[rel])
            if did in deleted:
                lag.append(deleted[did] - min(done[did]))
    landed = sum(1 for rel in triggers if (dep.landing / rel).exists())
    # a file not yet safe off site is lost only if its bytes are gone from the site too
    offsite_names = {names[did] for did in good if did in names}
    pending = [
        rel
        for rel in triggers
        if not any(name.endswith("/" + rel) for name in offsite_names)
        and (dep.landing / rel).exists()
    ]
    return {
        "registered": len(names),
        "lost": len(triggers) - len(good) - len(pending),
        "not_yet_offsite": len(pending),
        "bad_replicas": bad,
        "duplicated": sum(1 for times in done.values() if len(times) > 1),
        "rules_not_ok": int(rules_not_ok),
        "onsite_files_left": landed,
        "trigger_to_safe_s": _stats(safe),
        "onsite_deletion_lag_s": _stats(lag),
        "phases": {
            "registration_s": _span(registered_span[0], registered_span[1]),
            "replication_s": _span(copied_span[0], copied_span[1]),
            "replicated_bytes": int(copied_span[2] or 0),
        },
        "bytes_offsite": moved,
        "second_hop": _second_hop(dep, names, replicas, triggers, hop_done),
    }


def _second_hop(
    dep: sites.Deployment,
    names: dict[int, str],
    replicas: Sequence[Any],
    triggers: dict[str, float],
    done: dict[int, list[float]],
) -> dict[str, Any] | None:
    """The second copies: each one's adler32 recomputed from the bytes the center's server
    holds (read here, inside the center's namespace), duplicates, trigger to second copy."""
    hop = dep.second_hop
    if hop is None:
        return None
    read = _reader(dep, hop)
    good, bad, moved = 0, [], 0
    for did, rse, path, adler, size in replicas:
        if rse != hop:
            continue
        moved += int(size or 0)
        if read(path) == adler:
            good += 1
        else:
            bad.append(names.get(int(did), str(did)))
    latency = []
    for did, name in names.items():
        rel = next((r for r in triggers if name.endswith("/" + r)), None)
        if rel is not None and did in done:
            latency.append(min(done[did]) - triggers[rel])
    return {
        "rse": hop,
        "center": dep.hop_center,
        "copies": good,
        "lost": len(triggers) - good,
        "bad_replicas": bad,
        "duplicated": sum(1 for times in done.values() if len(times) > 1),
        "bytes": moved,
        "trigger_to_second_copy_s": _stats(latency),
    }


def _reader(dep: sites.Deployment, rse: str) -> Callable[[str], str | None]:
    """adler32 of a replica's bytes as the RSE's own server holds them: the directory its
    XRootD exports (disk or tape), or its S3 gateway read with botocore from inside the
    center's namespace (not through any dpps code path)."""
    entry = dep.testbed["rses"][rse]
    url, center = str(entry["url"]), str(entry["site"])
    if url.startswith("root://"):
        exported = url.split("//", 2)[2]  # root://host:port//disk -> disk
        disk = Path(dep.testbed["paths"][center]["xrootd"]) / exported
        return lambda path: _adler32(disk / path)
    import botocore.session

    options = entry.get("storage_options", {})
    bucket = url.removeprefix("s3://").split("/", 1)[0]
    ns = dep.plan.node(center).netns

    def read(path: str) -> str | None:
        with netns.inside(ns):
            client = botocore.session.get_session().create_client(
                "s3",
                endpoint_url=options["client_kwargs"]["endpoint_url"],
                region_name=options["client_kwargs"].get("region_name", "us-east-1"),
                aws_access_key_id=options["key"],
                aws_secret_access_key=options["secret"],
            )
            try:
                body = client.get_object(Bucket=bucket, Key=path)["Body"]
            except client.exceptions.NoSuchKey:
                return None
            value = 1
            while chunk := body.read(1 << 20):
                value = zlib.adler32(chunk, value)
            return f"{value & 0xFFFFFFFF:08x}"

    return read


def _span(first: dt.datetime | None, last: dt.datetime | None) -> float | None:
    """Seconds from the first to the last of a phase's catalog timestamps."""
    if first is None or last is None:
        return None
    return round(_epoch(last) - _epoch(first), 3)


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "max": None, "n": 0}
    return {
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
        "n": len(values),
    }


def _adler32(path: Path) -> str | None:
    """adler32 of the bytes on disk, computed here (not by any server or catalog)."""
    value = 1
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                value = zlib.adler32(chunk, value)
    except OSError:
        return None
    return f"{value & 0xFFFFFFFF:08x}"
