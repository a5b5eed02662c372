"""Rules as operators coming from Rucio expect them (issue 14, deliverable 3).

One account asks once (an identical rule is refused unless duplicates are skipped); a locked
rule survives ``rule delete``, ``dpps delete`` and the end of its lifetime until unlocked;
lifetimes are given in seconds or with a unit (``30d``, ``12h``); one ``rule add`` gives
several DIDs a rule each, all or none.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from dpps.bdms.archive import Archive
from dpps.bdms.preservation import reaper
from dpps.catalog.models import RuleRow
from dpps.cli.main import app
from dpps.core.clock import utcnow
from dpps.core.daemon import DaemonContext
from dpps.core.durations import parse_duration
from dpps.core.errors import Conflict, InvalidInput, NotFound
from tests.bdms.helpers import snapshot
from tests.bdms.preservation_helpers import set_time
from tests.bdms.replication_helpers import evaluate, ingest_dataset, rule_row, tuned

UC = "UC-110-1.6"
DATASET = "/ctao/dl0/run1"
OTHER = "/ctao/dl0/run2"

runner = CliRunner()


def cli(archive: Archive, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["-w", str(archive.config.workspace), *args], env={"DPPS_URL": ""})
    return result.exit_code, result.stdout, result.stderr


def rule_ids(archive: Archive) -> list[int]:
    with archive.sessions() as session:
        return list(session.scalars(select(RuleRow.id).order_by(RuleRow.id)))


@pytest.fixture
def datasets(archive: Archive, tmp_path: Path) -> list[str]:
    ingest_dataset(archive, tmp_path / "a", 2, dataset=DATASET)
    ingest_dataset(archive, tmp_path / "b", 2, dataset=OTHER, seed=1)
    return [DATASET, OTHER]


@pytest.mark.verifies_usecase(UC)
def test_an_identical_rule_is_refused_unless_skipped(
    archive: Archive, datasets: list[str]
) -> None:
    first = archive.add_rule(DATASET, copies=1, rses="PIC")
    before = snapshot(archive)
    with pytest.raises(Conflict, match=f"rule {first} already asks for 1 copy"):
        archive.add_rule(DATASET, copies=1, rses="PIC", comment="again")
    assert snapshot(archive) == before
    assert archive.add_rule(DATASET, copies=1, rses="PIC", skip_duplicate=True) == first
    assert snapshot(archive) == before  # skipped: no rule, no event
    # Not duplicates: other copies, other expression, other account (Rucio's key).
    assert archive.add_rule(DATASET, copies=2, rses="PIC|DESY") != first
    assert archive.add_rule(DATASET, copies=1, rses="DESY") != first
    assert archive.as_account("ops").add_rule(DATASET, copies=1, rses="PIC") != first
    assert len(rule_ids(archive)) == 4


@pytest.mark.verifies_usecase(UC)
def test_duplicates_on_the_command_line(archive: Archive, datasets: list[str]) -> None:
    code, out, err = cli(archive, "rule", "add", DATASET, "--rses", "PIC", "--json")
    assert code == 0, err
    [rule_id] = json.loads(out)["rule_ids"]
    code, _, err = cli(archive, "rule", "add", DATASET, "--rses", "PIC")
    assert code == Conflict.exit_code
    assert f"rule {rule_id} already asks" in err
    assert "--skip-duplicate" in err
    code, out, err = cli(
        archive, "rule", "add", DATASET, OTHER, "--rses", "PIC", "--skip-duplicate", "--json"
    )
    assert code == 0, err
    answer = json.loads(out)
    ids = answer["rule_ids"]
    assert ids[0] == rule_id
    assert ids[1] not in (None, rule_id)
    assert rule_ids(archive) == sorted(ids)
    assert answer["kept"] == [rule_id]  # the existing rule is not reported as added
    assert answer["added"] == [ids[1]]
    code, out, err = cli(archive, "rule", "add", DATASET, "--rses", "PIC", "--skip-duplicate")
    assert code == 0, err
    assert f"rule {rule_id} kept (the same rule existed" in out
    assert "added" not in out


@pytest.mark.verifies_usecase(UC)
def test_a_policy_applied_twice_gives_the_same_rules(
    archive: Archive, datasets: list[str]
) -> None:
    first = archive.apply_policy(DATASET, "acada")
    assert archive.apply_policy(DATASET, "acada") == first
    assert rule_ids(archive) == sorted(first)


@pytest.mark.verifies_usecase(UC)
def test_several_dids_get_a_rule_each_all_or_none(archive: Archive, datasets: list[str]) -> None:
    code, out, err = cli(archive, "rule", "add", DATASET, OTHER, "--rses", "PIC", "--json")
    assert code == 0, err
    ids = json.loads(out)["rule_ids"]
    assert [rule_row(archive, i).did_id for i in ids] == [_did_id(archive, d) for d in datasets]
    before = snapshot(archive)
    code, _, err = cli(
        archive, "rule", "add", "/ctao/dl0/run3", "/ctao/dl0/run4", "--rses", "DESY"
    )
    assert code == NotFound.exit_code
    with pytest.raises(NotFound):
        archive.add_rules([DATASET, "/ctao/dl0/nothing"], copies=1, rses="DESY")
    assert snapshot(archive) == before  # the first DID's rule went with the failed second
    archive.add_rule(DATASET, copies=1, rses="DESY|PIC")
    before = snapshot(archive)
    with pytest.raises(Conflict):  # a duplicate anywhere refuses the whole request
        archive.add_rules([OTHER, DATASET], copies=1, rses="DESY|PIC")
    assert snapshot(archive) == before
    with pytest.raises(InvalidInput, match="at least one DID"):
        archive.add_rules([], copies=1, rses="PIC")


def _did_id(archive: Archive, did: str) -> int:
    from dpps.catalog import dids as did_repo

    with archive.sessions() as session:
        return did_repo.get_did(session, archive.did(did)).id


@pytest.mark.verifies_usecase(UC)
def test_a_locked_rule_outlives_delete_and_expiry_until_unlocked(
    archive: Archive, datasets: list[str]
) -> None:
    code, out, err = cli(
        archive, "rule", "add", DATASET, "--rses", "PIC", "--locked", "--lifetime", "1h", "--json"
    )
    assert code == 0, err
    [rule_id] = json.loads(out)["rule_ids"]
    assert rule_row(archive, rule_id).locked
    code, out, _ = cli(archive, "rule", "show", str(rule_id))
    assert "yes: no deletion, no expiry" in out
    code, _, err = cli(archive, "rule", "delete", str(rule_id), "--reason", "cleanup")
    assert code == Conflict.exit_code
    assert "--unlock" in err
    code, _, err = cli(archive, "delete", DATASET, "--reason", "cleanup")
    assert code == Conflict.exit_code
    assert f"locked rule(s) {rule_id}" in err
    assert archive.show(f"{DATASET}").file.did  # the dataset is still there
    set_time(archive, RuleRow, "expires_at", dt.timedelta(seconds=1), id=rule_id)
    reaper.one_pass(DaemonContext(name="reaper"), archive.sessions, archive.config)
    assert rule_row(archive, rule_id).locked  # expired, but locked: still there
    code, out, err = cli(archive, "rule", "update", str(rule_id), "--unlock", "--json")
    assert code == 0, err
    assert json.loads(out)["locked"] is False
    reaper.one_pass(DaemonContext(name="reaper"), archive.sessions, archive.config)
    assert rule_id not in rule_ids(archive)  # unlocked: its lifetime ended long ago


@pytest.mark.verifies_usecase(UC)
def test_lock_and_unlock_a_rule_then_delete_it(archive: Archive, datasets: list[str]) -> None:
    rule_id = archive.add_rule(DATASET, copies=1, rses="PIC")
    assert cli(archive, "rule", "update", str(rule_id), "--lock")[0] == 0
    with pytest.raises(Conflict, match="locked"):
        archive.replication.delete_rule(rule_id, reason="test")
    assert cli(archive, "rule", "update", str(rule_id), "--unlock")[0] == 0
    assert cli(archive, "rule", "delete", str(rule_id), "--reason", "done")[0] == 0
    assert rule_ids(archive) == []


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30d", 30 * 86_400),
        ("12h", 12 * 3600),
        ("90m", 5400),
        ("2w", 14 * 86_400),
        ("3600", 3600),
        ("3600s", 3600),
        ("1.5d", 129_600),
        (" 7D ", 7 * 86_400),
    ],
)
def test_durations_in_the_units_people_use(text: str, seconds: int) -> None:
    assert parse_duration(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "0", "0d", "-1d", "30x", "1e308", "36501d", "d", "nan"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="invalid duration"):
        parse_duration(text)


@pytest.mark.verifies_usecase(UC)
def test_lifetimes_on_the_command_line(archive: Archive, datasets: list[str]) -> None:
    def expires_in(rule_id: int) -> float:
        expires = rule_row(archive, rule_id).expires_at
        assert expires is not None
        return (expires - utcnow()).total_seconds()

    cases = (("PIC", "12h", 12 * 3600), ("DESY", "30d", 30 * 86_400), ("CSCS", "7200", 7200))
    for rse, given, seconds in cases:
        add = ("rule", "add", DATASET, "--rses", rse, "--lifetime", given, "--json")
        code, out, err = cli(archive, *add)
        assert code == 0, err
        [rule_id] = json.loads(out)["rule_ids"]
        assert abs(expires_in(rule_id) - seconds) < 60
        code, out, err = cli(archive, "rule", "update", str(rule_id), "--lifetime", "2d")
        assert code == 0, err
        assert abs(expires_in(rule_id) - 2 * 86_400) < 60
    code, _, err = cli(archive, "rule", "update", str(rule_id), "--lifetime", "30 days")
    assert code == 2
    assert "30d, 12h" in err


@pytest.mark.verifies_usecase(UC)
def test_rule_show_places_the_copies_per_rse(archive: Archive, datasets: list[str]) -> None:
    """Rucio's per-RSE view of a rule: where its locks are, by state."""
    from tests.bdms.replication_helpers import drive

    arch = tuned(archive)
    rule_id = arch.add_rule(DATASET, copies=2, rses="PIC|DESY")
    assert arch.replication.get_rule(rule_id).placement == {}  # not evaluated yet
    evaluate(arch)
    assert arch.replication.get_rule(rule_id).placement == {
        "DESY": {"REPLICATING": 2},
        "PIC": {"REPLICATING": 2},
    }
    drive(arch)
    code, out, err = cli(arch, "rule", "show", str(rule_id), "--json")
    assert code == 0, err
    assert json.loads(out)["placement"] == {"DESY": {"OK": 2}, "PIC": {"OK": 2}}
    code, out, err = cli(arch, "rule", "show", str(rule_id))
    per_rse = out.split("locks per RSE", 1)[1]
    assert "OK" in per_rse
    assert "DESY" in per_rse
    assert "PIC" in per_rse


@pytest.mark.verifies_usecase(UC)
def test_rules_and_jobs_share_one_priority_scale(archive: Archive, datasets: list[str]) -> None:
    from dpps.wms.types import SubmitOptions

    assert rule_row(archive, archive.add_rule(DATASET, copies=1, rses="PIC", priority=10))
    assert SubmitOptions(priority=10).priority == 10
    messages = set()
    for make in (
        lambda: archive.add_rule(DATASET, copies=1, rses="DESY", priority=11),
        lambda: SubmitOptions(priority=11),
    ):
        with pytest.raises(InvalidInput) as caught:
            make()
        messages.add(str(caught.value))
    assert messages == {"priority must be between 0 and 10, not 11"}
    code, _, err = cli(archive, "rule", "add", DATASET, "--rses", "DESY", "--priority", "11")
    assert code == 2  # out of range on the command line: a usage error, as for jobs
    assert "--priority" in err
