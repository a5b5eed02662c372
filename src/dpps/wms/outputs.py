"""A job's outputs: found in the sandbox, uploaded, then registered atomically with DONE.

Registration and the job's DONE transition are one transaction, guarded by the attempt's lease
token: either the attempt still owns the job and both happen, or neither does. That is the
whole of "a failed or killed attempt registers nothing" and "outputs are registered once". It
is also why this does not call ``Archive.ingest`` (which owns its transaction) but the
archive's session-taking registration (``bdms.registration``), as every registering caller does.

Bytes are uploaded and files prepared (``prepare``: metadata extraction, a full read of each
FITS file) before the transaction, so none of that holds the catalog's writer lock. Each
dispatch of a job uploads under its own physical path (``_wms/job<ID>.a<N>.<T>/<scope><lfn>``,
``T`` from the lease token), so a rescheduled attempt and a zombie one can never overwrite each
other's files, even when the attempt number is given back (a job requeued because its manager
stopped runs again as the same attempt); what an attempt uploaded but could not register is
removed.
"""

from __future__ import annotations

import hashlib
import json
import platform
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from dpps.bdms import registration
from dpps.catalog import events
from dpps.catalog.models_wms import JobFileRow
from dpps.core.config import Config
from dpps.core.errors import Conflict, InvalidInput
from dpps.core.identifiers import validate_lfn
from dpps.core.states import RSEKind
from dpps.core.version import __version__
from dpps.storage.rse import StorageElement
from dpps.wms.expressions import evaluate, file_object
from dpps.wms.spec import OutputPort


@dataclass(slots=True)
class Produced:
    """One output file of an attempt, and where it goes."""

    port: str
    position: int
    path: Path
    lfn: str
    rse: str
    spec: OutputPort
    size: int = 0
    rel: str | None = None
    did_id: int | None = None
    extra_meta: dict[str, Any] = field(default_factory=dict)


def output_rse(config: Config, wanted: str | None, site: str | None) -> str:
    """The named RSE, else a disk RSE at the job's site (process in place), else any disk."""
    if wanted is not None:
        if wanted not in config.rses:
            raise InvalidInput(f"output RSE {wanted!r} is not configured")
        return wanted
    disks = sorted(n for n, r in config.rses.items() if r.kind == RSEKind.DISK)
    local = [n for n in disks if config.rses[n].site == site]
    if local:
        return local[0]
    if not disks:
        raise InvalidInput("no disk RSE is configured to receive outputs")
    return disks[0]


def collect(
    config: Config,
    outputs: Sequence[Mapping[str, Any]],
    outdir: Path,
    context: Mapping[str, Any],
    job_id: int,
    site: str | None,
) -> list[Produced]:
    """Match each declared output's glob in the sandbox; missing outputs are an error."""
    produced: list[Produced] = []
    for raw in outputs:
        spec = OutputPort.model_validate(raw)
        pattern = str(evaluate(spec.glob, context))
        if pattern.startswith("/") or ".." in Path(pattern).parts:
            raise InvalidInput(f"output {spec.name}: glob {pattern!r} leaves the sandbox")
        found = sorted(p for p in outdir.glob(pattern) if p.is_file())
        if not found:
            raise InvalidInput(f"output {spec.name}: nothing matches {pattern!r}")
        if len(found) > 1 and not spec.array:
            raise InvalidInput(
                f"output {spec.name}: {len(found)} files match {pattern!r} "
                "but the output is a single File"
            )
        empty = [p.name for p in found if p.stat().st_size == 0]
        if empty:
            raise InvalidInput(
                f"output {spec.name}: {', '.join(empty)} is empty (the archive "
                "refuses 0-byte files)"
            )
        for position, path in enumerate(found):
            me = {
                **context,
                "self": {**file_object("", path.name, path.stat().st_size), "path": str(path)},
            }
            if spec.lfn:
                lfn = str(evaluate(spec.lfn, me))
            else:
                lfn = f"{config.wms.output_lfn_prefix.rstrip('/')}/job_{job_id}/{path.name}"
            produced.append(
                Produced(
                    spec.name,
                    position,
                    path,
                    validate_lfn(lfn),
                    output_rse(config, spec.rse, site),
                    spec,
                )
            )
    lfns = [p.lfn for p in produced]
    if len(set(lfns)) != len(lfns):
        raise InvalidInput(f"outputs would share an LFN: {sorted(lfns)}")
    return produced


#: The file a tool may write in its output directory to describe its own run (what
#: ``dpps.pipelines.tool.Tool.run`` writes, the ctapipe way: effective configuration, package
#: versions, inputs and outputs with checksums). The WMS archives it inside its own record.
TOOL_PROVENANCE = "provenance.json"


