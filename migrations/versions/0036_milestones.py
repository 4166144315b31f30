"""milestones: a job paid in stages, each stage with its own hold.

A card processor's manual-capture authorization is captured once and lapses after 7 days,
so a long job cannot sit on one hold: each stage (`job_milestones`) is held when the stage
before it is released (the first at booking), and released on its own confirmation.

Revision ID: 0036
Revises: 0035
Create Date: 2026-12-03
"""

from alembic import op

revision = "0036"
down_revision = "0035"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
CREATE TABLE job_milestones (
    id bigserial PRIMARY KEY,
    job_id bigint NOT NULL REFERENCES jobs (id),
    position integer NOT NULL,
    title varchar(200) NOT NULL,
    amount_cents integer NOT NULL,
    currency varchar(3) NOT NULL,
    status varchar(20) NOT NULL
        CONSTRAINT ck_job_milestones_status
        CHECK (status IN ('planned', 'held', 'done', 'released', 'cancelled')),
    payment_method varchar(255) NOT NULL,
    customer_id varchar(255),
    authorization_id varchar(255),
    authorization_expires_at timestamptz,
    hold_attempts integer NOT NULL DEFAULT 0,
    hold_declined varchar(100),
    captured_cents integer NOT NULL DEFAULT 0,
    held_at timestamptz,
    done_at timestamptz,
    released_at timestamptz,
    cancelled_at timestamptz,
    CONSTRAINT ck_job_milestones_amounts CHECK (
        amount_cents > 0 AND captured_cents >= 0 AND captured_cents <= amount_cents
        AND position >= 1),
    CONSTRAINT ck_job_milestones_held CHECK (
        status = 'planned' OR status = 'cancelled' OR authorization_id IS NOT NULL),
    CONSTRAINT uq_job_milestones_position UNIQUE (job_id, position)
);
CREATE INDEX ix_job_milestones_done ON job_milestones (done_at) WHERE status = 'done';
CREATE INDEX ix_job_milestones_held ON job_milestones (authorization_expires_at)
    WHERE status = 'held';
""")


def downgrade() -> None:
    op.execute("DROP TABLE job_milestones;")
