"""Files attached to a dataset while its rule is being evaluated or settled are never missed.

An attach asks for the dataset's rules to be evaluated again. On PostgreSQL (READ COMMITTED:
each statement sees what was committed before it started) that request can commit between two
statements of the evaluator or the transfer daemon: after the evaluator listed the dataset's
files, or after the transfer daemon read its clock but before it row-locked the rule to mark
it OK. Both used to lose the request (the rule was OK while a new file had no copy; the
PostgreSQL long-haul run stalled). These tests put the attach exactly there, through hooks
at those points of the real daemon code, so the interleaving is the same on every run and on
both backends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from dpps.bdms.archive import Archive
from dpps.bdms.replication import evaluator
from dpps.bdms.transfer import ledger
from dpps.catalog import replication
from dpps.catalog.models import DIDRow
from tests.bdms.replication_helpers import (
    FAST,
    drive,
    evaluate,
    ingest_dataset,
    locks,
    replicas,
    rule_row,
    transfer,
    tuned,
)

pytestmark = pytest.mark.verifies_usecase("UC-110-1.6")

DATASET = "/ctao/dl0/run1"


def _name(did: str) -> str:
    """The DID's name (what ``replicas`` reports), from ``scope:name``."""
    return did.split(":", 1)[-1]


def _attach_one(arch: Archive, tmp_path: Path, seed: int) -> str:
    """A new file ingested into the dataset (its own committed transaction): an attach."""
    (did,) = ingest_dataset(arch, tmp_path / f"late{seed}", 1, dataset=DATASET, seed=seed)
    return _name(did)


def _settled_everywhere(arch: Archive, rule_id: int, names: set[str]) -> None:
    drive(arch)
    held = replicas(arch)
    missing = sorted(n for n in names if "PIC" not in held.get(n, set()))
    assert not missing, f"no copy on PIC of {missing}"
    assert rule_row(arch, rule_id).state == "OK"
    assert locks(arch, rule_id) == {"OK": len(names)}


def test_attach_between_the_transfer_daemons_clock_and_its_rule_lock_is_kept(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The transfer daemon marks a REPLICATING rule OK once all its locks are OK - unless an
    attach asked for a new evaluation. Here the attach commits after the daemon took its clock
    reading (and began its transaction) but before it locked the rule row."""
    arch = tuned(archive, FAST)
    names = {_name(d) for d in ingest_dataset(arch, tmp_path / "in", 3)}
    rule_id = arch.add_rule(DATASET, copies=1, rses="PIC")
    assert evaluate(arch) == 1
    assert rule_row(arch, rule_id).state == "REPLICATING"

    real: Callable[..., list[int]] = ledger.settle_rule_ids
    late: list[str] = []

    attach = threading.Thread(target=lambda: late.append(_attach_one(arch, tmp_path, seed=7)))

    def attach_then_settle(session: Session, rule_ids: set[int], now: Any, account: str) -> Any:
        if not attach.is_alive() and not late:  # the first settle: its clock is already read
            attach.start()
            if arch.engine.dialect.name == "postgresql":
                attach.join()  # committed before the rule row is locked below
            # SQLite: the attach waits for this writer's lock, as it would in production
        return real(session, rule_ids, now, account)

    monkeypatch.setattr(ledger, "settle_rule_ids", attach_then_settle)
    transfer(arch)  # copies the three files, then settles the rule
    monkeypatch.undo()
    attach.join()
    assert late, "the transfer daemon never settled the rule"
    rule = rule_row(arch, rule_id)
    if arch.engine.dialect.name == "postgresql":  # on SQLite the attach came after the settle
        assert rule.state != "OK", "rule marked OK although a file attached meanwhile has no copy"
    assert rule.next_evaluation_at is not None, "the attach's request for evaluation was lost"
    _settled_everywhere(arch, rule_id, names | set(late))


def test_attach_while_the_evaluator_evaluates_the_rule_is_kept(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The evaluator lists the dataset's files, an attach commits, the evaluator finishes:
    the rule must stay due (and not be OK), so the next pass covers the new file."""
    arch = tuned(archive, FAST)
    names = {_name(d) for d in ingest_dataset(arch, tmp_path / "in", 3)}
    rule_id = arch.add_rule(DATASET, copies=1, rses="PIC")
    drive(arch)
    assert rule_row(arch, rule_id).state == "OK"

    real = replication.expand_files
    late: list[str] = []

    def list_then_attach(session: Session, did: DIDRow) -> list[tuple[int, int]]:
        files = real(session, did)
        if not late:
            late.append(_attach_one(arch, tmp_path, seed=8))
        return files

    # a re-evaluation of the OK rule is due (e.g. a replica was declared BAD and repaired)
    with arch.sessions.begin() as session:
        replication.bump_rules(session, [rule_row(arch, rule_id).did_id])
    monkeypatch.setattr(evaluator, "expand_files", list_then_attach)
    assert evaluate(arch) == 1
    monkeypatch.undo()
    assert late
    rule = rule_row(arch, rule_id)
    assert rule.state != "OK", "rule marked OK although a file attached meanwhile has no copy"
    assert rule.next_evaluation_at is not None, "the attach's request for evaluation was lost"
    _settled_everywhere(arch, rule_id, names | set(late))


def test_attach_while_evaluating_and_settling_at_once_is_kept(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both at once: while the evaluator works on the rule, a file is attached and the
    transfer daemon (clock read before the attach) settles the rule. Neither may clear the
    request the attach made."""
    arch = tuned(archive, FAST)
    names = {_name(d) for d in ingest_dataset(arch, tmp_path / "in", 3)}
    rule_id = arch.add_rule(DATASET, copies=1, rses="PIC")
    assert evaluate(arch) == 1
    transfer_settle = ledger.settle_rule_ids
    # copy the files but keep the rule REPLICATING (the daemon's settle comes later)
    monkeypatch.setattr(ledger, "settle_rule_ids", lambda *_a, **_k: [])
    transfer(arch)
    monkeypatch.undo()
    assert rule_row(arch, rule_id).state == "REPLICATING"
    with arch.sessions.begin() as session:
        replication.bump_rules(session, [rule_row(arch, rule_id).did_id])

    real = replication.expand_files
    late: list[str] = []

    def list_attach_settle(session: Session, did: DIDRow) -> list[tuple[int, int]]:
        files = real(session, did)
        if not late:
            stale = replication.utcnow()  # the transfer daemon's clock reading
            late.append(_attach_one(arch, tmp_path, seed=9))
            with arch.sessions.begin() as other:
                transfer_settle(other, {rule_id}, stale, "root")
        return files

    monkeypatch.setattr(evaluator, "expand_files", list_attach_settle)
    assert evaluate(arch) == 1
    monkeypatch.undo()
    assert late
    rule = rule_row(arch, rule_id)
    assert rule.state != "OK", "rule marked OK although a file attached meanwhile has no copy"
    assert rule.next_evaluation_at is not None, "the attach's request for evaluation was lost"
    _settled_everywhere(arch, rule_id, names | set(late))
