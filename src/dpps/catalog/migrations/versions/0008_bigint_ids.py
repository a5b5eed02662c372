"""64-bit ids, on PostgreSQL, for the tables whose rows come with activity

PostgreSQL's ``integer`` ends at 2^31 - 1 = 2,147,483,647; past it every insert fails. The
archive adds about 3 million DL0 files a year for 30 years and reprocesses everything yearly
(issue 13), so that it holds a few hundred million files in the end. Rows that come with the
files stay below the limit; rows that come with what is done to the files do not:

* ``events``: 2.5 per file at registration, one more per transfer, audit or deletion: 750M at
  300M files before anything else happens to them.
* ``transfers``: one per copy queued, and the rule evaluator's ``INSERT ... ON CONFLICT DO
  NOTHING`` draws an id from the sequence for every open transfer it queues again.
* ``rule_locks``: files x copies per rule, deleted and inserted again as rules are
  re-evaluated, expire and are added.
* ``stage_requests``: one per recall from tape; reprocessing everything from tape every year
  recalls the whole archive again (3M DL0 files in year 1, 90M in year 30: 1.4 billion).
* ``jobs``, ``workflows``, ``job_files``, ``job_events``, ``transformation_files``: the same
  yearly reprocessing, a job per file or group at each level, several history rows and files
  per job: billions. ``job_files.job_id``, ``job_events.job_id``, ``jobs.workflow_id`` and
  ``transformation_files.workflow_id`` refer to them and widen with them.

Unchanged, because they grow with the files and stay far below 2^31 even at 300M files:
``dids`` (300M files plus their datasets), ``replicas`` (300M x 2.5 = 750M, a third of the
range: rows are removed only by deletions and copies that failed for good),
``attachments`` (one or two per file). ``rules`` are made per dataset, and ``rses``,
``accounts``, ``tokens``, ``heartbeats``, ``transformations`` and ``campaigns`` are counted in
thousands. Should the archive ever approach a billion files, ``dids`` and ``replicas`` need
the same change, and every column that refers to ``dids.id`` with them.

Each sequence becomes ``bigint`` as well: ``ALTER COLUMN ... TYPE bigint`` leaves a serial's
sequence an ``integer`` one, which stops at 2^31 - 1 all the same.

On a live catalog this rewrites each table and its indexes under an exclusive lock (nothing
reads or writes them meanwhile, until the upgrade commits): about 350,000 rows a second while
the tables fit in memory, 1.2-1.5x a ``VACUUM FULL`` of them, measured with
``benchmarks/bench_migration_bigint.py`` (docs/deployment.md, "Migration 0008"). SQLite's
INTEGER is 64-bit already and must stay the rowid, so nothing changes there.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 23:40:00.000000
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

from dpps.core.errors import Conflict

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

#: Each table's columns that become bigint: its id, then its columns referring to a widened
#: id (PostgreSQL accepts a foreign key from an integer to a bigint while they differ).
WIDENED: dict[str, tuple[str, ...]] = {
    "events": ("id",),
    "transfers": ("id",),
    "rule_locks": ("id",),
    "stage_requests": ("id",),
    "job_events": ("id", "job_id"),
    "job_files": ("id", "job_id"),
    "transformation_files": ("id", "workflow_id"),
    "jobs": ("id", "workflow_id"),
    "workflows": ("id",),
}


def upgrade() -> None:
    _retype("bigint")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    limit = 2**31 - 1
    for table, columns in WIDENED.items():
        sequence = bind.scalar(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table})
        highest = {
            f"{sequence} (the next id)": bind.scalar(text(f"SELECT last_value FROM {sequence}"))
        }
        for column in columns:
            highest[f"{table}.{column}"] = bind.scalar(
                text(f'SELECT max("{column}") FROM "{table}"')
            )
        for where, value in highest.items():
            if value is not None and value > limit:
                raise Conflict(
                    f"cannot downgrade: {where} is at {value}, beyond a 32-bit integer "
                    f"({limit}); such a catalog can only run with revision 0008 or later"
                )
    _retype("integer")


def _retype(kind: str) -> None:
    """All of each table's columns in one ALTER TABLE (one rewrite), then its sequence."""
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table, columns in WIDENED.items():
        changes = ", ".join(f'ALTER COLUMN "{c}" TYPE {kind}' for c in columns)
        op.execute(f'ALTER TABLE "{table}" {changes}')
        sequence = bind.scalar(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table})
        op.execute(f"ALTER SEQUENCE {sequence} AS {kind}")
