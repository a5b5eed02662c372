"""Ids of the tables that grow with activity go past 2^31 (migration 0008, issue 13).

On PostgreSQL they were 32-bit ``integer`` columns with 32-bit sequences, and the first
insert past 2,147,483,647 failed; on SQLite they must stay INTEGER, the rowid, which numbers
the rows an insert leaves without an id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from dpps.catalog import engine as engine_mod
from dpps.catalog.engine import make_engine, upgrade
from dpps.catalog.models import (
    Base,
    DIDRow,
    EventRow,
    RSERow,
    RuleLockRow,
    RuleRow,
    StageRequestRow,
    TransferRow,
)
from dpps.catalog.models_wms import (
    JobEventRow,
    JobFileRow,
    JobRow,
    TransformationFileRow,
    TransformationRow,
    WorkflowRow,
)
from dpps.catalog.sets import among
from dpps.core.errors import Conflict
from dpps.testing.postgres import TemporaryPostgres

#: Past the last 32-bit id, 2^31 - 1.
BIG = 2**31 + 10

#: The columns migration 0008 widens on PostgreSQL (and the sequences of these tables' ids).
WIDENED = {
    "events": ["id"],
    "transfers": ["id"],
    "rule_locks": ["id"],
    "stage_requests": ["id"],
    "job_events": ["id", "job_id"],
    "job_files": ["id", "job_id"],
    "transformation_files": ["id", "workflow_id"],
    "jobs": ["id", "workflow_id"],
    "workflows": ["id"],
}


@pytest.fixture
def engine(catalog_url: str) -> Iterator[Engine]:
    engine = make_engine(catalog_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def _past_32_bits(session: Session, make: Callable[[int], Any]) -> list[int]:
    """Insert ``make(0)`` with the id ``BIG`` (the sequence set there on PostgreSQL) and
    ``make(1)`` without one; their ids."""
    first, second = make(0), make(1)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT setval(pg_get_serial_sequence(:t, 'id'), :v)"),
            {"t": first.__tablename__, "v": BIG},
        )
    first.id = BIG
    session.add(first)
    session.flush()
    session.add(second)
    session.flush()
    return [first.id, second.id]


def _fill(engine: Engine) -> dict[str, list[int]]:
    """Two rows in every widened table, ids past 32 bits, pointing at each other's."""
    with Session(engine) as s:
        dids = [DIDRow(scope="ctao", name=f"/f{i}", did_type="FILE") for i in range(2)]
        rses = [RSERow(name=f"R{i}", site="S", kind="disk", url="file:///r") for i in range(2)]
        s.add_all([*dids, *rses])
        s.flush()
        rule = RuleRow(
            did_id=dids[0].id, account="root", rse_expression="R0", copies=1, state="OK"
        )
        production = TransformationRow(
            name="t",
            state="ACTIVE",
            account="root",
            filter="data_level=DL0",
            document={},
            input_port="in",
            grouping="obs_id",
            activity="processing",
            executor="local",
        )
        s.add_all([rule, production])
        s.flush()
        wms = dict(account="root", activity="processing", executor="local")
        ids = {
            "workflows": _past_32_bits(
                s, lambda i: WorkflowRow(name=f"w{i}", state="DONE", document={}, **wms)
            )
        }
        ids["jobs"] = _past_32_bits(
            s,
            lambda i: JobRow(
                name=f"j{i}",
                state="DONE",
                tool="t",
                spec={},
                config_hash="0",
                workflow_id=BIG,
                **wms,
            ),
        )
        ids["job_events"] = _past_32_bits(
            s, lambda i: JobEventRow(job_id=BIG, state="DONE", attempt=i, account="root")
        )
        ids["job_files"] = _past_32_bits(
            s,
            lambda i: JobFileRow(
                job_id=BIG, did_id=dids[0].id, role="input", port="in", position=i
            ),
        )
        ids["transformation_files"] = _past_32_bits(
            s,
            lambda i: TransformationFileRow(
                transformation_id=production.id,
                did_id=dids[i].id,
                status="DONE",
                group_key="1",
                workflow_id=BIG,
            ),
        )
        ids["events"] = _past_32_bits(
            s, lambda i: EventRow(account="root", action="file.register", did_id=dids[i].id)
        )
        ids["transfers"] = _past_32_bits(
            s, lambda i: TransferRow(did_id=dids[i].id, dest_rse_id=rses[1].id, state="DONE")
        )
        ids["rule_locks"] = _past_32_bits(
            s,
            lambda i: RuleLockRow(
                rule_id=rule.id, did_id=dids[i].id, rse_id=rses[0].id, state="OK"
            ),
        )
        ids["stage_requests"] = _past_32_bits(
            s,
            lambda i: StageRequestRow(
                did_id=dids[i].id, rse_id=rses[0].id, state="READY", account="root"
            ),
        )
        s.commit()
    return ids


