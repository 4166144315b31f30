"""Contractor invitations (a worker becomes an organization's preferred contractor only by
accepting one), and an index to find a batch file sent again under another key by its content.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "contractor_invitations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("org_id", sa.Integer(), sa.ForeignKey("organizations.id"), nullable=False),
        sa.Column("invited_by", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("email", sa.String(254), nullable=True),
        sa.Column("phone_e164", sa.String(16), nullable=True),
        sa.Column("status", sa.String(12), nullable=False, server_default="pending"),
        sa.Column("worker_id", sa.Integer(), sa.ForeignKey("workers.user_id"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("responded_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'accepted', 'declined', 'withdrawn')",
                           name="ck_invitations_status"),
        sa.CheckConstraint("(email IS NULL) <> (phone_e164 IS NULL)",
                           name="ck_invitations_one_contact"),
    )
    op.create_index("ix_contractor_invitations_org_id", "contractor_invitations", ["org_id"])
    op.create_index("ix_invitations_email", "contractor_invitations", ["email"])
    op.create_index("ix_invitations_phone", "contractor_invitations", ["phone_e164"])
    op.create_index("ux_invitations_pending_email", "contractor_invitations",
                    ["org_id", "email"], unique=True,
                    postgresql_where=sa.text("status = 'pending' AND email IS NOT NULL"))
    op.create_index("ux_invitations_pending_phone", "contractor_invitations",
                    ["org_id", "phone_e164"], unique=True,
                    postgresql_where=sa.text("status = 'pending' AND phone_e164 IS NOT NULL"))
    op.create_index("ix_batches_org_fingerprint", "batches", ["org_id", "fingerprint"])


def downgrade() -> None:
    op.drop_index("ix_batches_org_fingerprint", table_name="batches")
    op.drop_table("contractor_invitations")
