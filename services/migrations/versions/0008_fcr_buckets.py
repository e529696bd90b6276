"""FCR counters move from kpi_buckets to their own narrow table, kpi_fcr_buckets.

The FCR stage is the only writer of these four counters. As columns of the call
rows, each of its updates rewrote a 50-column row and waited for call assembly's
row locks on the same recent minutes (services/core/kpi.py).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# frozen here: later changes to services.core.kpi must not change this migration
FCR = ("fcr_candidates", "fcr_final", "fcr_resolved", "fcr_failed")
_COLS = ", ".join(FCR)


def upgrade() -> None:
    op.create_table(
        "kpi_fcr_buckets",
        sa.Column("kind", sa.Text, primary_key=True),
        sa.Column("entity_id", sa.Text, primary_key=True),
        sa.Column("bucket", sa.DateTime(timezone=True), primary_key=True),
        *(sa.Column(n, sa.BigInteger, nullable=False, server_default="0") for n in FCR),
    )
    nonzero = " OR ".join(f"{c} <> 0" for c in FCR)
    op.execute(
        f"INSERT INTO kpi_fcr_buckets (kind, entity_id, bucket, {_COLS}) "
        f"SELECT kind, entity_id, bucket, {_COLS} FROM kpi_buckets WHERE {nonzero}"
    )
    for c in FCR:
        op.drop_column("kpi_buckets", c)


def downgrade() -> None:
    for c in FCR:
        column = sa.Column(c, sa.BigInteger, nullable=False, server_default="0")
        op.add_column("kpi_buckets", column)
    op.execute(
        f"INSERT INTO kpi_buckets (kind, entity_id, bucket, {_COLS}) "
        f"SELECT kind, entity_id, bucket, {_COLS} FROM kpi_fcr_buckets "
        "ON CONFLICT (kind, entity_id, bucket) DO UPDATE SET "
        + ", ".join(f"{c} = EXCLUDED.{c}" for c in FCR)
    )
    op.drop_table("kpi_fcr_buckets")
