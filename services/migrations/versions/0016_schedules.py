"""Agents' schedules (docs/staffing.md#schedules): every upload is a version,
never edited; the schedule in force for an agent-day is that of the latest
upload that speaks for it, so a payroll period closed before a change can be
recomputed as it was (as of a version) and the change shows as an adjustment.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "schedule_uploads",
        sa.Column("version", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("uploaded_at", TS, nullable=False),
        sa.Column("uploaded_by", sa.Text, nullable=False),
        sa.Column("first_day", sa.Date, nullable=False),
        sa.Column("last_day", sa.Date, nullable=False),
        sa.Column("agent_days", sa.Integer, nullable=False),
        sa.Column("segments", sa.Integer, nullable=False),
        sa.Column("checksum", sa.Text, nullable=False),
        sa.Column("note", sa.Text),
    )
    # each agent-day an upload speaks for (a day off included)
    op.create_table(
        "schedule_days",
        sa.Column("agent_id", sa.Text, primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("version", sa.BigInteger, primary_key=True),
    )
    op.create_index("ix_schedule_days_day", "schedule_days", ["day"])
    op.create_table(
        "schedule_segments",
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("agent_id", sa.Text, nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("start_us", sa.BigInteger, nullable=False),
        sa.Column("end_us", sa.BigInteger, nullable=False),
        sa.Column("activity", sa.Text, nullable=False),
    )
    op.create_index("ix_schedule_segments_key", "schedule_segments", ["agent_id", "day", "version"])


def downgrade() -> None:
    op.drop_table("schedule_segments")
    op.drop_table("schedule_days")
    op.drop_table("schedule_uploads")
