"""dids: listing indexes that end with the name, the order every listing is returned in

Measured on a PostgreSQL catalog of 1,000,000 files (docs/performance.md, "Catalog at
production scale"): ``ls observing_night=...`` and ``ls data_level=DL1 and tel_id=7`` (limit
100, ordered by name) walked the name index from the first name, filtering every row on the
way, because the planner takes matches to be spread evenly over the names while an archive's
names group them (site, level, night, observation): 515 ms and 780 ms at 1M files, growing
with the archive. With (key, name) the database reads the first 100 matches in order and
stops (25 ms and 76 ms under a load of 18 on 2 cores). The night's single-column index is a
prefix of the new one and goes. A (data_level, name) and a (tel_id, name) index were tried
too: the first made the planner walk every DL0 name for an obs_id range (55 -> 441 ms).

``ix_dids_scope_name_latest`` goes: the unique (scope, name, version) index finds a name's
versions as well (a name has one or a few), and it cost about 130 bytes per file.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 17:50:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dids", schema=None) as batch_op:
        batch_op.drop_index("ix_dids_observing_night")
        batch_op.drop_index("ix_dids_scope_name_latest")
        batch_op.create_index("ix_dids_night_name", ["observing_night", "name"], unique=False)
        batch_op.create_index(
            "ix_dids_level_tel_name", ["data_level", "tel_id", "name"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("dids", schema=None) as batch_op:
        batch_op.drop_index("ix_dids_level_tel_name")
        batch_op.drop_index("ix_dids_night_name")
        batch_op.create_index(
            "ix_dids_scope_name_latest", ["scope", "name", "is_latest"], unique=False
        )
        batch_op.create_index("ix_dids_observing_night", ["observing_night"], unique=False)
