"""A rule never reads OK for files it has not evaluated (issue 15, note 12d).

Attaching files to a dataset an OK rule covers used to leave the rule OK until the evaluator's
next pass: anyone looking in between (an operator, ``dpps health``, a reaper deciding whether
the on-site copy may go) was told the new files were safe. The attach now moves the covering
OK rules to REPLICATING in its own transaction.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from dpps.bdms.archive import Archive
from dpps.catalog.models import EventRow
from tests.bdms.replication_helpers import drive, ingest_dataset, replicas, rule_row, tuned


@pytest.mark.verifies_usecase("UC-110-1.6")
def test_attaching_files_reopens_an_ok_rule_until_they_are_copied(
    archive: Archive, tmp_path: Path
) -> None:
    arch = tuned(archive)
    ingest_dataset(arch, tmp_path / "first", 2)
    rule_id = arch.add_rule("/ctao/dl0/run1", copies=1, rses="PIC")
    ingest_dataset(arch, tmp_path / "other", 1, dataset="/ctao/dl0/run2", seed=7)
    other = arch.add_rule("/ctao/dl0/run2", copies=1, rses="DESY")  # not covering: untouched
    drive(arch)
    assert rule_row(arch, rule_id).state == "OK"
    assert rule_row(arch, other).state == "OK"

    ingest_dataset(arch, tmp_path / "more", 2, seed=1)  # attached to /ctao/dl0/run1
    rule = rule_row(arch, rule_id)
    assert rule.state == "REPLICATING"  # before any daemon ran
    assert rule.next_evaluation_at is not None
    assert rule_row(arch, other).state == "OK"
    with arch.sessions() as session:
        reasons = session.scalars(
            select(EventRow.reason).where(
                EventRow.action == "rule.state",
                EventRow.details["to"].as_string() == "REPLICATING",
            )
        ).all()
    assert any("attached" in (r or "") for r in reasons), reasons

    drive(arch)
    assert rule_row(arch, rule_id).state == "OK"
    held = replicas(arch)
    assert sum(1 for rses in held.values() if "PIC" in rses) == 4


def test_attaching_files_already_present_keeps_the_rule_ok(
    archive: Archive, tmp_path: Path
) -> None:
    """Registering the same files again attaches nothing new: the rule has nothing to do."""
    arch = tuned(archive)
    ingest_dataset(arch, tmp_path / "first", 2)
    rule_id = arch.add_rule("/ctao/dl0/run1", copies=1, rses="PIC")
    drive(arch)
    assert rule_row(arch, rule_id).state == "OK"
    ingest_dataset(arch, tmp_path / "first", 2)  # the same bytes under the same names
    assert rule_row(arch, rule_id).state == "OK"
