"""escrow: a job's hold at the payment provider (`job_payments`), placed at booking and
released on confirmation, automatically after completion, or on cancellation.

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_payments",
        sa.Column("job_id", sa.BigInteger(), sa.ForeignKey("jobs.id"), primary_key=True),
        sa.Column("authorization_id", sa.String(255), nullable=False),
        sa.Column("authorization_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("payer_user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("payer_organization_id", sa.Integer(), sa.ForeignKey("organizations.id"),
                  nullable=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("held_cents", sa.Integer(), nullable=False),
        sa.Column("captured_cents", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("refunded_cents", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('held', 'released', 'voided', 'expired')",
                           name="ck_job_payments_status"),
        sa.CheckConstraint("held_cents > 0 AND captured_cents >= 0 AND refunded_cents >= 0 "
                           "AND captured_cents + refunded_cents <= held_cents",
                           name="ck_job_payments_amounts"),
    )
    op.create_index("ix_job_payments_held", "job_payments", ["authorization_expires_at"],
                    postgresql_where=sa.text("status = 'held'"))


def downgrade() -> None:
    op.drop_table("job_payments")
