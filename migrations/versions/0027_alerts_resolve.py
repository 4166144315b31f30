"""operator_alerts: one open alert per job and cause (a partial unique index), and who
resolved an alert and how. Open duplicates raised before this (one every five minutes for a
job that could not get a masked number) are resolved, keeping the oldest open. And an index
of the jobs a worker is coming to (assigned, en route), which the sweeper reads every round
for no-shows and for booked windows behind a busy worker.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("operator_alerts", sa.Column("resolved_by", sa.Integer(),
                                               sa.ForeignKey("users.id"), nullable=True))
    op.add_column("operator_alerts", sa.Column("resolution", sa.String(500), nullable=True))
    op.execute("""
UPDATE operator_alerts a SET resolved_at = now(), resolution = 'duplicate of an older alert'
  FROM operator_alerts older
 WHERE older.job_id = a.job_id AND older.kind = a.kind AND older.id < a.id
   AND older.resolved_at IS NULL AND a.resolved_at IS NULL""")
    op.execute("CREATE UNIQUE INDEX ux_operator_alerts_open_cause "
               "ON operator_alerts (job_id, kind) WHERE resolved_at IS NULL")
    op.execute("CREATE INDEX ix_jobs_coming ON jobs (id) "
               "WHERE status IN ('assigned', 'en_route')")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_jobs_coming")
    op.drop_index("ux_operator_alerts_open_cause", table_name="operator_alerts")
    op.drop_column("operator_alerts", "resolution")
    op.drop_column("operator_alerts", "resolved_by")
