"""Alerts: one row per alert (pending → firing → resolved, or cancelled), every
transition as an outbox row for the Kafka topic, and webhook deliveries.

At most one open (pending or firing) alert per rule and entity, enforced here as
well as by the evaluator's lock: two evaluators can never both open one.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("rule_id", sa.Text, nullable=False),
        sa.Column("field", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("entity_id", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("rule", sa.JSON, nullable=False),
        sa.Column("threshold", sa.Float),
        sa.Column("schedule_class", sa.Text, nullable=False),
        sa.Column("observed_value", sa.Float),
        sa.Column("calls_in_window", sa.BigInteger, nullable=False),
        sa.Column("pending_since", TS, nullable=False),
        sa.Column("fired_at", TS),
        sa.Column("resolved_at", TS),
        sa.Column("resolution", sa.Text),
        sa.Column("evaluated_at", TS, nullable=False),
        sa.CheckConstraint(
            "state IN ('pending', 'firing', 'resolved', 'cancelled')", name="alerts_state"
        ),
    )
    op.create_index(
        "ux_alerts_open",
        "alerts",
        ["rule_id", "kind", "entity_id"],
        unique=True,
        postgresql_where=sa.text("state IN ('pending', 'firing')"),
    )
    op.create_index("ix_alerts_pending_since", "alerts", ["pending_since"])
    op.create_table(
        "alert_transitions",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("key", sa.Text, nullable=False, unique=True),
        sa.Column("alert_id", sa.BigInteger, sa.ForeignKey("alerts.id"), nullable=False),
        sa.Column("from_state", sa.Text, nullable=False),
        sa.Column("to_state", sa.Text, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("published_at", TS),
    )
    op.create_index("ix_alert_transitions_alert", "alert_transitions", ["alert_id"])
    op.create_index(
        "ix_alert_transitions_unpublished",
        "alert_transitions",
        ["id"],
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column(
            "transition_id",
            sa.BigInteger,
            sa.ForeignKey("alert_transitions.id"),
            primary_key=True,
        ),
        sa.Column("url", sa.Text, primary_key=True),
        sa.Column("rule_id", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("last_attempt_at", TS),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("delivered_at", TS),
        sa.Column("dead", sa.Boolean, nullable=False, server_default="f"),
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("delivered_at IS NULL AND NOT dead"),
    )


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("alert_transitions")
    op.drop_table("alerts")
