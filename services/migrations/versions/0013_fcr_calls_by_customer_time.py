"""fcr_calls is read by customer and offered time, not by customer alone.

The FCR stage used to load every call of each customer a batch touched and
recompute them all: for a customer with thousands of calls (a switchboard, a
withheld number that got through) each batch cost as much as all of its history,
quadratic over an import. It now loads only the calls within one FCR window of the
batch's own (services/kpi_stream/processor.py), through this index. It serves the
lookups by customer alone as well, so the old index goes.

Upgrade note: building the index reads the whole table and blocks writes to it
for as long as that takes.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_fcr_calls_customer_time", "fcr_calls", ["customer", "offered_us"])
    op.drop_index("ix_fcr_calls_customer", "fcr_calls")


def downgrade() -> None:
    op.create_index("ix_fcr_calls_customer", "fcr_calls", ["customer"])
    op.drop_index("ix_fcr_calls_customer_time", "fcr_calls")
