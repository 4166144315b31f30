"""batch repair requests: a batch per (organization, batch key), its row errors and progress;
jobs remember their batch and budget cap

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE batches (
    id bigserial PRIMARY KEY,
    org_id integer NOT NULL REFERENCES organizations(id),
    created_by integer NOT NULL REFERENCES users(id),
    batch_key varchar(200) NOT NULL,
    fingerprint varchar(64) NOT NULL,
    status varchar(12) NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'processing', 'done', 'failed')),
    rows jsonb NOT NULL,
    rejected jsonb NOT NULL DEFAULT '[]',
    total_rows integer NOT NULL,
    processed_rows integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL,
    finished_at timestamptz,
    CONSTRAINT uq_batches_org_key UNIQUE (org_id, batch_key)
);
ALTER TABLE jobs ADD COLUMN batch_id bigint REFERENCES batches(id),
                 ADD COLUMN budget_cap_cents integer CHECK (budget_cap_cents > 0);
CREATE INDEX ix_jobs_batch_id ON jobs (batch_id);
"""
    )


def downgrade() -> None:
    op.execute("ALTER TABLE jobs DROP COLUMN budget_cap_cents, DROP COLUMN batch_id")
    op.execute("DROP TABLE batches")
