"""What a site's transfer agent costs the catalog over the WAN: statements (each one round
trip to PostgreSQL) per claimed batch and per file, counted with a SQLAlchemy event hook on
the agent's own engine while it copies a rule's files into its site."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from dpps.bdms.archive import Archive
from dpps.bdms.transfer.daemon import TransferDaemon
from dpps.cli.daemon_cmds import partition
from dpps.core.daemon import DaemonContext
from tests.bdms.replication_helpers import evaluate, ingest_dataset, tuned

FILES = 40


@pytest.mark.verifies_usecase("UC-190-1.2")
def test_a_site_transfer_agent_costs_a_bounded_number_of_round_trips_per_file(
    archive: Archive, tmp_path: Path
) -> None:
    arch = tuned(archive, {"transfers": {"batch": FILES, "threads": 4}})
    ingest_dataset(arch, tmp_path / "in", FILES)
    arch.add_rule("/ctao/dl0/run1", copies=1, rses="PIC")
    evaluate(arch)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]).split(None, 1)[0].upper())

    pic = replace(arch.context, rses=partition(arch.config, "transfer", "PIC", None))
    event.listen(arch.engine, "before_cursor_execute", count)
    try:
        with TransferDaemon(pic) as agent:
            done = agent.run_once(DaemonContext("transfer"))
    finally:
        event.remove(arch.engine, "before_cursor_execute", count)
    assert done == FILES
    per_file = len(statements) / FILES
    print(f"\n{len(statements)} statements for {FILES} files: {per_file:.2f} per file")
    print(sorted(Counter(statements).items()))
    # a batch (claim, copies, outcomes, rule settle) costs a fixed number of statements,
    # independent of its size: well under 2 round trips per file at this batch size
    assert per_file <= 2, statements
