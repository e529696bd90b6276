"""Closed pay periods: each version's figures, immutable once written.

A version is inserted once and never updated (a trigger refuses UPDATE and
DELETE), so a figure payroll read can only change through a new version.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "period_versions",
        sa.Column("period", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("period_start", TS, nullable=False),
        sa.Column("period_end", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("fcr_provisional", sa.Boolean, nullable=False),
        sa.Column("definitions", sa.JSON, nullable=False),
        sa.Column("checksum", sa.Text, nullable=False),
        sa.Column("figures", sa.JSON, nullable=False),
        sa.CheckConstraint("version >= 1", name="period_versions_version"),
    )
    op.execute(
        """
        CREATE FUNCTION period_versions_immutable() RETURNS trigger AS $$
        BEGIN
          RAISE EXCEPTION 'period_versions: version % of % is immutable; restate instead',
            OLD.version, OLD.period;
        END $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        """
        CREATE TRIGGER period_versions_immutable BEFORE UPDATE OR DELETE ON period_versions
          FOR EACH ROW EXECUTE FUNCTION period_versions_immutable();
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER period_versions_immutable ON period_versions")
    op.execute("DROP FUNCTION period_versions_immutable()")
    op.drop_table("period_versions")
