"""kpi_buckets: how unanswered calls end, the all-calls wait, callbacks, IVR abandons.

`call.ended.reason` (cti-event schema revision 2) tells apart calls that were
closed out, refused for a full queue or a load rule, blocked for want of agents,
left by a key, for voicemail or for a callback; each is a counter of its own, so
the settings kpi.answer_rate_misses / kpi.service_level_misses can say at read
time which count against the answer rate. `waited` / `wait_all_us` give the
average wait over every call that queued (awt_seconds); the callback counters
and `ivr_abandoned` count what happens around the queue.

Rows written before this migration count 0 in each: their unanswered calls are
in `abandoned` and `timed_out`, as they were counted then; a replay or a
re-import of their events recounts them with their reasons (the Asterisk
adapter's events carry the same ids, and the richer copy wins).

The columns are listed here, not taken from services.core.kpi: a migration must
not change when the catalogue does.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

COLUMNS = (
    "closed",
    "queue_full",
    "diverted",
    "blocked_at_entry",
    "blocked_in_queue",
    "exited_by_key",
    "to_voicemail",
    "callbacks_accepted",
    "waited",
    "wait_all_us",
    "callbacks_offered",
    "callbacks_completed",
    "callback_wait_us",
    "ivr_abandoned",
)


def upgrade() -> None:
    # constant defaults: Postgres adds the columns without rewriting the table
    for name in COLUMNS:
        op.add_column(
            "kpi_buckets", sa.Column(name, sa.BigInteger, nullable=False, server_default="0")
        )


def downgrade() -> None:
    for name in reversed(COLUMNS):
        op.drop_column("kpi_buckets", name)
