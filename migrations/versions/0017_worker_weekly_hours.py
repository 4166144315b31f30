"""workers.weekly_hours: when in the week a worker is usually available, as they set it on
their profile ([{"day": 0-6 (Monday 0), "start": "HH:MM", "end": "HH:MM"}], wall-clock in the
service's time zone). Shown to the worker and operators; matching still goes by `online`.

Revision ID: 0017
Revises: 0015
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("workers", sa.Column("weekly_hours", postgresql.JSONB(), nullable=False,
                                       server_default=sa.text("'[]'::jsonb")))


def downgrade() -> None:
    op.drop_column("workers", "weekly_hours")
