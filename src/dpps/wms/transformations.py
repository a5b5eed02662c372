"""Transformations: standing productions that turn matching archive files into workflow runs.

A transformation is a filter over the archive (the query language), a workflow template with
one File or File[] input port the files are bound to, and a grouping: ``file`` (one task per
file), ``files:N`` (N files per task) or ``by:FIELD[,FIELD]`` (one task per value, e.g.
``by:obs_id,tel_id``). A group is ready when full (``files:N``) or, for partial and keyed
groups, when no file joined it for ``settle_s`` seconds (0: at once).

Each file is booked once per transformation in ``transformation_files`` (a unique constraint,
not a hope), in the same transaction that creates its task and the task's first jobs. Tasks
that end FAILED are run again up to ``max_task_attempts``; then their files are marked
PROBLEMATIC with the reason, and an event on each file says so. Outputs carry the free
metadata ``wms_transformation=<name>``: that is the output query another transformation
reads from (``input_from``), which makes a production a chain of transformations.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Table, bindparam, exists, select, update
from sqlalchemy.orm import Session, sessionmaker

from dpps.bdms import resolve
from dpps.bdms.types import FileRef
from dpps.catalog import events
from dpps.catalog.engine import transaction
from dpps.catalog.leases import claim
from dpps.catalog.models_wms import TransformationFileRow, TransformationRow, WorkflowRow
from dpps.core.clock import utcnow
from dpps.core.config import Config
from dpps.core.errors import Conflict, InvalidInput
from dpps.wms import jobs as job_repo
from dpps.wms import workflows
from dpps.wms.binding import file_value
from dpps.wms.spec import NAME_RE, WorkflowSpec
from dpps.wms.states import FileStatus, TransformationState, WorkflowState
from dpps.wms.types import SubmitOptions

SCAN_CHUNK = 5000
_TF: Table = TransformationFileRow.__table__  # type: ignore[assignment]
_GROUPING = re.compile(r"^(file|files:(?P<n>[1-9]\d{0,5})|by:(?P<keys>[a-z_.0-9,]+))$")


def output_query(name: str) -> str:
    """The filter selecting what a transformation produced."""
    return f'meta.wms_transformation="{name}"'


def parse_grouping(text: str) -> tuple[str, int, tuple[str, ...]]:
    """``file`` / ``files:N`` / ``by:obs_id,tel_id`` -> (kind, size, keys)."""
    m = _GROUPING.match(text.strip())
    if m is None:
        raise InvalidInput(f"invalid grouping {text!r}: use file, files:N or by:FIELD[,FIELD]")
    if m.group("n"):
        return "files", int(m.group("n")), ()
    if m.group("keys"):
        keys = tuple(k for k in m.group("keys").split(",") if k)
        for key in keys:
            if not resolve.is_field(key):
                raise InvalidInput(f"grouping key {key!r} is not a queryable field")
        return "by", 0, keys
    return "file", 1, ()


def add(
    session: Session,
    config: Config,
    *,
    name: str,
    spec: WorkflowSpec,
    filter_text: str,
    input_port: str,
    grouping: str,
    inputs: Mapping[str, Any],
    opts: SubmitOptions,
    settle_s: float,
    max_task_attempts: int,
    account: str,
) -> TransformationRow:
    if not NAME_RE.match(name):
        raise InvalidInput(f"invalid transformation name {name!r}")
    resolve.check_filter(filter_text)
    kind, size, _keys = parse_grouping(grouping)
    port = next((p for p in spec.inputs if p.name == input_port), None)
    if port is None or not port.is_file:
        raise InvalidInput(
            f"workflow {spec.name} has no File input {input_port!r} to bind the files to"
        )
    if kind != "file" and not port.is_array:
        raise InvalidInput(
            f"grouping {grouping!r} makes groups of files: input {input_port!r} must be File[]"
        )
    if max_task_attempts < 1 or settle_s < 0:
        raise InvalidInput("max_task_attempts must be >= 1 and settle_s >= 0")
    if session.scalar(select(TransformationRow.id).where(TransformationRow.name == name)):
        raise Conflict(f"a transformation named {name!r} exists already")
    row = TransformationRow(
        name=name,
        state=TransformationState.ACTIVE.value,
        account=account,
        filter=filter_text,
        document=spec.model_dump(mode="json"),
        input_port=input_port,
        inputs=dict(inputs),
        grouping=grouping,
        group_size=size,
        settle_s=settle_s,
        priority=opts.priority,
        activity=opts.activity,
        activity_rank=job_repo.activity_rank(config, opts.activity),
        site=opts.site,
        executor=opts.executor or config.wms.executor,
        max_task_attempts=max_task_attempts,
    )
    session.add(row)
    session.flush()
    events.record(
        session,
        account=account,
        action="wms.transformation.add",
        details={"transformation": name, "filter": filter_text, "grouping": grouping},
    )
    return row


def _key(values: Sequence[Any], keys: Sequence[str]) -> str:
    return ";".join(f"{key}={value}" for key, value in zip(keys, values, strict=True))


def scan(session: Session, t: TransformationRow) -> int:
    """Book the files that newly match the filter (once each: the unique constraint)."""

    def booked(did_id: resolve.IdColumn) -> ColumnElement[bool]:
        return exists().where(
            TransformationFileRow.transformation_id == t.id,
            TransformationFileRow.did_id == did_id,
        )

    kind, _size, keys = parse_grouping(t.grouping)
    # A transformation never feeds on its own outputs (they may match its filter: a DL1 file
    # keeps the obs_id of its DL0 input), which would loop forever. Without grouping keys only
    # the ids are read (no ORM objects for thousands of files).
    found = resolve.matching_files(
        session,
        t.filter,
        excluding=output_query(t.name),
        unless=booked,
        fields=keys if kind == "by" else (),
        limit=SCAN_CHUNK,
    )
    keyed = [(f.id, _key(f.values, keys)[:256] if kind == "by" else "") for f in found]
    if keyed:
        now = utcnow()
        session.execute(
            _TF.insert(),
            [
                {
                    "transformation_id": t.id,
                    "did_id": did_id,
                    "status": FileStatus.NEW.value,
                    "group_key": key,
                    "attempts": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for did_id, key in keyed
            ],
        )
    return len(keyed)


class _Booked(NamedTuple):
    """A NEW bookkeeping row (only what grouping needs)."""

    id: int
    group_key: str
    created_at: dt.datetime


def _ready_groups(session: Session, t: TransformationRow) -> list[list[tuple[Any, Any]]]:
    """Groups of NEW files ready to become tasks, as (bookkeeping row, file) pairs: plain
    tuples of the columns needed, not ORM objects (a 10,000-file round makes 10,000 pairs)."""
    kind, size, _keys = parse_grouping(t.grouping)
    tf = _TF.c
    booked = (
        select(tf.id, tf.group_key, tf.created_at)
        .where(tf.transformation_id == t.id, tf.status == FileStatus.NEW.value)
        .order_by(tf.id)
    )
    new = [
        (_Booked(r[0], r[1], r[2]), ref)
        for r, ref in resolve.with_files(session, booked, tf.did_id)
    ]
    if kind == "file":
        return [[pair] for pair in new]
    settled = utcnow() - dt.timedelta(seconds=t.settle_s)
    groups: dict[str, list[tuple[Any, Any]]] = defaultdict(list)
    for pair in new:
        groups[pair[0].group_key].append(pair)
    ready = []
    for members in groups.values():
        if kind == "files":
            while len(members) >= size:
                ready.append(members[:size])
                members = members[size:]
        quiet = all(b.created_at <= settled for b, _d in members)
        if members and quiet and (kind == "by" or t.settle_s > 0):
            ready.append(members)
    return ready


def _task(
    session: Session,
    config: Config,
    t: TransformationRow,
    spec: WorkflowSpec,
    dids: Sequence[FileRef],
) -> dict[str, Any]:
    port = next(p for p in spec.inputs if p.name == t.input_port)
    # in name order, not booking order: files are booked in the order they were registered,
    # which follows the site's clock (ties within a timestamp tick, parallel writers), and a
    # tool may depend on the order of its inputs; the same files make the same task
    files = [file_value(d) for d in sorted(dids, key=lambda d: (d.scope, d.name, d.version))]
    given = {**t.inputs, t.input_port: files if port.is_array else files[0]}
    opts = SubmitOptions(
        name=f"{t.name}.{min(d.id for d in dids)}",
        priority=t.priority,
        activity=t.activity,
        site=t.site,
        executor=t.executor,
    )
    return workflows.workflow_values(
        session, config, spec, given, opts=opts, account=t.account, transformation_id=t.id
    )


def _start(
    session: Session,
    config: Config,
    t: TransformationRow,
    spec: WorkflowSpec,
    groups: Sequence[Sequence[tuple[Any, Any]]],
) -> int:
    """One task per group: workflows and bookkeeping in bulk, then their first jobs."""
    if not groups:
        return 0
    rows = workflows.insert_workflows(
        session, [_task(session, config, t, spec, [d for _tf, d in g]) for g in groups]
    )
    table = _TF
    session.execute(
        update(table)
        .where(table.c.id == bindparam("tf_id"))
        .values(
            status=FileStatus.ASSIGNED.value,
            workflow_id=bindparam("wf_id"),
            attempts=table.c.attempts + 1,
            reason=None,
            updated_at=utcnow(),
        ),
        [
            {"tf_id": tf.id, "wf_id": wf.id}
            for wf, g in zip(rows, groups, strict=True)
            for tf, _d in g
        ],
    )
    workflows.advance(session, config, rows, t.account)
    return len(rows)


def create_tasks(session: Session, config: Config, t: TransformationRow) -> int:
    """Turn ready groups of NEW files into tasks (workflows) and create their first jobs."""
    spec = WorkflowSpec.model_validate(t.document)
    return _start(session, config, t, spec, _ready_groups(session, t))


def settle_tasks(session: Session, config: Config, t: TransformationRow) -> int:
    """Files of finished tasks: PROCESSED, retried in a new task, or PROBLEMATIC."""
    pairs = list(
        session.execute(
            select(TransformationFileRow, WorkflowRow)
            .join(WorkflowRow, WorkflowRow.id == TransformationFileRow.workflow_id)
            .where(
                TransformationFileRow.transformation_id == t.id,
                TransformationFileRow.status == FileStatus.ASSIGNED.value,
                WorkflowRow.state != WorkflowState.RUNNING.value,
            )
        )
    )
    if not pairs:
        return 0
    spec = WorkflowSpec.model_validate(t.document)
    retry: dict[int, list[TransformationFileRow]] = defaultdict(list)
    for tf, wf in pairs:
        if wf.state == WorkflowState.DONE:
            tf.status = FileStatus.PROCESSED.value
        elif tf.attempts < t.max_task_attempts:
            retry[wf.id].append(tf)
        else:
            tf.status = FileStatus.PROBLEMATIC.value
            tf.reason = f"task {wf.id} {wf.state} after {tf.attempts} attempt(s): {wf.reason}"
            events.record(
                session,
                account=t.account,
                action="wms.problematic",
                did_id=tf.did_id,
                reason=tf.reason,
                details={"transformation": t.name, "workflow_id": wf.id},
            )
    refs = resolve.file_refs(session, [tf.did_id for members in retry.values() for tf in members])
    groups = [
        [(tf, refs[tf.did_id]) for tf in members if tf.did_id in refs]
        for members in retry.values()
    ]
    session.flush()
    _start(session, config, t, spec, groups)
    return len(pairs)


def counts(session: Session, transformation_id: int) -> dict[str, int]:
    from sqlalchemy import func

    stmt = (
        select(TransformationFileRow.status, func.count())
        .where(TransformationFileRow.transformation_id == transformation_id)
        .group_by(TransformationFileRow.status)
    )
    found = {status: int(n) for status, n in session.execute(stmt)}
    return {s.value: found.get(s.value, 0) for s in FileStatus}


__all__ = [
    "add",
    "counts",
    "create_tasks",
    "output_query",
    "parse_grouping",
    "scan",
    "settle_tasks",
]


def one_pass(sessions: sessionmaker[Session], config: Config, owner: str) -> int:
    """One round of the transformation daemon (``dpps.wms.daemons.TransformerDaemon``, which
    passes its instance id as ``owner``) over every ACTIVE transformation.

    Each transformation is leased while handled (several daemons never handle the same one
    at once) and handled in its own short transaction: book new files, create ready tasks,
    settle finished ones.
    """
    with transaction(sessions) as s:
        rows = claim(
            s,
            TransformationRow,
            owner=owner,
            lease_s=max(60.0, config.wms.lease_s),
            where=[TransformationRow.state == TransformationState.ACTIVE.value],
            order_by=[
                TransformationRow.activity_rank.desc(),
                TransformationRow.priority.desc(),
                TransformationRow.id,
            ],
            limit=50,
        )
        ids = [r.id for r in rows]
    done = 0
    for tid in ids:
        with transaction(sessions) as s:
            t = s.get(TransformationRow, tid)
            if t is None or t.lease_owner != owner:
                continue
            done += scan(s, t)
            done += create_tasks(s, config, t)
            done += settle_tasks(s, config, t)
            t.lease_owner = None
            t.lease_expires_at = None
    return done
