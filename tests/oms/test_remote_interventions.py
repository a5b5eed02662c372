"""``dpps rule update`` and ``dpps transfer list|retry``: an operator's interventions, locally
and against a live server, with the same output, the same refusals and the same exit codes."""

from __future__ import annotations

import json

import pytest

from dpps.oms.server import BackgroundServer
from tests.oms.conftest import DL0, DL1_FILE, Seeded
from tests.oms.test_remote_cli import _both, _local, _remote
from tests.oms.write_cases import failed_transfer


def _rule(seeded: Seeded, rule_id: int) -> dict[str, object]:
    listed = json.loads(_local(seeded.archive, "rule", "list", "--json")[1])["items"]
    return next(r for r in listed if r["id"] == rule_id)


@pytest.mark.verifies_usecase("UC-110-1.6")
@pytest.mark.verifies_usecase("UC-160-1.1")
def test_rule_update_both_ways(seeded: Seeded, live: BackgroundServer) -> None:
    rule_id = seeded.archive.add_rule(DL1_FILE, copies=1, rses="PIC")
    dpm = seeded.tokens["data-processing-manager"]
    update = ("--priority", "5", "--lifetime", "10d", "--comment", "campaign input", "--json")
    code, out, err = _remote(live, dpm, "rule", "update", str(rule_id), *update)
    assert code == 0, err
    changed = json.loads(out)
    assert changed == _rule(seeded, rule_id)  # what the library says the rule now is
    assert (changed["priority"], changed["comment"]) == (5, "campaign input")
    assert changed["expires_at"] is not None
    code, out, err = _local(seeded.archive, "rule", "update", str(rule_id), "--suspend", "--json")
    assert code == 0, err
    assert json.loads(out)["state"] == "SUSPENDED"
    reader = _remote(live, seeded.tokens["reader"], "rule", "update", str(rule_id), "--resume")
    assert reader[0] == 8, reader
    assert _rule(seeded, rule_id)["state"] == "SUSPENDED"  # nothing changed
    code, out, err = _remote(live, dpm, "rule", "update", str(rule_id), "--resume", "--json")
    assert code == 0, err
    assert json.loads(out)["state"] == "REPLICATING"
    assert _rule(seeded, rule_id)["next_evaluation_at"] is not None  # due at once
    on_dl0 = seeded.archive.add_rule(DL0, copies=1, rses="PIC")
    dl0 = _remote(live, dpm, "rule", "update", str(on_dl0), "--priority", "1")
    assert dl0[0] == 8, dl0  # rules on raw data: archive managers only
    for args, exit_code in (
        (("rule", "update", str(rule_id), "--resume"), 6),  # not suspended
        (("rule", "update", str(rule_id)), 3),  # nothing to change
        (("rule", "update", str(rule_id), "--lifetime", "1", "--no-lifetime"), 3),
        (("rule", "update", "999999", "--priority", "1"), 5),
    ):
        local, remote = _both(seeded, live, *args)
        assert local[0] == remote[0] == exit_code, (args, local, remote)


@pytest.mark.verifies_usecase("UC-110-1.6")
@pytest.mark.verifies_usecase("UC-160-1.1")
def test_transfer_list_and_retry_both_ways(seeded: Seeded, live: BackgroundServer) -> None:
    first, second = failed_transfer(seeded), failed_transfer(seeded, DL1_FILE, "CTAO-S")
    for args in (
        ("transfer", "list", "--json"),
        ("transfer", "list"),
        ("transfer", "list", "--state", "failed", "--json"),
        ("transfer", "list", "--errors", "--rse", "PIC", "--json"),
        ("transfer", "list", "--limit", "1", "--json"),
        ("transfer", "list", "--offset", "1", "-o", "plain"),
    ):
        local, remote = _both(seeded, live, *args, role="reader")
        assert local[0] == 0, local
        assert local[1] == remote[1], args
    failed = json.loads(
        _local(seeded.archive, "transfer", "list", "--state", "FAILED", "--json")[1]
    )["items"]
    assert {t["id"] for t in failed} == {first, second}
    assert {t["error"] for t in failed} == {"destination unreachable"}

    reader = _remote(live, seeded.tokens["reader"], "transfer", "retry", str(first))
    assert reader[0] == 8, reader
    code, out, err = _remote(
        live, seeded.tokens["operator"], "transfer", "retry", str(first), "--json"
    )
    assert code == 0, err
    retried = json.loads(out)
    assert (retried["id"], retried["state"], retried["attempts"], retried["error"]) == (
        first,
        "QUEUED",
        0,
        None,
    )
    code, out, err = _local(seeded.archive, "transfer", "retry", str(second), "--json")
    assert code == 0, err
    assert json.loads(out)["state"] == "QUEUED"
    for args, exit_code in (
        (("transfer", "retry", str(first)), 6),  # already queued
        (("transfer", "retry", "999999"), 5),
        (("transfer", "list", "--state", "bogus"), 3),
    ):
        local, remote = _both(seeded, live, *args)
        assert local[0] == remote[0] == exit_code, (args, local, remote)
        assert local[2].split(":")[0] == remote[2].split(":")[0] == "error"
