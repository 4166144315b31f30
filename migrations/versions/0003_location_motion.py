"""heading and speed of the worker's latest fix (streamed to the job's room), and when the
server received it (the per-worker ping rate limit)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE workers ADD COLUMN location_heading double precision, "
               "ADD COLUMN location_speed_mps double precision, "
               "ADD COLUMN location_received_at timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE workers DROP COLUMN location_heading, "
               "DROP COLUMN location_speed_mps, DROP COLUMN location_received_at")
