"""Agent state events stored once: agent_timelines rewrote each agent's whole
retained timeline (up to call_state_retention_days) in every batch that touched
the agent, so a month's re-count slowed down with every day of history. Now each
state event is appended once here and agent_timelines keeps only the tail the
worker rewrites (Settings.agent_timeline_tail_seconds); the events already stored
in the timelines move here.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_state_events",
        sa.Column("agent_id", sa.Text, primary_key=True),
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("ts_us", sa.BigInteger, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
    )
    op.create_index("ix_agent_state_events_ts", "agent_state_events", ["agent_id", "ts_us"])
    op.execute(
        """
        INSERT INTO agent_state_events (agent_id, event_id, ts_us, state, reason)
        SELECT t.agent_id, e->>0, (e->>1)::bigint, e->>2, e->>3
        FROM agent_timelines t CROSS JOIN LATERAL json_array_elements(t.events) AS e
        ON CONFLICT DO NOTHING
        """
    )


def downgrade() -> None:
    op.drop_table("agent_state_events")
