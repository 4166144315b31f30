"""payouts: money a worker takes out of their balance, weekly or on demand.

- `payouts`: one row per payout, recorded (`requested`) in the same transaction as its ledger
  `payout` move and before the provider is asked, so a crash in between leaves a row the
  sweeper retries under the same idempotency key (which the provider also sees). Its status
  follows `dispatch.domain.states.PayoutStatus`.
- `payout_runs`: the weekly runs that finished, by ISO week (`2026-W49`), so the sweeper
  knows whether this week's run still has to happen.
- `workers.payout_destination`: where a worker's payouts go (the simulator: any "acct_..."
  string, "fail" fails; Stripe: the connected account id); set at the first payout when
  empty.
- An index of payout events by arrival, for the sweeper's look at bank answers that came
  before the payout they answer had its provider id.

Revision ID: 0033
Revises: 0032
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0033"
down_revision = "0032"
branch_labels = None
depends_on = None

STATUSES = ("requested", "in_transit", "paid", "failed")
KINDS = ("weekly", "instant")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.add_column("workers", sa.Column("payout_destination", sa.String(255), nullable=True))
    op.create_table(
        "payouts",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("worker_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("fee_cents", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("destination", sa.String(255), nullable=False),
        sa.Column("provider_payout_id", sa.String(255), nullable=True),
        sa.Column("idempotency_key", sa.String(200), nullable=False, unique=True),
        sa.Column("failure", sa.String(200), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(_in("status", STATUSES), name="ck_payouts_status"),
        sa.CheckConstraint(_in("kind", KINDS), name="ck_payouts_kind"),
        sa.CheckConstraint("amount_cents > 0 AND fee_cents >= 0 AND fee_cents < amount_cents",
                           name="ck_payouts_amounts"),
    )
    op.create_index("ix_payouts_worker", "payouts", ["worker_id", "requested_at"])
    op.create_index("ix_payouts_provider_id", "payouts", ["provider_payout_id"], unique=True,
                    postgresql_where=sa.text("provider_payout_id IS NOT NULL"))
    op.create_index("ix_payouts_requested", "payouts", ["requested_at"],
                    postgresql_where=sa.text("status = 'requested'"))
    # The sweeper's look for bank answers that overtook their payout (services.payouts).
    op.create_index("ix_payment_events_payouts", "payment_events", ["received_at"],
                    postgresql_where=sa.text("type IN ('payout.paid', 'payout.failed')"))
    op.create_table(
        "payout_runs",
        sa.Column("week", sa.String(10), primary_key=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("payout_runs")
    op.drop_index("ix_payment_events_payouts", table_name="payment_events")
    op.drop_table("payouts")
    op.drop_column("workers", "payout_destination")
