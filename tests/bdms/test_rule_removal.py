"""One way to remove a rule: ``dpps rule delete``, ``archive.replication.delete_rule``, ``DELETE
/api/v1/rules/{id}``, a rule's lifetime ending (the reaper) and ``dpps delete`` of its product
all go through ``deletion.remove_rule`` - same event, same lock release, same effect on the
replicas (a tombstone, and the reaper removes the unlocked ones later) and other rules on the
same files made due."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from dpps.bdms.archive import Archive
from dpps.bdms.preservation import reaper
from dpps.catalog.models import EventRow, ReplicaRow, RSERow, RuleLockRow, RuleRow, TransferRow
from dpps.cli.main import app
from dpps.core.daemon import DaemonContext, WorkerSlot
from dpps.oms.accounts import AccountService
from dpps.oms.api import create_app
from tests.bdms.preservation_helpers import set_time
from tests.bdms.replication_helpers import drive, evaluate, ingest_dataset, rule_row, tuned

pytestmark = pytest.mark.verifies_usecase("UC-110-1.6")

DATASET = "/ctao/dl0/run1"
DETAILS = {"rule_id", "account", "rses", "source", "copies", "state", "policy", "locks"}


def _cli(arch: Archive, rule_id: int) -> str:
    env = {"DPPS_WORKSPACE": str(arch.config.workspace)}
    result = CliRunner().invoke(
        app, ["rule", "delete", str(rule_id), "--reason", "not needed", "--json"], env=env
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["id"] == rule_id
    return "rule.delete"


def _python(arch: Archive, rule_id: int) -> str:
    assert arch.replication.delete_rule(rule_id, reason="not needed").id == rule_id
    return "rule.delete"


def _rest(arch: Archive, rule_id: int) -> str:
    service = AccountService(arch.sessions)
    if "am" not in {a.name for a in service.list_accounts()}:
        service.add_account("am", ["archive-manager"], ["*"])
    token = service.create_token("am").token
    with TestClient(create_app(arch)) as client:
        response = client.delete(
            f"/api/v1/rules/{rule_id}",
            params={"reason": "not needed"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 200, response.text
    assert response.json()["id"] == rule_id
    return "rule.delete"


def _expiry(arch: Archive, rule_id: int) -> str:
    set_time(arch, RuleRow, "expires_at", dt.timedelta(seconds=1), id=rule_id)
    reaper.expire_rules(
        DaemonContext(name="reaper", slot=WorkerSlot()), arch.sessions, arch.config
    )
    return "rule.expire"


WAYS: dict[str, Callable[[Archive, int], str]] = {
    "cli": _cli,
    "python": _python,
    "rest": _rest,
    "expiry": _expiry,
}


@pytest.mark.parametrize("way", sorted(WAYS))
def test_every_way_of_removing_a_rule_does_the_same(
    archive: Archive, tmp_path: Path, way: str
) -> None:
    arch = tuned(archive)
    ingest_dataset(arch, tmp_path / "in", 3)
    held = arch.add_rule(DATASET, copies=1, rses="FRASCATI")  # copies made: locks replicas
    drive(arch)
    assert rule_row(arch, held).state == "OK"
    queued = arch.add_rule(DATASET, copies=1, rses="PIC")  # its transfers queued, not run
    # another account's identical rule (the same account's would be a refused duplicate)
    other = arch.as_account("ops").add_rule(DATASET, copies=1, rses="PIC")  # counts those copies
    assert evaluate(arch) == 2
    with arch.sessions() as session:
        assert set(
            session.scalars(select(TransferRow.rule_id).where(TransferRow.state == "QUEUED"))
        ) == {queued}
    assert evaluate(arch) == 0  # nothing due

    actions = {WAYS[way](arch, rule_id) for rule_id in (held, queued)}
    assert len(actions) == 1
    action = actions.pop()

    with arch.sessions() as session:
        assert session.scalars(select(RuleRow.id).order_by(RuleRow.id)).all() == [other]
        assert (
            session.scalars(
                select(RuleLockRow.id).where(RuleLockRow.rule_id.in_([held, queued]))
            ).all()
            == []
        )
        removed = {
            e.details["rule_id"]: e
            for e in session.scalars(select(EventRow).where(EventRow.action == action))
        }
        assert set(removed) == {held, queued}
        for event in removed.values():
            assert set(event.details) >= DETAILS
            assert event.reason
        assert removed[held].details["tombstoned"] == 3
        # the replicas it held: unlocked, tombstoned, still there until the reaper's pass
        frascati = session.scalars(
            select(ReplicaRow).join(RSERow).where(RSERow.name == "FRASCATI")
        ).all()
        assert len(frascati) == 3
        assert all(r.lock_count == 0 and r.tombstone_at is not None for r in frascati)
        # the queued rule's transfers are cancelled (and no longer belong to a rule)
        states = session.execute(
            select(TransferRow.state, TransferRow.rule_id).where(TransferRow.state != "DONE")
        ).all()
        assert states
        assert all(s == ("CANCELLED", None) for s in states)

    # the rule that counted on those transfers is due again (not after its recheck period)
    assert evaluate(arch) == 1
    drive(arch)
    assert rule_row(arch, other).state == "OK"
    with arch.sessions() as session:
        pic = session.scalars(
            select(ReplicaRow.state).join(RSERow).where(RSERow.name == "PIC")
        ).all()
    assert pic == ["AVAILABLE"] * 3


def test_a_rule_removal_without_a_reason_is_refused_and_changes_nothing(
    archive: Archive, tmp_path: Path
) -> None:
    arch = tuned(archive)
    ingest_dataset(arch, tmp_path / "in", 2)
    rule_id = arch.add_rule(DATASET, copies=1, rses="FRASCATI")
    drive(arch)
    result = CliRunner().invoke(
        app,
        ["rule", "delete", str(rule_id), "--reason", "  "],
        env={"DPPS_WORKSPACE": str(arch.config.workspace)},
    )
    assert result.exit_code != 0
    assert "reason" in result.output
    assert rule_row(arch, rule_id).state == "OK"
    with arch.sessions() as session:
        assert set(
            session.scalars(
                select(ReplicaRow.lock_count).join(RSERow).where(RSERow.name == "FRASCATI")
            )
        ) == {1}


def test_rest_rule_removal_needs_the_rights_of_adding_it_and_a_reason(
    archive: Archive, tmp_path: Path
) -> None:
    arch = tuned(archive)
    ingest_dataset(arch, tmp_path / "in", 2)
    rule_id = arch.add_rule(DATASET, copies=1, rses="FRASCATI")
    service = AccountService(arch.sessions)
    service.add_account("reader1", ["reader"], ["*"])
    service.add_account("am", ["archive-manager"], ["*"])
    reader = {"Authorization": f"Bearer {service.create_token('reader1').token}"}
    am = {"Authorization": f"Bearer {service.create_token('am').token}"}
    url = f"/api/v1/rules/{rule_id}"
    with TestClient(create_app(arch)) as client:
        refused = client.delete(url, params={"reason": "x"}, headers=reader)
        assert refused.status_code == 403
        assert "rule.write" in refused.json()["detail"]
        assert client.delete(url, headers=am).status_code == 400  # no reason
        assert client.delete(url, params={"reason": " "}, headers=am).status_code == 400
        assert rule_row(arch, rule_id).state == "REPLICATING"  # untouched
        assert client.delete(url, params={"reason": "x"}, headers=am).status_code == 200
        assert client.delete(url, params={"reason": "x"}, headers=am).status_code == 404
