"""dids: is_open, so that a dataset or container can be closed (Rucio's closed datasets)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 13:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every existing DID stays open: closing is a deliberate act of its owner.
    with op.batch_alter_table("dids", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("is_open", sa.Boolean(), nullable=False, server_default=sa.true())
        )


def downgrade() -> None:
    with op.batch_alter_table("dids", schema=None) as batch_op:
        batch_op.drop_column("is_open")
