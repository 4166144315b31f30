"""phone verification: an account's phone is proven by a code (Twilio Verify) before the
first booking, the first shift online and the first batch; a sign-up is only a pending
request until its phone answers, so nothing is created for a number nobody proved

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("phone_verified_at", sa.DateTime(timezone=True)))
    # The proof is asked before a *first* booking, shift or batch: accounts already past
    # theirs keep working (their phone has been texted all along); the rest prove it first.
    op.execute("""
        UPDATE users SET phone_verified_at = now()
        WHERE id IN (SELECT resident_id FROM jobs)
           OR id IN (SELECT user_id FROM workers WHERE location_at IS NOT NULL)
           OR id IN (SELECT created_by FROM batches)
    """)
    op.create_table(
        "phone_verifications",
        sa.Column("phone_e164", sa.String(16), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE")),
        sa.Column("signup", postgresql.JSONB),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checks", sa.Integer, nullable=False, server_default="0"),
        sa.CheckConstraint("(user_id IS NULL) <> (signup IS NULL)",
                           name="ck_phone_verifications_for_one"),
    )


def downgrade() -> None:
    op.drop_table("phone_verifications")
    op.drop_column("users", "phone_verified_at")
