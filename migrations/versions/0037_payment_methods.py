"""payment methods: what a job's hold was placed on, so it can be placed again; whether a
worker's connected account can receive payouts.

- job_payments.payment_method: the provider's token for the payer's card (pm_...; never a
  card number), kept so a hold for a window booked more than 7 days ahead can be
  re-authorized before the card network lets it lapse (services/reauthorization.py).
- job_payments.customer_id: Stripe's Customer the PaymentMethod is attached to (a
  PaymentMethod can be reused off-session only through its Customer); empty with the
  simulator.
- job_payments.reauthorizations: how many times the hold was placed again (the n of the
  key `reauth:job:{id}:{n}:{held_cents}`).
- job_payments.declined_increments: increments the card declined (the attempt in the key
  `increment:{authorization_id}:{amount}:{attempt}`, so trying again is a new request).
- job_payments.reauthorization_declined_at: a declined re-authorization, not tried again.
- workers.payouts_enabled: the provider says the worker's connected account
  (payout_destination) can receive transfers (Stripe's `account.updated`); payouts wait
  until it does.

Revision ID: 0037
Revises: 0036
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0037"
down_revision = "0036"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("job_payments", sa.Column("payment_method", sa.String(255)))
    op.add_column("job_payments", sa.Column("customer_id", sa.String(255)))
    op.add_column("job_payments", sa.Column("reauthorizations", sa.Integer(), nullable=False,
                                            server_default=sa.text("0")))
    op.add_column("job_payments", sa.Column("declined_increments", sa.Integer(),
                                            nullable=False, server_default=sa.text("0")))
    op.add_column("job_payments", sa.Column("reauthorization_declined_at",
                                            sa.DateTime(timezone=True)))
    op.add_column("workers", sa.Column("payouts_enabled", sa.Boolean(), nullable=False,
                                       server_default=sa.text("false")))
    # Destinations set before this revision are the simulator's accounts, which it pays.
    op.execute("UPDATE workers SET payouts_enabled = true WHERE payout_destination IS NOT NULL")


def downgrade() -> None:
    op.drop_column("workers", "payouts_enabled")
    op.drop_column("job_payments", "reauthorization_declined_at")
    op.drop_column("job_payments", "declined_increments")
    op.drop_column("job_payments", "reauthorizations")
    op.drop_column("job_payments", "customer_id")
    op.drop_column("job_payments", "payment_method")
