"""Agents' own time rows become append-only: plain inserts, summed at read.

An agent has a time row for every minute it is logged in, about 96% of the rows
of kpi_time_buckets. Upserting them (ON CONFLICT on the primary key) cost 13-17 µs
a row; a plain INSERT into a table with a non-unique index 9-10 µs, and it was
the worker's largest single cost (docs/architecture.md). (Migration 0010 later
moved agents' own time to state segments.) An agent's minute is
written once per closed state segment touching it, so it has one or two rows in
order and a few more after late events; every read sums them anyway.

Team and center rows are updated by every batch in live use (hundreds of times a
minute): they stay one row per minute, upserted on a partial unique index.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# frozen here: later changes to services.core.kpi must not change this migration
TIME = ("logged_in_us", "available_us", "on_call_us", "wrap_up_us", "not_ready_us")
_COLS = ", ".join(TIME)


def upgrade() -> None:
    op.drop_constraint("kpi_time_buckets_pkey", "kpi_time_buckets", type_="primary")
    op.execute("CREATE INDEX ix_kpi_time_buckets_key ON kpi_time_buckets (kind, entity_id, bucket)")
    op.execute(
        "CREATE UNIQUE INDEX ux_kpi_time_buckets_rollup ON kpi_time_buckets "
        "(kind, entity_id, bucket) WHERE kind <> 'agent'"
    )


def downgrade() -> None:
    # one row per minute again, as the primary key requires
    sums = ", ".join(f"sum({c})" for c in TIME)
    op.execute(
        f"WITH gone AS (DELETE FROM kpi_time_buckets WHERE kind = 'agent' RETURNING *) "
        f"INSERT INTO kpi_time_buckets (kind, entity_id, bucket, {_COLS}) "
        f"SELECT kind, entity_id, bucket, {sums} FROM gone GROUP BY kind, entity_id, bucket"
    )
    op.drop_index("ux_kpi_time_buckets_rollup", "kpi_time_buckets")
    op.drop_index("ix_kpi_time_buckets_key", "kpi_time_buckets")
    op.create_primary_key(
        "kpi_time_buckets_pkey", "kpi_time_buckets", ["kind", "entity_id", "bucket"]
    )
