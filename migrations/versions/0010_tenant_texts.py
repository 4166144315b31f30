"""tenant texts: a batch job's tenant (a unit's contact, not a user) hears when the worker
accepts, sets out, arrives and finishes, so notifications may have no user

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE notifications ALTER COLUMN user_id DROP NOT NULL")


def downgrade() -> None:
    op.execute("DELETE FROM notifications WHERE user_id IS NULL")
    op.execute("ALTER TABLE notifications ALTER COLUMN user_id SET NOT NULL")