def provenance(
    view: Any,
    task: Any,
    inputs: Mapping[str, Any],
    times: Mapping[str, str],
    argv: Sequence[str] | None,
    outdir: Path | None = None,
) -> dict[str, Any]:
    """The record preserved with every output: what ran, on what, where, when, how.

    The WMS knows the job (command, parameters, archive inputs, host); only the tool knows
    what it made of them (effective configuration, package versions, checksums of what it
    read and wrote). So when the tool left ``TOOL_PROVENANCE`` in ``outdir``, its record is
    kept whole under ``activity``: one record per output, joining the two views."""
    from dpps.wms.spec import iter_files

    record: dict[str, Any] = {
        "job_id": view.id,
        "attempt": task.attempt,
        "workflow_id": view.workflow_id,
        "step": view.step,
        "transformation": view.transformation,
        "tool": view.tool,
        "command": list(argv) if argv is not None else None,
        "software_version": view.software_version,
        "parameters": view.parameters,
        "config_hash": view.config_hash,
        "inputs": [f["did"] for v in inputs.values() for f in iter_files(v)],
        "host": socket.gethostname(),
        "site": task.site,
        "executor": task.executor,
        "dpps_version": __version__,
        "python": platform.python_version(),
        **times,
    }
    activity = _tool_activity(outdir)
    if activity is not None:
        record["activity"] = activity
    return record


def _tool_activity(outdir: Path | None) -> dict[str, Any] | None:
    """The tool's own provenance record, if it wrote one; an unreadable one is noted, not
    fatal: the outputs are good, and the WMS half of the record still says how they were made."""
    path = outdir / TOOL_PROVENANCE if outdir is not None else None
    if path is None or not path.is_file():
        return None
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {"error": f"unreadable {TOOL_PROVENANCE}: {exc}"}
    if not isinstance(loaded, dict):
        return {"error": f"{TOOL_PROVENANCE} holds a {type(loaded).__name__}, not an object"}
    return loaded


def upload(
    config: Config, produced: Sequence[Produced], job_id: int, attempt: int, token: str
) -> None:
    """Put each output's bytes on its RSE under this dispatch's own path (checksummed)."""
    dispatch = hashlib.sha256(token.encode()).hexdigest()[:10]
    for p in produced:
        storage = StorageElement.from_config(p.rse, config)
        rel = f"_wms/job{job_id}.a{attempt}.{dispatch}/" + StorageElement.path_for(
            config.default_scope, p.lfn
        )
        p.size, sums = storage.upload(p.path, rel, config.checksums)
        p.rel = rel
        p.extra_meta["checksums"] = sums


def discard(config: Config, produced: Sequence[Produced]) -> None:
    for p in produced:
        if p.rel is not None:
            StorageElement.from_config(p.rse, config).remove(p.rel)
            p.rel = None


def prepare(
    config: Config,
    produced: Sequence[Produced],
    prov: Mapping[str, Any],
    rse_ids: Mapping[str, int],
) -> list[registration.NewFile]:
    """The uploaded outputs as files to register: metadata extracted from the sandbox copies
    (a full read of each FITS file), the keys each output declares, the provenance record.
    Done before the DONE transaction, so none of it holds the catalog's writer lock."""
    out = []
    for p in produced:
        given = {k: str(v) for k, v in p.spec.meta.items()}
        if p.spec.data_level:
            given["data_level"] = p.spec.data_level
        out.append(
            registration.prepare_output(
                p.path,
                scope=config.default_scope,
                lfn=p.lfn,
                rse_id=rse_ids[p.rse],
                path=p.rel or "",
                size=p.size,
                checksums=p.extra_meta["checksums"],
                given=given,
                provenance=prov,
                new_version=p.spec.new_version,
            )
        )
    return out


def register(
    session: Session,
    config: Config,
    produced: Sequence[Produced],
    files: Sequence[registration.NewFile],
    prov: Mapping[str, Any],
    *,
    job_id: int,
    account: str,
) -> list[Produced]:
    """Register the prepared outputs in the caller's transaction (``bdms.registration``, with
    each output's policy); returns duplicates to remove after commit (same LFN and same bytes
    were already archived). Conflict: other bytes exist."""
    duplicates: list[Produced] = []
    if not produced:
        return duplicates
    outcomes = registration.register(
        session,
        files,
        account=account,
        policy=[p.spec.policy or None for p in produced],
        config=config,
    )
    for p, outcome in zip(produced, outcomes, strict=True):
        if outcome.status == "conflict":
            raise Conflict(f"output {p.port}: {outcome.message}")
        p.did_id = outcome.did_id
        if outcome.status == "present":
            duplicates.append(p)
    session.execute(
        insert(JobFileRow),
        [
            {
                "job_id": job_id,
                "did_id": p.did_id,
                "role": "output",
                "port": p.port,
                "position": p.position,
            }
            for p in produced
        ],
    )
    events.record_many(
        session,
        (
            {"account": account, "action": "wms.output", "did_id": p.did_id, "details": dict(prov)}
            for p in produced
        ),
    )
    return duplicates


__all__ = [
    "TOOL_PROVENANCE",
    "Produced",
    "collect",
    "discard",
    "output_rse",
    "prepare",
    "provenance",
    "register",
    "upload",
]
