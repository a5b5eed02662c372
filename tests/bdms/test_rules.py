"""Replication rules: validation, listing, deletion, and the `dpps rule` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from dpps.bdms.archive import Archive
from dpps.bdms.replication.rse_expression import RSEExpressionError
from dpps.catalog.engine import transaction
from dpps.catalog.models import EventRow, ReplicaRow, RuleRow, TransferRow
from dpps.cli.main import app
from dpps.core.errors import Conflict, InvalidInput, NotFound
from tests.bdms.helpers import snapshot
from tests.bdms.replication_helpers import drive, evaluate, ingest_dataset, rule_row, tuned

runner = CliRunner()


def cli(archive: Archive, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["-w", str(archive.config.workspace), *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def dataset(archive: Archive, tmp_path: Path) -> list[str]:
    return ingest_dataset(archive, tmp_path / "in", 3)


def _rule_count(archive: Archive) -> int:
    with archive.sessions() as session:
        return len(session.scalars(select(RuleRow.id)).all())


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"rses": "offsite&contry=ES"}, RSEExpressionError, "position 9"),
        ({"rses": "CTAO-N|PIC", "copies": 3}, InvalidInput, "fewer than the 3 copies"),
        ({"rses": "PIC", "source": "nowhere"}, RSEExpressionError, "'nowhere'"),
        ({"rses": "PIC", "source": "country=XX"}, InvalidInput, "selects no RSE"),
        ({"rses": "PIC", "copies": 0}, InvalidInput, "at least 1"),
        ({"rses": "PIC", "priority": 11}, InvalidInput, "between 0 and 10"),
        ({"rses": "  "}, InvalidInput, "empty RSE expression"),
    ],
)
def test_bad_rules_are_refused_and_change_nothing(
    archive: Archive,
    dataset: list[str],
    kwargs: dict[str, object],
    error: type[Exception],
    message: str,
) -> None:
    before = snapshot(archive)
    with pytest.raises(error, match=message):
        archive.add_rule("/ctao/dl0/run1", **{"copies": 1, **kwargs})  # type: ignore[arg-type]
    assert snapshot(archive) == before
    assert _rule_count(archive) == 0
    with pytest.raises(NotFound):
        archive.add_rule("/no/such/dataset", copies=1, rses="PIC")


def test_list_show_and_delete(archive: Archive, dataset: list[str]) -> None:
    arch = tuned(archive)
    kept = arch.add_rule("/ctao/dl0/run1", copies=1, rses="CSCS")
    gone = arch.add_rule("/ctao/dl0/run1", copies=2, rses="PIC|DESY", comment="test")
    evaluate(arch)
    infos = arch.replication.list_rules()
    assert [(i.id, i.state, i.locks) for i in infos] == [
        (kept, "REPLICATING", {"REPLICATING": 3}),
        (gone, "REPLICATING", {"REPLICATING": 6}),
    ]
    assert [i.id for i in arch.replication.list_rules(did=dataset[0])] == []  # on the dataset
    assert [i.id for i in arch.replication.list_rules(did="/ctao/dl0/run1")] == [kept, gone]
    assert arch.replication.list_rules(state="ok") == []
    with pytest.raises(InvalidInput, match="unknown rule state"):
        arch.replication.list_rules(state="DONE")
    details = arch.replication.get_rule(gone)
    assert details.files == 3
    assert details.rse_names == ["DESY", "PIC"]
    assert details.transfers == {"QUEUED": 6}
    assert details.rule.comment == "test"
    with pytest.raises(NotFound):
        arch.replication.get_rule(999)

    info = arch.replication.delete_rule(gone, reason="no longer needed")
    assert info.id == gone
    assert [i.id for i in arch.replication.list_rules()] == [kept]
    with arch.sessions() as session:
        states = session.scalars(select(TransferRow.state).order_by(TransferRow.id)).all()
        assert sorted(states) == ["CANCELLED"] * 6 + ["QUEUED"] * 3
        event = session.scalars(select(EventRow).where(EventRow.action == "rule.delete")).one()
        assert event.reason == "no longer needed"
        assert event.details["rses"] == "PIC|DESY"
        assert event.details["rule_id"] == gone
    drive(arch)
    assert rule_row(arch, kept).state == "OK"
    with pytest.raises(NotFound):
        arch.replication.delete_rule(gone, reason="again")
    with pytest.raises(InvalidInput, match="reason"):
        arch.replication.delete_rule(kept, reason=" ")
    with transaction(arch.sessions) as session:
        session.execute(update(RuleRow).where(RuleRow.id == kept).values(locked=True))
    with pytest.raises(Conflict, match="locked"):
        arch.replication.delete_rule(kept, reason="x")


def test_deleting_a_rule_unlocks_its_replicas(archive: Archive, dataset: list[str]) -> None:
    arch = tuned(archive)
    rule_id = arch.add_rule("/ctao/dl0/run1", copies=1, rses="FRASCATI")
    drive(arch)
    with arch.sessions() as session:
        assert sorted(session.scalars(select(ReplicaRow.lock_count))) == [0, 0, 0, 1, 1, 1]
    arch.replication.delete_rule(rule_id, reason="test")
    with arch.sessions() as session:
        assert set(session.scalars(select(ReplicaRow.lock_count))) == {0}


@pytest.mark.verifies_usecase("UC-110-1.6")
def test_rule_commands(archive: Archive, dataset: list[str]) -> None:
    for command in (["rule", "add"], ["rule", "list"], ["rule", "show"], ["rule", "delete"]):
        code, out, _ = cli(archive, *command, "--help")
        assert code == 0
        assert "--json" in out
    code, out, err = cli(
        archive,
        "rule",
        "add",
        "/ctao/dl0/run1",
        "--copies",
        "2",
        "--rses",
        "offsite&disk",
        "--lifetime",
        "30d",
        "--priority",
        "4",
        "--activity",
        "test",
        "--json",
    )
    assert code == 0, err
    [rule_id] = json.loads(out)["rule_ids"]
    code, out, err = cli(archive, "rule", "add", "/ctao/dl0/run1", "--policy", "acada", "--json")
    assert code == 0, err
    assert len(json.loads(out)["rule_ids"]) == 2
    code, out, _ = cli(archive, "rule", "list", "--state", "REPLICATING", "--json")
    rules = json.loads(out)["items"]
    assert [r["policy"] for r in rules] == [None, "acada", "acada"]
    assert rules[0]["expires_at"] is not None
    assert (rules[0]["copies"], rules[0]["priority"], rules[0]["activity"]) == (2, 4, "test")
    evaluate(archive)
    code, out, _ = cli(archive, "rule", "show", str(rule_id), "--json")
    shown = json.loads(out)
    assert shown["rule"]["locks"] == {"REPLICATING": 6}
    assert shown["rse_names"] == ["CSCS", "DESY", "FRASCATI", "PIC"]
    code, out, _ = cli(archive, "rule", "show", str(rule_id))
    assert code == 0
    assert "offsite&disk -> CSCS, DESY, FRASCATI, PIC" in out
    code, out, _ = cli(archive, "rule", "delete", str(rule_id), "--reason", "test", "--json")
    assert code == 0
    assert json.loads(out)["id"] == rule_id
    code, out, _ = cli(archive, "rule", "list", "--json")
    assert [r["id"] for r in json.loads(out)["items"]] == [rule_id + 1, rule_id + 2]
    code, out, _ = cli(archive, "rule", "list")
    assert code == 0
    assert "copies" in out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["rule", "add", "/ctao/dl0/run1", "--rses", "PICC"], 3, "did you mean 'PIC'?"),
        (["rule", "add", "/ctao/dl0/run1"], 3, "give --rses"),
        (["rule", "add", "/ctao/dl0/run1", "--policy", "acada", "--rses", "PIC"], 3, "replaces"),
        (["rule", "add", "/ctao/dl0/run1", "--policy", "nope"], 5, "unknown replication policy"),
        (["rule", "add", "/no/such", "--rses", "PIC"], 5, "no such DID"),
        (["rule", "show", "42"], 5, "no rule 42"),
        (["rule", "delete", "42", "--reason", "x"], 5, "no rule 42"),
        (["rule", "list", "--state", "bogus"], 3, "unknown rule state"),
        (["rule", "list", "--did", "bad did"], 3, ""),
    ],
)
def test_rule_command_errors_are_one_line_and_an_exit_code(
    archive: Archive, dataset: list[str], args: list[str], code: int, message: str
) -> None:
    before = snapshot(archive)
    got, _, err = cli(archive, *args)
    assert got == code, err
    assert message in err
    assert err.startswith("error:")
    assert "Traceback" not in err
    assert snapshot(archive) == before
