"""Postgres schema (as SQLAlchemy Core tables) and connection helpers.

The read side goes through SQLAlchemy's async engine. The worker's hot path talks
to asyncpg directly (bulk upserts through `json_to_recordset`), because it moves tens of
thousands of rows a second and SQLAlchemy's per-row parameter handling would cost
more than the database work itself.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.core.kpi import AGENT_TIME_COUNTERS, CALL_COUNTERS, FCR_COUNTERS
from services.core.settings import Settings

metadata = sa.MetaData()

# Advisory lock classes: the first key of pg_advisory_xact_lock(int, int), the
# second being a partition (or 0). One list, so no two uses collide.
LOCK_EVENTS = 7411  # a worker committing a batch of an events partition
LOCK_FCR = 7412  # a worker committing FCR facts or a sweep of an fcr partition
LOCK_ALERTS = 7413  # an alert evaluation (second key 0)
LOCK_PERIODS = 7414  # closing or restating a pay period (second key: hashtext(period))

# The Postgres NOTIFY channel a worker's commit announces new figures on
# (services/kpi_stream/store.py); the alert evaluator and the wallboard hub listen
# (services/readmodel/notifications.py).
FIGURES_CHANNEL = "callkpi_figures"

kpi_buckets = sa.Table(
    "kpi_buckets",
    metadata,
    sa.Column("kind", sa.Text, primary_key=True),
    sa.Column("entity_id", sa.Text, primary_key=True),
    sa.Column("bucket", sa.DateTime(timezone=True), primary_key=True),
    *(sa.Column(n, sa.BigInteger, nullable=False, server_default="0") for n in CALL_COUNTERS),
)
sa.Index("ix_kpi_buckets_kind_bucket", kpi_buckets.c.kind, kpi_buckets.c.bucket)

# Team and center agent time, one row per minute, upserted on the partial unique
# index. Agents' own rows (append-only, migration 0009) are only those written
# before migration 0010 moved agents' time to agent_segments; reads add them.
kpi_time_buckets = sa.Table(
    "kpi_time_buckets",
    metadata,
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("entity_id", sa.Text, nullable=False),
    sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
    *(sa.Column(n, sa.BigInteger, nullable=False, server_default="0") for n in AGENT_TIME_COUNTERS),
)
sa.Index(
    "ix_kpi_time_buckets_key",
    kpi_time_buckets.c.kind,
    kpi_time_buckets.c.entity_id,
    kpi_time_buckets.c.bucket,
)
sa.Index(
    "ux_kpi_time_buckets_rollup",
    kpi_time_buckets.c.kind,
    kpi_time_buckets.c.entity_id,
    kpi_time_buckets.c.bucket,
    unique=True,
    postgresql_where=kpi_time_buckets.c.kind != "agent",
)

# Agents' own time: closed state segments, signed and append-only, cut at whole
# hours (migration 0010 says why). Reads sum their overlap with the asked range.
agent_segments = sa.Table(
    "agent_segments",
    metadata,
    sa.Column("agent_id", sa.Text, nullable=False),
    sa.Column("start_us", sa.BigInteger, nullable=False),
    sa.Column("end_us", sa.BigInteger, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("sign", sa.SmallInteger, nullable=False),
)
sa.Index("ix_agent_segments_agent", agent_segments.c.agent_id, agent_segments.c.start_us)
sa.Index("ix_agent_segments_start", agent_segments.c.start_us, postgresql_using="brin")

kpi_fcr_buckets = sa.Table(
    "kpi_fcr_buckets",
    metadata,
    sa.Column("kind", sa.Text, primary_key=True),
    sa.Column("entity_id", sa.Text, primary_key=True),
    sa.Column("bucket", sa.DateTime(timezone=True), primary_key=True),
    *(sa.Column(n, sa.BigInteger, nullable=False, server_default="0") for n in FCR_COUNTERS),
)

calls = sa.Table(
    "calls",
    metadata,
    sa.Column("call_id", sa.Text, primary_key=True),
    sa.Column("part", sa.Integer, nullable=False),
    sa.Column("offered_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("events", sa.JSON, nullable=False),
    sa.Column("contrib", sa.JSON),
    sa.Column("fact", sa.JSON),
    sa.Column("queue_id", sa.Text),
    sa.Column("waiting", sa.Boolean, nullable=False, server_default="f"),
)
sa.Index("ix_calls_updated_at", calls.c.updated_at)
sa.Index("ix_calls_offered", calls.c.offered_at, calls.c.call_id)
sa.Index("ix_calls_waiting", calls.c.queue_id, calls.c.offered_at, postgresql_where=calls.c.waiting)

kpi_reason_buckets = sa.Table(
    "kpi_reason_buckets",
    metadata,
    sa.Column("kind", sa.Text, primary_key=True),
    sa.Column("entity_id", sa.Text, primary_key=True),
    sa.Column("bucket", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("reason", sa.Text, primary_key=True),
    sa.Column("not_ready_us", sa.BigInteger, nullable=False, server_default="0"),
)

agent_timelines = sa.Table(
    "agent_timelines",
    metadata,
    sa.Column("agent_id", sa.Text, primary_key=True),
    sa.Column("part", sa.Integer, nullable=False),
    sa.Column("events", sa.JSON, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("since_us", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Every retained state event of every agent, once (migration 0019); agent_timelines
# holds the tail the worker rewrites.
agent_state_events = sa.Table(
    "agent_state_events",
    metadata,
    sa.Column("agent_id", sa.Text, primary_key=True),
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("ts_us", sa.BigInteger, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("reason", sa.Text),
)
sa.Index("ix_agent_state_events_ts", agent_state_events.c.agent_id, agent_state_events.c.ts_us)

fcr_calls = sa.Table(
    "fcr_calls",
    metadata,
    sa.Column("call_id", sa.Text, primary_key=True),
    sa.Column("customer", sa.Text, nullable=False),
    sa.Column("part", sa.Integer, nullable=False),
    sa.Column("offered_us", sa.BigInteger, nullable=False),
    sa.Column("pending", sa.Boolean, nullable=False),
    sa.Column("fact", sa.JSON, nullable=False),
    sa.Column("contrib", sa.JSON),
)
sa.Index("ix_fcr_calls_customer_time", fcr_calls.c.customer, fcr_calls.c.offered_us)
sa.Index(
    "ix_fcr_calls_pending",
    fcr_calls.c.part,
    fcr_calls.c.offered_us,
    postgresql_where=fcr_calls.c.pending,
)

stream_watermark = sa.Table(
    "stream_watermark",
    metadata,
    sa.Column("id", sa.SmallInteger, primary_key=True),
    sa.Column("event_us", sa.BigInteger, nullable=False),
)

# The worker that last committed a batch of each events partition: a worker may
# commit a batch computed ahead from its cache only if it still is (processor.py).
stream_owners = sa.Table(
    "stream_owners",
    metadata,
    sa.Column("part", sa.Integer, primary_key=True),
    sa.Column("owner", sa.Text, nullable=False),
)

# The next offset to process of each topic partition, as the last committed batch
# left it: a broker whose end offset is below it has lost records the worker
# already counted, and what they carried on to stage 2 is re-derived
# (services/kpi_stream/reconcile.py).
stream_offsets = sa.Table(
    "stream_offsets",
    metadata,
    sa.Column("topic", sa.Text, primary_key=True),
    sa.Column("part", sa.Integer, primary_key=True),
    sa.Column("next_offset", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

worker_stats = sa.Table(
    "worker_stats",
    metadata,
    sa.Column("worker_id", sa.Text, primary_key=True),
    sa.Column("events_processed", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("batches", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("last_lag_us", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


_TS = sa.DateTime(timezone=True)

# Alerting (services/alerting/): migration 0005 says why each table is there.
alerts = sa.Table(
    "alerts",
    metadata,
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
    sa.Column("pending_since", _TS, nullable=False),
    sa.Column("fired_at", _TS),
    sa.Column("resolved_at", _TS),
    sa.Column("resolution", sa.Text),
    sa.Column("evaluated_at", _TS, nullable=False),
)

alert_transitions = sa.Table(
    "alert_transitions",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("key", sa.Text, nullable=False, unique=True),
    sa.Column("alert_id", sa.BigInteger, sa.ForeignKey("alerts.id"), nullable=False),
    sa.Column("from_state", sa.Text, nullable=False),
    sa.Column("to_state", sa.Text, nullable=False),
    sa.Column("at", _TS, nullable=False),
    sa.Column("body", sa.JSON, nullable=False),
    sa.Column("published_at", _TS),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column(
        "transition_id", sa.BigInteger, sa.ForeignKey("alert_transitions.id"), primary_key=True
    ),
    sa.Column("url", sa.Text, primary_key=True),
    sa.Column("rule_id", sa.Text, nullable=False),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", _TS, nullable=False),
    sa.Column("last_attempt_at", _TS),
    sa.Column("last_status", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("delivered_at", _TS),
    sa.Column("dead", sa.Boolean, nullable=False, server_default="f"),
)


# One row per stored version of a closed pay period (services/payroll/close.py).
period_versions = sa.Table(
    "period_versions",
    metadata,
    sa.Column("period", sa.Text, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("period_start", _TS, nullable=False),
    sa.Column("period_end", _TS, nullable=False),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("fcr_provisional", sa.Boolean, nullable=False),
    sa.Column("definitions", sa.JSON, nullable=False),
    sa.Column("checksum", sa.Text, nullable=False),
    sa.Column("figures", sa.JSON, nullable=False),
)

manual_items = sa.Table(
    "manual_items",
    metadata,
    sa.Column("period", sa.Text, primary_key=True),
    sa.Column("agent_id", sa.Text, primary_key=True),
    sa.Column("item", sa.Text, primary_key=True),
    sa.Column("value", sa.Numeric, nullable=False),
    sa.Column("updated_at", _TS, nullable=False),
    sa.Column("updated_by", sa.Text, nullable=False),
)

# Agents' schedules, one version per upload (migration 0016, readmodel/schedules.py)
schedule_uploads = sa.Table(
    "schedule_uploads",
    metadata,
    sa.Column("version", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("uploaded_at", _TS, nullable=False),
    sa.Column("uploaded_by", sa.Text, nullable=False),
    sa.Column("first_day", sa.Date, nullable=False),
    sa.Column("last_day", sa.Date, nullable=False),
    sa.Column("agent_days", sa.Integer, nullable=False),
    sa.Column("segments", sa.Integer, nullable=False),
    sa.Column("checksum", sa.Text, nullable=False),
    sa.Column("note", sa.Text),
)

schedule_days = sa.Table(
    "schedule_days",
    metadata,
    sa.Column("agent_id", sa.Text, primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("version", sa.BigInteger, primary_key=True),
)

schedule_segments = sa.Table(
    "schedule_segments",
    metadata,
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("agent_id", sa.Text, nullable=False),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("start_us", sa.BigInteger, nullable=False),
    sa.Column("end_us", sa.BigInteger, nullable=False),
    sa.Column("activity", sa.Text, nullable=False),
)

# Who closed, restated, uploaded to or read a pay period, and when.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("at", _TS, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("period", sa.Text),
    sa.Column("detail", sa.JSON, nullable=False),
)


# Events set aside by the worker (migration 0012, services/kpi_stream/quarantine.py)
quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("stage", sa.Text, nullable=False),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("part", sa.Integer, nullable=False),
    sa.Column("record_offset", sa.BigInteger, nullable=False),
    sa.Column("item", sa.Integer, nullable=False),
    sa.Column("event_id", sa.Text),
    sa.Column("event", sa.Text, nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("quarantined_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("replayed_at", sa.DateTime(timezone=True)),
)


def sqlalchemy_url(url: str) -> str:
    """Accept postgres://, postgresql:// or postgresql+asyncpg:// and use asyncpg."""
    parts = urlsplit(url)
    if parts.scheme in ("postgres", "postgresql", "postgresql+asyncpg"):
        return urlunsplit(("postgresql+asyncpg", *parts[1:]))
    raise ValueError(f"database_url: unsupported scheme {parts.scheme!r} (use postgresql://)")


def asyncpg_dsn(url: str) -> str:
    parts = urlsplit(sqlalchemy_url(url))
    return urlunsplit(("postgresql", *parts[1:]))


def require_database_url(settings: Settings) -> str:
    if not settings.database_url:
        from services.core.settings import ConfigError

        raise ConfigError(
            "database_url: not set (CALLKPI_DATABASE_URL); `callkpi dev` starts an embedded one"
        )
    return settings.database_url


def make_engine(settings: Settings, pool_size: int = 5, max_overflow: int = 5) -> AsyncEngine:
    return create_async_engine(
        sqlalchemy_url(require_database_url(settings)),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
    )
