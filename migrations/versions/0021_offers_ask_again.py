"""offers: a worker may be asked again for a job whose earlier offer to them lapsed without
their no (it expired unanswered, or was withdrawn when they took other work or went
offline). One offer per job and worker is now one *pending* offer per job and worker.

Revision ID: 0021
Revises: 0015
Create Date: 2026-12-03
"""

from alembic import op

revision = "0021"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("uq_offers_job_worker", "offers", type_="unique")
    op.execute("CREATE UNIQUE INDEX ux_offers_one_pending_per_job_worker "
               "ON offers (job_id, worker_id) WHERE status = 'pending'")


def downgrade() -> None:
    # Keep the newest offer of each job and worker: the older ones lapsed.
    op.execute("DELETE FROM offers o USING offers newer WHERE newer.job_id = o.job_id "
               "AND newer.worker_id = o.worker_id AND newer.id > o.id")
    op.drop_index("ux_offers_one_pending_per_job_worker", table_name="offers")
    op.create_unique_constraint("uq_offers_job_worker", "offers", ["job_id", "worker_id"])
