"""kpi_buckets.fcr_unidentified: answered calls with no customer to chain.

A call whose caller id is absent or withheld ("0", "anonymous", ...:
kpi.withheld_caller_ids) is counted everywhere but is not a first-call-resolution
candidate; this counts how many were left out, so an FCR rate over a fifth of the
calls says so. Rows written before this migration count 0: those calls were
candidates then.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a constant default: Postgres adds the column without rewriting the table
    op.add_column(
        "kpi_buckets",
        sa.Column("fcr_unidentified", sa.BigInteger, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_column("kpi_buckets", "fcr_unidentified")
