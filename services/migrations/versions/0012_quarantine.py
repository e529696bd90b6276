"""The quarantine: events set aside because processing them fails for a reason no
retry can cure (docs/operations.md).

A batch that fails that way is narrowed down (bisected) to the events that cause
it; those are kept here with the error, and everything else is counted. One row per
item of a Kafka record: a replay of the same record after a crash finds its row.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "quarantine",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("stage", sa.Text, nullable=False),  # events | facts
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("part", sa.Integer, nullable=False),
        sa.Column("record_offset", sa.BigInteger, nullable=False),  # -1: not known
        sa.Column("item", sa.Integer, nullable=False),  # index in the record; -1: all of it
        sa.Column("event_id", sa.Text),
        # text, not json: what could not be stored may hold what json columns refuse
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("quarantined_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("replayed_at", TS),
    )
    op.create_index(
        "quarantine_item",
        "quarantine",
        ["stage", "part", "record_offset", "item"],
        unique=True,
        postgresql_where=sa.text("record_offset >= 0"),
    )
    op.create_index(
        "quarantine_waiting", "quarantine", ["id"], postgresql_where=sa.text("replayed_at IS NULL")
    )


def downgrade() -> None:
    op.drop_table("quarantine")
