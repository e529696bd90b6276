"""stream_offsets: where each topic partition's processing got to, in Postgres.

The broker's committed offsets say where the workers are; they vanish with the
broker's memory (the embedded broker) or a deleted topic. Kept here, in the same
transaction as each batch's figures, they let the worker tell that the broker
lost records it had already counted, and re-derive what those records carried to
the FCR stage (services/kpi_stream/reconcile.py, docs/operations.md).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stream_offsets",
        sa.Column("topic", sa.Text, primary_key=True),
        sa.Column("part", sa.Integer, primary_key=True),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("stream_offsets")
