"""rules: evaluation request counters (generation, evaluated_generation)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 16:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rules", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("generation", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("evaluated_generation", sa.Integer(), nullable=False, server_default="0")
        )
    # A rule already due keeps being due: one request outstanding.
    op.execute("UPDATE rules SET generation = 1 WHERE next_evaluation_at IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("rules", schema=None) as batch_op:
        batch_op.drop_column("evaluated_generation")
        batch_op.drop_column("generation")
