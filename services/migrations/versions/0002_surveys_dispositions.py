"""Surveys and dispositions: surveys, satisfied, complaints, sales, sales_amount_cents.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NEW = ("surveys", "satisfied", "complaints", "sales", "sales_amount_cents")


def upgrade() -> None:
    for name in NEW:
        op.add_column(
            "kpi_buckets", sa.Column(name, sa.BigInteger, nullable=False, server_default="0")
        )


def downgrade() -> None:
    for name in NEW:
        op.drop_column("kpi_buckets", name)
