"""Agent time, queue-wait histograms, live queue state.

- kpi_buckets: the answered / abandoned wait bins;
- kpi_time_buckets: agent time per state (µs);
- kpi_reason_buckets: not-ready time per reason;
- agent_timelines: each agent's state events, and the state in force now;
- calls.queue_id / calls.waiting: which calls are waiting in which queue now.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Frozen copies (this file must not follow services.core.kpi).
_BINS = ("5", "10", "15", "20", "30", "45", "60", "90", "120", "180", "300", "inf")
TIME = ("logged_in_us", "available_us", "on_call_us", "wrap_up_us", "not_ready_us")
NEW = (
    *(f"answered_wait_{b}" for b in _BINS),
    *(f"abandoned_wait_{b}" for b in _BINS),
)  # fmt: skip


def upgrade() -> None:
    for name in NEW:
        op.add_column(
            "kpi_buckets", sa.Column(name, sa.BigInteger, nullable=False, server_default="0")
        )
    # Narrow on purpose: every logged-in agent has a row per minute here.
    op.create_table(
        "kpi_time_buckets",
        sa.Column("kind", sa.Text, primary_key=True),
        sa.Column("entity_id", sa.Text, primary_key=True),
        sa.Column("bucket", sa.DateTime(timezone=True), primary_key=True),
        *(sa.Column(n, sa.BigInteger, nullable=False, server_default="0") for n in TIME),
    )
    op.create_table(
        "kpi_reason_buckets",
        sa.Column("kind", sa.Text, primary_key=True),
        sa.Column("entity_id", sa.Text, primary_key=True),
        sa.Column("bucket", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("reason", sa.Text, primary_key=True),
        sa.Column("not_ready_us", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_table(
        "agent_timelines",
        sa.Column("agent_id", sa.Text, primary_key=True),
        sa.Column("part", sa.Integer, nullable=False),
        sa.Column("events", sa.JSON, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("since_us", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.add_column("calls", sa.Column("queue_id", sa.Text))
    op.add_column("calls", sa.Column("waiting", sa.Boolean, nullable=False, server_default="f"))
    op.create_index(
        "ix_calls_waiting", "calls", ["queue_id", "offered_at"], postgresql_where=sa.text("waiting")
    )


def downgrade() -> None:
    op.drop_index("ix_calls_waiting", "calls")
    op.drop_column("calls", "waiting")
    op.drop_column("calls", "queue_id")
    op.drop_table("agent_timelines")
    op.drop_table("kpi_reason_buckets")
    op.drop_table("kpi_time_buckets")
    for name in NEW:
        op.drop_column("kpi_buckets", name)
