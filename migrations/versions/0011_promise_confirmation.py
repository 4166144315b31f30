"""promised: whether the resident was told someone will arrive by arrive_by. A booking that
only one or two workers could reach in time is taken but not promised until one accepts

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE jobs ADD COLUMN promised boolean NOT NULL DEFAULT true")


def downgrade() -> None:
    op.execute("ALTER TABLE jobs DROP COLUMN promised")
