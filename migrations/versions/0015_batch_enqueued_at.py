"""batches.enqueued_at: when a batch was last put on its queue. The sweeper re-queues a batch
nobody is working on only when this is old enough, and stamps it as it does, so a batch
waiting behind a long one is not queued again on every sweep.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("batches", sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE batches SET enqueued_at = created_at")
    op.alter_column("batches", "enqueued_at", nullable=False)


def downgrade() -> None:
    op.drop_column("batches", "enqueued_at")