def test_every_widened_table_takes_ids_past_32_bits_and_numbers_on(engine: Engine) -> None:
    ids = _fill(engine)
    assert ids == {table: [BIG, BIG + 1] for table in ids}
    with Session(engine) as s:
        # Read back, and the references to widened ids with them.
        for table in ids:
            rows = s.execute(text(f"SELECT id FROM {table} ORDER BY id")).scalars().all()
            assert rows == [BIG, BIG + 1], table
        assert s.scalars(select(JobRow.workflow_id)).all() == [BIG, BIG]
        assert s.scalars(select(JobEventRow.job_id)).all() == [BIG, BIG]
        assert s.scalars(select(JobFileRow.job_id)).all() == [BIG, BIG]
        assert s.scalars(select(TransformationFileRow.workflow_id)).all() == [BIG, BIG]
        # The daemons' ``id = ANY(array)`` takes them too (it was an int4 array).
        found = s.scalars(select(TransferRow.id).where(among(s, TransferRow.id, [BIG + 1])))
        assert found.all() == [BIG + 1]
        event = s.get(EventRow, BIG)
        assert event is not None
        assert event.action == "file.register"


def test_sqlite_ids_stay_the_rowid(tmp_path: Path) -> None:
    """On SQLite the widened ids are still declared INTEGER, by the migrations and by the
    models' own DDL (``create_all``): a BIGINT primary key would not be the rowid, and an
    insert without an id would fail."""
    migrated = make_engine(f"sqlite:///{tmp_path / 'migrated.db'}")
    created = make_engine(f"sqlite:///{tmp_path / 'created.db'}")
    try:
        upgrade(migrated)
        Base.metadata.create_all(created)
        for engine in (migrated, created):
            with engine.connect() as conn:
                for table in WIDENED:
                    columns = conn.execute(text(f"PRAGMA table_info({table})")).all()
                    assert [c.type for c in columns if c.name == "id"] == ["INTEGER"], table
            with Session(engine) as s:
                s.add_all([EventRow(account="root", action="a") for _ in range(2)])
                s.commit()
                assert s.scalars(select(EventRow.id)).all() == [1, 2]
    finally:
        migrated.dispose()
        created.dispose()


@pytest.mark.postgres
def test_downgrade_refuses_ids_past_32_bits_and_round_trips_without(
    postgres_server: TemporaryPostgres,
) -> None:
    """Back to 0007 turns the columns and sequences back into integers, unless an id or a
    sequence is past 32 bits already: then it says which and changes nothing."""
    from alembic import command

    url = postgres_server.create_database()
    engine = make_engine(url)
    try:
        config = engine_mod._alembic_config(engine)
        upgrade(engine)
        assert _types(engine) == {"bigint"}
        command.downgrade(config, "0007")
        assert _types(engine) == {"integer"}
        upgrade(engine)
        _fill(engine)
        with pytest.raises(Conflict, match=r"cannot downgrade: .* is at 2147483659, beyond"):
            command.downgrade(config, "0007")
        assert engine_mod.current_revision(engine) == "0008"
        assert _types(engine) == {"bigint"}
    finally:
        engine.dispose()
        postgres_server.drop_database(url)


def _types(engine: Engine) -> set[str]:
    """The data types of the widened columns and of their sequences."""
    with engine.connect() as conn:
        kinds = set()
        for table, columns in WIDENED.items():
            for column in columns:
                kinds.add(
                    conn.scalar(
                        text(
                            "SELECT data_type FROM information_schema.columns "
                            "WHERE table_name = :t AND column_name = :c"
                        ),
                        {"t": table, "c": column},
                    )
                )
            kinds.add(
                conn.scalar(
                    text(
                        "SELECT data_type FROM pg_sequences WHERE schemaname || '.' || "
                        "sequencename = pg_get_serial_sequence(:t, 'id')"
                    ),
                    {"t": table},
                )
            )
    return kinds
