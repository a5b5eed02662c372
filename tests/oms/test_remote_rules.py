"""``dpps rule list|show|delete`` locally and against a live server print the same."""

from __future__ import annotations

import json

import pytest

from dpps.oms.server import BackgroundServer
from tests.bdms.replication_helpers import evaluate
from tests.oms.conftest import DL0, DL1_FILE, Seeded
from tests.oms.test_remote_cli import _both, _local, _remote


@pytest.mark.verifies_usecase("UC-110-1.6")
@pytest.mark.verifies_usecase("UC-160-1.1")
def test_rule_commands_print_the_same_locally_and_remotely(
    seeded: Seeded, live: BackgroundServer
) -> None:
    archive = seeded.archive
    on_dl0 = archive.add_rule(DL0, copies=1, rses="CTAO-S", comment="offsite copy")
    on_dl1 = archive.add_rule(DL1_FILE, copies=1, rses="CTAO-N", priority=5)
    evaluate(archive)  # locks and transfers, so the counts shown are not all empty
    details = archive.replication.get_rule(on_dl0)
    assert details.files == 3
    assert details.rule.locks
    assert details.transfers

    for args in (
        ("rule", "list", "--json"),
        ("rule", "list"),
        ("rule", "list", "--state", "replicating", "--json"),
        ("rule", "list", "--did", DL1_FILE, "--json"),
        ("rule", "list", "--limit", "1", "--json"),
        ("rule", "list", "--limit", "1", "--offset", "1", "-o", "csv"),
        ("rule", "show", str(on_dl0), "--json"),
        ("rule", "show", str(on_dl0)),
        ("rule", "show", str(on_dl1), "--json"),
    ):
        local, remote = _both(seeded, live, *args, role="reader")
        assert local[0] == 0, local
        assert local[1] == remote[1], args
    listed = {
        r["id"]: r for r in json.loads(_local(archive, "rule", "list", "--json")[1])["items"]
    }
    assert set(listed) >= {on_dl0, on_dl1}
    assert listed[on_dl0]["locks"]
    assert listed[on_dl0]["did_type"] == "DATASET"

    # Errors: the same exit code and message kind both ways.
    for args, code in (
        (("rule", "show", "999999"), 5),
        (("rule", "list", "--state", "bogus"), 3),
        (("rule", "delete", "999999", "--reason", "gone"), 5),
    ):
        local, remote = _both(seeded, live, *args)
        assert local[0] == remote[0] == code, (local, remote)
        assert remote[2].startswith("error:"), remote
    bogus = _remote(live, seeded.tokens["reader"], "rule", "list", "--state", "bogus")
    assert bogus[2] == _local(archive, "rule", "list", "--state", "bogus")[2]

    # Deleting: a reader is refused and nothing is lost; the rule's last state is printed.
    refused = _remote(
        live, seeded.tokens["reader"], "rule", "delete", str(on_dl0), "--reason", "x"
    )
    assert refused[0] == 8, refused
    assert archive.replication.get_rule(on_dl0).rule.id == on_dl0
    manager = seeded.tokens["archive-manager"]
    delete = ("rule", "delete", str(on_dl0), "--reason", "test", "--json")
    code, out, err = _remote(live, manager, *delete)
    assert code == 0, err
    assert json.loads(out) == listed[on_dl0]
    code, out, _ = _local(archive, "rule", "delete", str(on_dl1), "--reason", "test", "--json")
    assert code == 0
    assert json.loads(out) == listed[on_dl1]
    remaining = {r.id for r in archive.replication.list_rules()}
    assert on_dl0 not in remaining
    assert on_dl1 not in remaining


@pytest.mark.verifies_usecase("UC-110-1.6")
def test_rucio_style_rules_over_rest(seeded: Seeded, live: BackgroundServer) -> None:
    """Several DIDs in one ``rule add``, locked rules, lifetimes with units and refused
    duplicates work over REST as locally (issue 14, deliverable 3)."""
    manager = seeded.tokens["archive-manager"]
    add = ("rule", "add", DL0, DL1_FILE, "--rses", "PIC", "--lifetime", "12h")
    code, out, err = _remote(live, manager, *add, "--locked", "--json")
    assert code == 0, err
    ids = json.loads(out)["rule_ids"]
    assert len(ids) == 2
    for rule_id in ids:
        rule = seeded.archive.replication.rule(rule_id)
        assert rule.locked
        assert rule.expires_at is not None
        assert 11.9 * 3600 < (rule.expires_at - rule.created_at).total_seconds() < 12.1 * 3600
    code, _, err = _remote(live, manager, *add)
    assert code == 6, err
    assert "already asks" in err
    code, out, err = _remote(live, manager, *add, "--skip-duplicate", "--json")
    assert code == 0, err
    assert json.loads(out)["rule_ids"] == ids
    code, _, err = _remote(live, manager, "rule", "delete", str(ids[0]), "--reason", "test")
    assert code == 6, err
    assert "locked" in err
    code, out, err = _remote(live, manager, "rule", "update", str(ids[0]), "--unlock", "--json")
    assert code == 0, err
    assert json.loads(out)["locked"] is False
    code, _, err = _remote(live, manager, "rule", "delete", str(ids[0]), "--reason", "test")
    assert code == 0, err
