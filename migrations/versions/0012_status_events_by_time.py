"""status events by time: the sweeper re-sends, from the event log, the cache invalidations
of workers whose jobs changed status (the durable half of the active-job cache in Redis)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX ix_job_events_status_at ON job_events (at) WHERE kind = 'status'")


def downgrade() -> None:
    op.execute("DROP INDEX ix_job_events_status_at")
