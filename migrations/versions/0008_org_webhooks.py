"""outgoing webhooks for property-management systems: an organization's URL and signing
secret, and the delivery log (at most once per job state change, retried)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
ALTER TABLE organizations ADD COLUMN webhook_url varchar(500),
                          ADD COLUMN webhook_secret varchar(100);

CREATE TABLE webhook_deliveries (
    id bigserial PRIMARY KEY,
    org_id integer NOT NULL REFERENCES organizations(id),
    job_id bigint REFERENCES jobs(id),
    event varchar(40) NOT NULL,
    idempotency_key varchar(200) NOT NULL UNIQUE,
    payload jsonb NOT NULL,
    status varchar(10) NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'sending', 'retrying', 'sent', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX ix_webhook_deliveries_org ON webhook_deliveries (org_id, id);
"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE webhook_deliveries")
    op.execute("ALTER TABLE organizations DROP COLUMN webhook_secret, DROP COLUMN webhook_url")
