"""Agents' own time is stored as state segments, not minute rows.

An agent had a time row for every minute it was logged in: more rows than events
(the bench: 352,000 agent-minute rows for 300,500 events), and writing them was
the worker's largest Postgres cost (docs/architecture.md). A segment row holds a
closed state (agent, start, end, state, reason), about a third as many rows, and a
read sums each segment's overlap with the asked range, which for the
minute-aligned ranges the API accepts is exactly the sum of the minute buckets.
Rows are signed and append-only: a late event that splits a segment appends the
old segment with sign -1 and the two new ones with +1, as the minute rows took
negative deltas. Segments are cut at whole hours, so a read of [s, e) finds all
it needs among rows starting after s - 1 h, whatever max_state_hours is.

Team and center time stays in minute rows (kpi_time_buckets, kpi_reason_buckets):
Postgres splits the segments into minutes when it writes them. Agent minute rows
written before this migration stay where they are; reads add both.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# frozen here: later changes to services.core.kpi must not change this migration
STATES = ("available", "on_call", "wrap_up", "not_ready")
MINUTE_US = 60_000_000


def upgrade() -> None:
    op.create_table(
        "agent_segments",
        sa.Column("agent_id", sa.Text, nullable=False),
        sa.Column("start_us", sa.BigInteger, nullable=False),
        sa.Column("end_us", sa.BigInteger, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("sign", sa.SmallInteger, nullable=False),
    )
    op.create_index("ix_agent_segments_agent", "agent_segments", ["agent_id", "start_us"])
    # Rows arrive roughly in time order: a BRIN index lets reads of every agent
    # over a range skip the rest of the table at almost no cost per insert.
    op.execute("CREATE INDEX ix_agent_segments_start ON agent_segments USING brin (start_us)")


def downgrade() -> None:
    # back to agent minute rows, split as the worker did before
    split = (
        "FROM agent_segments g CROSS JOIN LATERAL generate_series("
        f"g.start_us - g.start_us % {MINUTE_US}, g.end_us - 1, {MINUTE_US}) AS b "
        "CROSS JOIN LATERAL (SELECT g.sign * (least(b + "
        f"{MINUTE_US}, g.end_us) - greatest(b, g.start_us)) AS us) AS o"
    )
    by_state = ", ".join(f"coalesce(sum(o.us) FILTER (WHERE g.state = '{s}'), 0)" for s in STATES)
    cols = ", ".join(f"{s}_us" for s in STATES)
    op.execute(
        f"INSERT INTO kpi_time_buckets (kind, entity_id, bucket, logged_in_us, {cols}) "
        f"SELECT 'agent', g.agent_id, to_timestamp(b / 1000000), sum(o.us), {by_state} "
        f"{split} GROUP BY g.agent_id, b"
    )
    op.execute(
        "INSERT INTO kpi_reason_buckets AS kr (kind, entity_id, bucket, reason, not_ready_us) "
        f"SELECT 'agent', g.agent_id, to_timestamp(b / 1000000), g.reason, sum(o.us) "
        f"{split} WHERE g.state = 'not_ready' GROUP BY g.agent_id, b, g.reason "
        "ON CONFLICT (kind, entity_id, bucket, reason) DO UPDATE SET "
        "not_ready_us = kr.not_ready_us + EXCLUDED.not_ready_us"
    )
    op.drop_table("agent_segments")
