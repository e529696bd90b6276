"""Which worker last wrote each events partition.

The worker computes a batch from its cache before taking the partition's lock, so
that the next batch's CPU work overlaps the previous batch's writes. It may only
commit that result if no other worker wrote the partition in between; this table
is how it knows (services/kpi_stream/processor.py).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stream_owners",
        sa.Column("part", sa.Integer, primary_key=True),
        sa.Column("owner", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("stream_owners")
