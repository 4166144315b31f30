"""notification outbox: one row per (event, recipient), the at-most-once key, delivery state

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
CREATE TABLE notifications (
    id bigserial PRIMARY KEY,
    idempotency_key varchar(200) NOT NULL UNIQUE,
    user_id integer NOT NULL REFERENCES users(id),
    job_id bigint REFERENCES jobs(id),
    event varchar(30) NOT NULL,
    channel varchar(10) NOT NULL DEFAULT 'sms',
    to_number varchar(16) NOT NULL,
    locale varchar(10) NOT NULL,
    body text NOT NULL,
    expires_at timestamptz,
    status varchar(12) NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'sending', 'retrying', 'sent', 'delivered',
                          'undelivered', 'failed', 'skipped')),
    twilio_sid varchar(64),
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX ix_notifications_job ON notifications (job_id);
-- Not unique: Twilio's are, but a mock answers every send with the same example SID.
CREATE INDEX ix_notifications_twilio_sid ON notifications (twilio_sid);
CREATE INDEX ix_notifications_failed ON notifications (updated_at) WHERE status = 'failed';
"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE notifications")
