"""Read-only views for BI tools (Metabase, Superset, Power BI) in a schema of
their own, `bi`, and a role that may read them and nothing else,
`callkpi_readonly` (docs/exports.md#sql-views).

The views are the stable contract: columns are only ever added; the tables
behind them may change. Views run with their owner's rights, so the role needs
no grant on any table: it cannot read raw caller-level state (events, hashes)
beyond what a view shows, and it can write nothing.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

ROLE = "callkpi_readonly"

VIEWS = {
    # call counters per minute of arrival, per entity (docs/metrics.md says how
    # each figure is made of them: e.g. answer_rate = answered / (answered +
    # the outcomes in kpi.answer_rate_misses - short_abandoned))
    "call_minutes": "SELECT * FROM public.kpi_buckets",
    "fcr_minutes": "SELECT * FROM public.kpi_fcr_buckets",
    # team and center agent time per minute (µs per state)
    "team_time_minutes": "SELECT * FROM public.kpi_time_buckets WHERE kind <> 'agent'",
    "not_ready_minutes": "SELECT * FROM public.kpi_reason_buckets",
    # each agent's state segments as they stand (a replaced segment cancels out)
    "agent_states": """
        SELECT agent_id,
               timestamptz 'epoch' + start_us * interval '1 microsecond' AS started_at,
               timestamptz 'epoch' + end_us * interval '1 microsecond' AS ended_at,
               state, reason
        FROM public.agent_segments
        GROUP BY agent_id, start_us, end_us, state, reason
        HAVING sum(sign) > 0""",
    "alerts": """
        SELECT id, rule, kind, entity_id, field, state, threshold, schedule_class,
               observed_value, calls_in_window, pending_since, fired_at, resolved_at,
               resolution
        FROM public.alerts""",
    "payroll_versions": """
        SELECT period, version, period_start, period_end, created_at, created_by, reason,
               fcr_provisional, checksum
        FROM public.period_versions""",
    # one row per agent of each closed version: its figures as JSON, as in the CSV
    "payroll_agents": """
        SELECT v.period, v.version, a.key AS agent_id, a.value AS figures
        FROM public.period_versions v,
             json_each(v.figures -> 'agents') AS a""",
    "schedule_uploads": "SELECT * FROM public.schedule_uploads",
    # the schedule in force for every agent-day (the latest upload holding it)
    "schedule": """
        SELECT s.agent_id, s.day,
               timestamptz 'epoch' + s.start_us * interval '1 microsecond' AS starts_at,
               timestamptz 'epoch' + s.end_us * interval '1 microsecond' AS ends_at,
               s.activity, s.version
        FROM (SELECT DISTINCT ON (agent_id, day) agent_id, day, version
              FROM public.schedule_days ORDER BY agent_id, day, version DESC) f
        JOIN public.schedule_segments s
          ON s.agent_id = f.agent_id AND s.day = f.day AND s.version = f.version""",
}


def upgrade() -> None:
    # A role is the cluster's, shared by every database on it: created once. A
    # migrating user without CREATEROLE (some managed Postgres) gets the views
    # and a notice; an administrator creates the role and runs the grants
    # (docs/exports.md).
    op.execute(
        f"DO $$ BEGIN CREATE ROLE {ROLE} NOLOGIN; "
        "EXCEPTION WHEN duplicate_object THEN NULL; "
        f"WHEN insufficient_privilege THEN RAISE NOTICE 'cannot create role {ROLE}: %', SQLERRM; "
        "END $$"
    )
    op.execute("CREATE SCHEMA IF NOT EXISTS bi")
    for name, sql in VIEWS.items():
        op.execute(f"CREATE VIEW bi.{name} AS {sql}")
    op.execute(
        f"DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN "
        f"GRANT USAGE ON SCHEMA bi TO {ROLE}; "
        f"GRANT SELECT ON ALL TABLES IN SCHEMA bi TO {ROLE}; END IF; END $$"
    )


def downgrade() -> None:
    op.execute("DROP SCHEMA bi CASCADE")
    # the role stays while another database on the cluster still grants to it
    op.execute(
        f"DO $$ BEGIN DROP ROLE {ROLE}; "
        "EXCEPTION WHEN dependent_objects_still_exist THEN NULL; END $$"
    )
