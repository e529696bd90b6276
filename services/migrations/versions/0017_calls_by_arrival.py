"""Calls by arrival: GET /v1/calls pages a range's calls by (offered_at, call_id),
which without this index read the whole table for every page.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_calls_offered", "calls", ["offered_at", "call_id"])


def downgrade() -> None:
    op.drop_index("ix_calls_offered", table_name="calls")
