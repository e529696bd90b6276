"""Core pipeline: minute buckets, call state, FCR facts, watermark, worker stats.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copy of the counters at this revision: later revisions add columns with
# their own migrations, so this file must not follow services.core.kpi.COUNTERS.
COUNTERS_0001 = (
    "offered", "answered", "abandoned", "short_abandoned", "timed_out", "in_queue",
    "answered_within_sl", "abandoned_within_sl", "wait_answered_us", "handled", "talk_us",
    "hold_us", "acw_us", "transfers", "presented", "ring_count", "ring_us",
    "fcr_candidates", "fcr_final", "fcr_resolved", "fcr_failed",
)  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "kpi_buckets",
        sa.Column("kind", sa.Text, primary_key=True),
        sa.Column("entity_id", sa.Text, primary_key=True),
        sa.Column("bucket", sa.DateTime(timezone=True), primary_key=True),
        *(sa.Column(n, sa.BigInteger, nullable=False, server_default="0") for n in COUNTERS_0001),
    )
    op.create_index("ix_kpi_buckets_kind_bucket", "kpi_buckets", ["kind", "bucket"])
    op.create_table(
        "calls",
        sa.Column("call_id", sa.Text, primary_key=True),
        sa.Column("part", sa.Integer, nullable=False),
        sa.Column("offered_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("events", sa.JSON, nullable=False),
        sa.Column("contrib", sa.JSON),
        sa.Column("fact", sa.JSON),
    )
    op.create_index("ix_calls_updated_at", "calls", ["updated_at"])
    op.create_table(
        "fcr_calls",
        sa.Column("call_id", sa.Text, primary_key=True),
        sa.Column("customer", sa.Text, nullable=False),
        sa.Column("part", sa.Integer, nullable=False),
        sa.Column("offered_us", sa.BigInteger, nullable=False),
        sa.Column("pending", sa.Boolean, nullable=False),
        sa.Column("fact", sa.JSON, nullable=False),
        sa.Column("contrib", sa.JSON),
    )
    op.create_index("ix_fcr_calls_customer", "fcr_calls", ["customer"])
    op.create_index(
        "ix_fcr_calls_pending",
        "fcr_calls",
        ["part", "offered_us"],
        postgresql_where=sa.text("pending"),
    )
    op.create_table(
        "stream_watermark",
        sa.Column("id", sa.SmallInteger, primary_key=True),
        sa.Column("event_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "worker_stats",
        sa.Column("worker_id", sa.Text, primary_key=True),
        sa.Column("events_processed", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("batches", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("last_lag_us", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for table in ("worker_stats", "stream_watermark", "fcr_calls", "calls", "kpi_buckets"):
        op.drop_table(table)
