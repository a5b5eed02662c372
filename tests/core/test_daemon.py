"""The daemon runner, database heartbeats and leases: the machinery every daemon stands on."""

from __future__ import annotations

import datetime as dt
import os
import signal
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from dpps.catalog.engine import make_engine, make_sessionmaker, transaction, upgrade
from dpps.catalog.heartbeats import DatabaseHeartbeats
from dpps.catalog.leases import claim, release
from dpps.catalog.models import DIDRow, HeartbeatRow, RSERow, TransferRow
from dpps.core.clock import utcnow
from dpps.core.daemon import (
    DaemonContext,
    NoHeartbeats,
    WorkerSlot,
    run_daemon,
    sleep_until,
)
from dpps.core.errors import InvalidInput, Unavailable

# -- the runner (no database) ------------------------------------------------------------------


def test_once_calls_run_once_exactly_once() -> None:
    calls: list[DaemonContext] = []
    ctx = run_daemon("t", lambda c: calls.append(c) or 5, once=True)
    assert len(calls) == 1
    assert calls[0] is ctx
    assert ctx.name == "t"
    assert ctx.slot == WorkerSlot(0, 1)


def test_loops_while_there_is_work_then_sleeps_until_stopped() -> None:
    stop = threading.Event()
    work = [3, 2, 1, 0]
    calls: list[int] = []

    def run_once(ctx: DaemonContext) -> int:
        calls.append(len(calls))
        if not work:
            stop.set()  # idle: stop from "outside" while the runner sleeps
            return 0
        return work.pop(0)

    run_daemon("t", run_once, stop=stop, sleep_s=0.01)
    assert len(calls) == 5  # 3, 2, 1 back to back, 0 (sleep), then the stopping pass


def test_idle_sleep_grows_and_stop_interrupts_it() -> None:
    stop = threading.Event()
    calls = 0

    def run_once(ctx: DaemonContext) -> int:
        nonlocal calls
        calls += 1
        if calls == 3:
            threading.Timer(0.05, stop.set).start()
        return 0

    run_daemon("t", run_once, stop=stop, sleep_s=0.01, max_sleep_s=60.0)
    # after the third pass the runner sleeps 0.04 s, then 0.08 s: the stop arrives in it
    assert calls in (3, 4)
    assert stop.is_set()


def test_transient_errors_are_counted_and_retried_bugs_propagate() -> None:
    stop = threading.Event()
    outcomes: list[object] = [Unavailable("db locked"), Unavailable("again"), 1]

    def run_once(ctx: DaemonContext) -> int:
        item = outcomes.pop(0)
        if isinstance(item, Exception):
            raise item
        stop.set()
        return 1

    ctx = run_daemon("t", run_once, stop=stop, sleep_s=0.001)
    assert ctx.errors["Unavailable"] == 2
    assert not outcomes

    def buggy(ctx: DaemonContext) -> int:
        raise ZeroDivisionError("bug")

    with pytest.raises(ZeroDivisionError):
        run_daemon("t", buggy, sleep_s=0.001)
    with pytest.raises(InvalidInput):  # a dpps error other than Unavailable is not transient
        run_daemon("t", lambda c: (_ for _ in ()).throw(InvalidInput("bad")), once=True)


class _Recorder(NoHeartbeats):
    def __init__(self, slot: WorkerSlot) -> None:
        self.slot = slot
        self.beats: list[str] = []
        self.forgotten: list[str] = []

    def beat(self, daemon: str, instance: str, details: Mapping[str, Any]) -> WorkerSlot:
        self.beats.append(instance)
        return self.slot

    def forget(self, daemon: str, instance: str) -> None:
        self.forgotten.append(instance)


