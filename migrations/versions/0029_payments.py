"""The payment provider seam: the simulated card processor's records and answers by
idempotency key, and the provider webhook events taken in (unique by event id).

Revision ID: 0029
Revises: 0027
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0029"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sim_payment_objects",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("settled_cents", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("parent_id", sa.String(40), sa.ForeignKey("sim_payment_objects.id"),
                  nullable=True),
        sa.Column("party", sa.String(255), nullable=True),
        sa.Column("decline_code", sa.String(40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("amount_cents > 0", name="ck_sim_payment_objects_amount"),
        sa.CheckConstraint("settled_cents >= 0 AND settled_cents <= amount_cents",
                           name="ck_sim_payment_objects_settled"),
    )
    op.create_table(
        "sim_payment_requests",
        sa.Column("idempotency_key", sa.String(255), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("response", JSONB(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "payment_events",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("object_id", sa.String(255), nullable=False),
        sa.Column("data", JSONB(), nullable=False, server_default="{}"),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("payment_events")
    op.drop_table("sim_payment_requests")
    op.drop_table("sim_payment_objects")
