"""The double-entry ledger: accounts, transactions and their entries, in integer cents.

Two triggers keep the books honest inside PostgreSQL, whoever writes to them:
- a constraint trigger, DEFERRABLE INITIALLY DEFERRED, checks at commit that each
  transaction's entries sum to zero per currency and that no transaction is left without
  entries (so the entries of one transaction may be inserted one by one);
- an append-only trigger refuses UPDATE and DELETE of entries and transactions, row by row,
  and TRUNCATE of either table. A correction is a new `adjustment` transaction.

The bypass, said plainly: TRUNCATE is allowed when the session sets
`dispatch.ledger_maintenance = 'on'` (`SET LOCAL dispatch.ledger_maintenance = 'on'`). The
test suite's cleanup does this between tests, and nothing in the product does. Anyone who can
set it (any role that can connect), or a superuser who disables the triggers or sets
`session_replication_role = replica`, can still rewrite history: these triggers stop
mistakes, not an attacker with database access. A tamper-evident record is issue 22's.
`flask ledger check` re-verifies every invariant from the rows themselves.

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None

ACCOUNT_KINDS = ("payer_funding", "escrow", "worker_balance", "platform_fees", "refunds",
                 "payouts_in_transit")
TRANSACTION_KINDS = ("hold", "capture", "release", "fee", "refund", "payout", "payout_failed",
                     "adjustment")
OWNER_CHECK = (
    "(kind IN ('escrow') AND job_id IS NOT NULL AND user_id IS NULL AND organization_id IS NULL)"
    " OR (kind IN ('worker_balance', 'payouts_in_transit') AND user_id IS NOT NULL"
    " AND job_id IS NULL AND organization_id IS NULL)"
    " OR (kind IN ('payer_funding', 'refunds') AND job_id IS NULL"
    " AND num_nonnulls(user_id, organization_id) = 1)"
    " OR (kind IN ('platform_fees') AND num_nonnulls(job_id, user_id, organization_id) = 0)"
)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "ledger_accounts",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("job_id", sa.BigInteger(), sa.ForeignKey("jobs.id"), nullable=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("organization_id", sa.Integer(), sa.ForeignKey("organizations.id"),
                  nullable=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.CheckConstraint(_in("kind", ACCOUNT_KINDS), name="ck_ledger_accounts_kind"),
        sa.CheckConstraint(OWNER_CHECK, name="ck_ledger_accounts_owner"),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="ck_ledger_accounts_currency"),
        sa.UniqueConstraint("kind", "job_id", "user_id", "organization_id", "currency",
                            name="ux_ledger_accounts_owner",
                            postgresql_nulls_not_distinct=True),
        sa.UniqueConstraint("id", "currency", name="ux_ledger_accounts_id_currency"),
    )
    op.create_table(
        "ledger_transactions",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("idempotency_key", sa.String(200), nullable=False, unique=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("job_id", sa.BigInteger(), sa.ForeignKey("jobs.id"), nullable=True),
        sa.Column("memo", sa.String(500), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.CheckConstraint(_in("kind", TRANSACTION_KINDS), name="ck_ledger_transactions_kind"),
    )
    op.create_index("ix_ledger_transactions_job", "ledger_transactions", ["job_id"],
                    postgresql_where=sa.text("job_id IS NOT NULL"))
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("transaction_id", sa.BigInteger(), sa.ForeignKey("ledger_transactions.id"),
                  nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.CheckConstraint("amount_cents <> 0", name="ck_ledger_entries_amount"),
        sa.ForeignKeyConstraint(["account_id", "currency"],
                                ["ledger_accounts.id", "ledger_accounts.currency"],
                                name="fk_ledger_entries_account_currency"),
    )
    op.create_index("ix_ledger_entries_account", "ledger_entries", ["account_id"],
                    postgresql_include=["amount_cents"])
    op.create_index("ix_ledger_entries_transaction", "ledger_entries", ["transaction_id"])

    op.execute("""
CREATE FUNCTION ledger_entries_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM ledger_entries WHERE transaction_id = NEW.transaction_id
              GROUP BY currency HAVING sum(amount_cents) <> 0) THEN
    RAISE EXCEPTION 'ledger transaction % does not sum to zero', NEW.transaction_id
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NULL;
END $$""")
    op.execute("""
CREATE FUNCTION ledger_transaction_has_entries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM ledger_entries WHERE transaction_id = NEW.id) THEN
    RAISE EXCEPTION 'ledger transaction % has no entries', NEW.id
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NULL;
END $$""")
    op.execute("""
CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'TRUNCATE'
     AND coalesce(current_setting('dispatch.ledger_maintenance', true), '') = 'on' THEN
    RETURN NULL;
  END IF;
  RAISE EXCEPTION 'the ledger is append-only: % on % refused', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END $$""")
    op.execute("""
CREATE CONSTRAINT TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_entries_balanced()""")
    op.execute("""
CREATE CONSTRAINT TRIGGER ledger_transaction_has_entries AFTER INSERT ON ledger_transactions
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_transaction_has_entries()""")
    for table in ("ledger_entries", "ledger_transactions"):
        op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                   "FOR EACH ROW EXECUTE FUNCTION ledger_append_only()")
        op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only()")


def downgrade() -> None:
    op.drop_table("ledger_entries")
    op.drop_table("ledger_transactions")
    op.drop_table("ledger_accounts")
    for function in ("ledger_append_only", "ledger_transaction_has_entries",
                     "ledger_entries_balanced"):
        op.execute(f"DROP FUNCTION {function}()")