def test_heartbeat_before_every_pass_slot_given_to_run_once_and_forgotten_at_the_end() -> None:
    beats = _Recorder(WorkerSlot(1, 3))
    seen: list[WorkerSlot] = []
    stop = threading.Event()

    def run_once(ctx: DaemonContext) -> int:
        seen.append(ctx.slot)
        if len(seen) == 2:
            stop.set()
        return 1

    ctx = run_daemon("t", run_once, beats, stop=stop)
    assert seen == [WorkerSlot(1, 3)] * 2
    assert beats.beats == [ctx.instance] * 2
    assert beats.forgotten == [ctx.instance]
    with pytest.raises(ZeroDivisionError):
        run_daemon("t", lambda c: 1 // 0, beats)
    assert len(beats.forgotten) == 2  # forgotten even when the daemon dies of a bug


def test_sigterm_stops_the_loop_and_restores_the_handler() -> None:
    before = signal.getsignal(signal.SIGTERM)
    calls = 0

    def run_once(ctx: DaemonContext) -> int:
        nonlocal calls
        calls += 1
        if calls == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return 1  # always "work": only the signal can stop it

    ctx = run_daemon("t", run_once)
    assert ctx.stopping
    assert calls == 2
    assert signal.getsignal(signal.SIGTERM) is before


def test_worker_slots_partition_keys() -> None:
    slots = [WorkerSlot(i, 3) for i in range(3)]
    for key in range(30):
        assert sum(s.owns(key) for s in slots) == 1
    assert WorkerSlot().owns(12345)


def test_sleep_until_returns_early_when_stopped() -> None:
    import time

    stop = threading.Event()
    assert sleep_until(time.monotonic() - 1, stop) is False
    stop.set()
    assert sleep_until(time.monotonic() + 3600, stop) is True


# -- heartbeats and leases on both catalog backends -----------------------------------------


@pytest.fixture
def engine(catalog_url: str) -> Iterator[Engine]:
    eng = make_engine(catalog_url, busy_timeout_s=30.0)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


def test_heartbeats_rank_live_instances_and_forget_dead_ones(
    factory: sessionmaker[Session],
) -> None:
    beats = DatabaseHeartbeats(factory, expire_s=60.0)
    assert beats.beat("transfer", "a", {"pid": 1}) == WorkerSlot(0, 1)
    assert beats.beat("transfer", "b", {}) == WorkerSlot(1, 2)
    assert beats.beat("transfer", "a", {}) == WorkerSlot(0, 2)
    assert beats.beat("evaluator", "c", {}) == WorkerSlot(0, 1)  # daemons rank separately
    with transaction(factory) as session:  # "a" died a while ago
        session.execute(
            update(HeartbeatRow)
            .where(HeartbeatRow.instance == "a")
            .values(last_seen=utcnow() - dt.timedelta(minutes=5))
        )
    assert beats.beat("transfer", "b", {}) == WorkerSlot(0, 1)
    with factory() as session:
        assert {(r.daemon, r.instance) for r in beats.live(session)} == {
            ("evaluator", "c"),
            ("transfer", "b"),
        }
    beats.forget("transfer", "b")
    with factory() as session:
        assert [r.instance for r in beats.live(session)] == ["c"]


def test_run_daemon_with_database_heartbeats(factory: sessionmaker[Session]) -> None:
    seen: list[int] = []

    def run_once(ctx: DaemonContext) -> int:
        with factory() as session:
            seen.append(len(session.scalars(select(HeartbeatRow)).all()))
        return 0

    run_daemon("t", run_once, DatabaseHeartbeats(factory), once=True)
    assert seen == [1]  # beating while it runs ...
    with factory() as session:  # ... gone once it stopped
        assert session.scalars(select(HeartbeatRow)).all() == []


def _transfers(factory: sessionmaker[Session], n: int) -> list[int]:
    now = utcnow()
    with transaction(factory) as session:
        rse = RSERow(name="X", site="S", kind="disk", onsite=False, url="/x", attributes={})
        session.add(rse)
        session.flush()
        dids = session.scalars(
            insert(DIDRow).returning(DIDRow.id, sort_by_parameter_order=True),
            [
                {"scope": "t", "name": f"/f{i}", "did_type": "FILE", "checksums": {}, "meta": {}}
                for i in range(n)
            ],
        ).all()
        return list(
            session.scalars(
                insert(TransferRow).returning(TransferRow.id, sort_by_parameter_order=True),
                [
                    {
                        "did_id": d,
                        "dest_rse_id": rse.id,
                        "state": "QUEUED",
                        "priority": i % 3,
                        "next_attempt_at": now,
                    }
                    for i, d in enumerate(dids)
                ],
            ).all()
        )


def test_claim_leases_rows_once_until_the_lease_expires(factory: sessionmaker[Session]) -> None:
    ids = _transfers(factory, 10)
    where = [TransferRow.state == "QUEUED"]
    with transaction(factory) as session:
        first = claim(
            session,
            TransferRow,
            owner="a",
            lease_s=60,
            where=where,
            order_by=[TransferRow.priority.desc(), TransferRow.id],
            limit=4,
        )
        assert [r.lease_owner for r in first] == ["a"] * 4
        assert all(r.lease_expires_at is not None for r in first)
        assert [r.priority for r in first] == [2, 2, 2, 1]  # the order asked for
    with transaction(factory) as session:
        second = claim(session, TransferRow, owner="b", lease_s=60, where=where, limit=100)
    assert {r.id for r in first}.isdisjoint({r.id for r in second})
    assert {r.id for r in first} | {r.id for r in second} == set(ids)
    with transaction(factory) as session:
        assert claim(session, TransferRow, owner="c", lease_s=60, where=where) == []
        # a's owner died: its lease runs out and anyone may take the rows again
        session.execute(
            update(TransferRow)
            .where(TransferRow.id.in_([r.id for r in first]))
            .values(lease_expires_at=utcnow() - dt.timedelta(seconds=1))
        )
    with transaction(factory) as session:
        third = claim(session, TransferRow, owner="c", lease_s=60, where=where)
        assert {r.id for r in third} == {r.id for r in first}
        release(session, third[0])
    with factory() as session:
        row = session.get(TransferRow, third[0].id)
        assert row is not None
        assert row.lease_owner is None
        assert row.lease_expires_at is None


@pytest.mark.postgres
def test_postgres_claimers_skip_rows_locked_by_an_open_transaction(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Two claimers at the same moment: the second skips what the first holds (SKIP LOCKED)
    instead of waiting for it or taking it too."""
    server = request.getfixturevalue("postgres_server")
    eng = make_engine(server.create_database())
    try:
        upgrade(eng)
        factory = make_sessionmaker(eng)
        _transfers(factory, 6)
        where = [TransferRow.state == "QUEUED"]
        with transaction(factory) as first:
            held = claim(first, TransferRow, owner="a", lease_s=60, where=where, limit=3)
            with transaction(factory) as second:  # while the first is not committed
                other = claim(second, TransferRow, owner="b", lease_s=60, where=where)
            assert len(held) == 3
            assert len(other) == 3
            assert {r.id for r in held}.isdisjoint({r.id for r in other})
    finally:
        eng.dispose()
