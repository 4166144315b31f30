"""The double-entry ledger: every money movement is one transaction of signed entries that
sum to zero per currency, posted once per idempotency key.

Conventions (`dispatch.domain.money` holds the vocabulary): a positive entry adds to its
account's balance, a negative one takes from it. An account's balance is the sum of its
entries, never a stored number.

Nothing here commits: a movement belongs to the caller's transaction (a booking's hold
commits or rolls back with the booking). PostgreSQL checks the balance of each transaction at
commit (a deferred constraint trigger) and refuses to change or remove a posted row.

Concurrency:
- The same key posted twice, even at once from many threads, posts once: the transaction row
  is inserted with `ON CONFLICT (idempotency_key) DO NOTHING`, and a loser reads the winner's.
- Accounts that must never go negative (`NEVER_NEGATIVE`) are checked under a row lock on the
  account rows this transaction takes money from, taken in ascending id order (the lock
  order: every `post` takes them the same way, so two posts cannot deadlock on them). Two
  concurrent posts out of one escrow therefore run one after the other, and the second sees
  the first's entries (READ COMMITTED: each statement reads what has committed). Accounts that
  only receive money are not locked, so the platform's fee account is no queue."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from dispatch.domain.errors import Conflict, DomainError, invalid, refusal
from dispatch.domain.money import (
    ACCOUNT_OWNER,
    DEFAULT_CURRENCY,
    ESCROW_EMPTY_JOB_STATUSES,
    NEVER_NEGATIVE,
    AccountKind,
    Owner,
    TransactionKind,
    check_amount,
    unbalanced,
)
from dispatch.domain.states import sql_in

MAX_KEY_CHARS = 200
MAX_MEMO_CHARS = 500
# Lets this transaction TRUNCATE the ledger (migration 0031): for emptying scratch databases
# (the tests' cleanup, benchmarks, the city simulation's reset), never for the product's.
ALLOW_TRUNCATE = "SET LOCAL dispatch.ledger_maintenance = 'on'"


@dataclass(frozen=True)
class Account:
    id: int
    kind: AccountKind
    currency: str


@dataclass(frozen=True)
class Entry:
    account: Account
    amount_cents: int  # signed: positive adds to the account's balance


@dataclass(frozen=True)
class Payer:
    """Who pays: a resident (user) or an organization, exactly one."""

    user_id: int | None = None
    organization_id: int | None = None


@dataclass(frozen=True)
class Transaction:
    id: int
    idempotency_key: str
    kind: TransactionKind
    job_id: int | None
    entries: tuple[tuple[int, int], ...]  # (account id, amount) sorted
    posted: bool  # False when the key was already posted and this call changed nothing


def account(session: Session, kind: AccountKind, *, job_id: int | None = None,
            user_id: int | None = None, organization_id: int | None = None,
            currency: str = DEFAULT_CURRENCY) -> Account:
    """The account of this kind, owner and currency, created on first use. Race-safe: two
    callers creating it at once both get the one row (the unique owner constraint decides)."""
    _check_owner(kind, job_id, user_id, organization_id)
    params = {"kind": kind.value, "job": job_id, "user": user_id, "org": organization_id,
              "currency": currency}
    row = session.execute(text("""
INSERT INTO ledger_accounts (kind, job_id, user_id, organization_id, currency)
VALUES (:kind, :job, :user, :org, :currency)
ON CONFLICT ON CONSTRAINT ux_ledger_accounts_owner DO NOTHING RETURNING id"""), params).first()
    if row is None:
        row = session.execute(text("""
SELECT id FROM ledger_accounts
 WHERE kind = :kind AND job_id IS NOT DISTINCT FROM CAST(:job AS bigint)
   AND user_id IS NOT DISTINCT FROM CAST(:user AS integer)
   AND organization_id IS NOT DISTINCT FROM CAST(:org AS integer) AND currency = :currency"""),
            params).one()
    return Account(row.id, kind, currency)


def _check_owner(kind: AccountKind, job_id: int | None, user_id: int | None,
                 organization_id: int | None) -> None:
    """A programming error, not bad input: the owner must be what the kind says."""
    given = {"job_id": job_id, "user_id": user_id, "organization_id": organization_id}
    present = {name for name, value in given.items() if value is not None}
    owner = ACCOUNT_OWNER[kind]
    ok = {Owner.JOB: present == {"job_id"}, Owner.USER: present == {"user_id"},
          Owner.PAYER: present in ({"user_id"}, {"organization_id"}),
          Owner.PLATFORM: not present}[owner]
    if not ok:
        raise ValueError(f"a {kind.value} account is owned by {owner.value}, not {present}")


def balance(session: Session, of: Account) -> int:
    return int(session.execute(text(
        "SELECT coalesce(sum(amount_cents), 0) FROM ledger_entries WHERE account_id = :a"),
        {"a": of.id}).scalar_one())


def post(session: Session, idempotency_key: str, kind: TransactionKind,
         entries: Sequence[Entry], job_id: int | None = None, memo: str = "") -> Transaction:
    """Post one balanced transaction, or return the one already posted under this key. The
    same key with different entries (or kind, or job) is a Conflict naming the key (the memo
    is words, not compared); taking an account that must never go negative below zero is a
    Conflict naming the amount. The caller commits."""
    _check_key(idempotency_key)
    wanted = _validated(entries)
    if len(memo) > MAX_MEMO_CHARS:
        raise invalid("memo", "text.too_long", max_length=MAX_MEMO_CHARS)
    existing = _existing(session, idempotency_key)
    if existing is not None:
        return _same_or_conflict(existing, kind, job_id, wanted)
    taken, locked = _lock_debited(session, entries)
    if locked:
        # The lock may have been waited for behind a post of this very key: a retry must get
        # that transaction back, not a refusal for the money it already moved.
        existing = _existing(session, idempotency_key)
        if existing is not None:
            return _same_or_conflict(existing, kind, job_id, wanted)
        _check_funds(session, taken, locked)
    row = session.execute(text("""
INSERT INTO ledger_transactions (idempotency_key, kind, job_id, memo)
VALUES (:key, :kind, :job, :memo)
ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"""),
        {"key": idempotency_key, "kind": kind.value, "job": job_id, "memo": memo}).first()
    if row is None:  # posted meanwhile by someone else with the same key (now committed)
        existing = _existing(session, idempotency_key)
        assert existing is not None
        return _same_or_conflict(existing, kind, job_id, wanted)
    session.execute(text("""
INSERT INTO ledger_entries (transaction_id, account_id, amount_cents, currency)
SELECT :tx, a, m, c FROM unnest(CAST(:accounts AS bigint[]), CAST(:amounts AS bigint[]),
                                CAST(:currencies AS text[])) AS e(a, m, c)"""),
        {"tx": row.id, "accounts": [e.account.id for e in entries],
         "amounts": [e.amount_cents for e in entries],
         "currencies": [e.account.currency for e in entries]})
    return Transaction(row.id, idempotency_key, kind, job_id, wanted, posted=True)


def _check_key(key: object) -> None:
    if not isinstance(key, str) or not key.strip():
        raise invalid("idempotency_key", "required")
    if len(key) > MAX_KEY_CHARS:
        raise invalid("idempotency_key", "idempotency_key.too_long", max_length=MAX_KEY_CHARS)


def _validated(entries: Sequence[Entry]) -> tuple[tuple[int, int], ...]:
    """Whole non-zero amounts summing to zero per currency, at least two of them."""
    totals: Counter[str] = Counter()
    for entry in entries:
        if isinstance(entry.amount_cents, bool) or not isinstance(entry.amount_cents, int):
            raise invalid("amount_cents", "amount.not_whole")
        if entry.amount_cents == 0:
            raise invalid("amount_cents", "ledger.zero_entry")
        totals[entry.account.currency] += entry.amount_cents
    if len(entries) < 2 or any(totals.values()):
        raise unbalanced()
    return tuple(sorted((e.account.id, e.amount_cents) for e in entries))


def _existing(session: Session, key: str) -> Transaction | None:
    rows = session.execute(text("""
SELECT t.id, t.kind, t.job_id, e.account_id, e.amount_cents
  FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id
 WHERE t.idempotency_key = :key"""), {"key": key}).all()
    if not rows:
        return None
    return Transaction(rows[0].id, key, TransactionKind(rows[0].kind), rows[0].job_id,
                       tuple(sorted((r.account_id, r.amount_cents) for r in rows)),
                       posted=False)


def _same_or_conflict(existing: Transaction, kind: TransactionKind, job_id: int | None,
                      wanted: tuple[tuple[int, int], ...]) -> Transaction:
    if (existing.kind, existing.job_id, existing.entries) != (kind, job_id, wanted):
        raise refusal(Conflict, "idempotency_conflict", "idempotency_key", "ledger.key_reused")
    return existing


def _lock_debited(session: Session,
                  entries: Sequence[Entry]) -> tuple[Counter[int], list[int]]:
    """What this transaction does to each account, and the never-negative accounts it takes
    from, locked in id order (the lock order)."""
    taken: Counter[int] = Counter()
    for entry in entries:
        taken[entry.account.id] += entry.amount_cents
    debited = sorted(a for a, amount in taken.items() if amount < 0)
    if not debited:
        return taken, []
    locked = session.execute(text(f"""
SELECT id FROM ledger_accounts
 WHERE id = ANY(:ids) AND kind IN {sql_in(NEVER_NEGATIVE)}
 ORDER BY id FOR UPDATE"""), {"ids": debited}).scalars().all()
    return taken, list(locked)


def _check_funds(session: Session, taken: Counter[int], locked: list[int]) -> None:
    """Each locked account keeps a balance of zero or more after this transaction."""
    balances = {row.account_id: int(row.total) for row in session.execute(text("""
SELECT account_id, sum(amount_cents) AS total FROM ledger_entries
 WHERE account_id = ANY(:ids) GROUP BY account_id"""), {"ids": locked})}
    for account_id in locked:
        if balances.get(account_id, 0) + taken[account_id] < 0:
            raise insufficient()


def insufficient() -> DomainError:
    return refusal(Conflict, "insufficient_funds", "amount_cents", "ledger.insufficient")


# --- the movements money makes, as thin helpers over `post` --------------------------------
# Each takes amounts from outside through `check_amount`, so a bad one is refused by name.

def _payer_account(session: Session, kind: AccountKind, payer: Payer,
                   currency: str) -> Account:
    return account(session, kind, user_id=payer.user_id,
                   organization_id=payer.organization_id, currency=currency)


def hold(session: Session, job_id: int, payer: Payer, cents: int, key: str,
         currency: str = DEFAULT_CURRENCY) -> Transaction:
    """The payer's money into the job's escrow (the provider has authorised it)."""
    cents = check_amount(cents, "amount_cents")
    source = _payer_account(session, AccountKind.PAYER_FUNDING, payer, currency)
    escrow = account(session, AccountKind.ESCROW, job_id=job_id, currency=currency)
    return post(session, key, TransactionKind.HOLD,
                [Entry(source, -cents), Entry(escrow, cents)], job_id=job_id)


def release(session: Session, job_id: int, worker_user_id: int, cents: int, fee_cents: int,
            key: str, currency: str = DEFAULT_CURRENCY) -> Transaction:
    """`cents` out of the job's escrow: the platform's fee to the fee account, the rest to
    the worker's balance."""
    cents = check_amount(cents, "amount_cents")
    fee_cents = check_amount(fee_cents, "fee_cents", positive=False)
    if fee_cents > cents:
        raise invalid("fee_cents", "number.too_large", limit=cents)
    escrow = account(session, AccountKind.ESCROW, job_id=job_id, currency=currency)
    entries = [Entry(escrow, -cents)]
    if cents - fee_cents:
        entries.append(Entry(account(session, AccountKind.WORKER_BALANCE,
                                     user_id=worker_user_id, currency=currency),
                             cents - fee_cents))
    if fee_cents:
        entries.append(Entry(account(session, AccountKind.PLATFORM_FEES, currency=currency),
                             fee_cents))
    return post(session, key, TransactionKind.RELEASE, entries, job_id=job_id)


def refund(session: Session, job_id: int, payer: Payer, cents: int, key: str,
           currency: str = DEFAULT_CURRENCY) -> Transaction:
    """`cents` out of the job's escrow back to the payer."""
    cents = check_amount(cents, "amount_cents")
    escrow = account(session, AccountKind.ESCROW, job_id=job_id, currency=currency)
    refunds = _payer_account(session, AccountKind.REFUNDS, payer, currency)
    return post(session, key, TransactionKind.REFUND,
                [Entry(escrow, -cents), Entry(refunds, cents)], job_id=job_id)


def payout(session: Session, worker_user_id: int, cents: int, key: str,
           currency: str = DEFAULT_CURRENCY) -> Transaction:
    """`cents` of the worker's balance sent towards their bank."""
    return _worker_move(session, TransactionKind.PAYOUT, worker_user_id, cents, key, currency)


def payout_failed(session: Session, worker_user_id: int, cents: int, key: str,
                  currency: str = DEFAULT_CURRENCY) -> Transaction:
    """A payout the bank returned: back to the worker's balance."""
    return _worker_move(session, TransactionKind.PAYOUT_FAILED, worker_user_id, cents, key,
                        currency)


def _worker_move(session: Session, kind: TransactionKind, worker_user_id: int, cents: int,
                 key: str, currency: str) -> Transaction:
    """Between a worker's balance and their payouts in transit: out for a payout, back for
    a failed one."""
    cents = check_amount(cents, "amount_cents")
    earned = account(session, AccountKind.WORKER_BALANCE, user_id=worker_user_id,
                     currency=currency)
    transit = account(session, AccountKind.PAYOUTS_IN_TRANSIT, user_id=worker_user_id,
                      currency=currency)
    outward = 1 if kind is TransactionKind.PAYOUT else -1
    return post(session, key, kind,
                [Entry(earned, -outward * cents), Entry(transit, outward * cents)])


# --- `flask ledger check` ------------------------------------------------------------------

def check(session: Session) -> list[str]:
    """Every invariant of the books, re-verified from the rows (the triggers can be switched
    off by a superuser; this cannot): one line per thing found wrong, none when all is well."""
    problems: list[str] = []
    for tx, currency, total in session.execute(text("""
SELECT t.id, e.currency, coalesce(sum(e.amount_cents), 0)
  FROM ledger_transactions t LEFT JOIN ledger_entries e ON e.transaction_id = t.id
 GROUP BY t.id, e.currency
HAVING coalesce(sum(e.amount_cents), 0) <> 0 OR e.currency IS NULL ORDER BY t.id""")):
        if currency is None:
            problems.append(f"transaction {tx} has no entries")
        else:
            problems.append(f"transaction {tx} sums to {total} {currency}, not zero")
    for entry, tx in session.execute(text("""
SELECT e.id, e.transaction_id FROM ledger_entries e
 WHERE NOT EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.id = e.transaction_id)
 ORDER BY e.id""")):
        problems.append(f"entry {entry} belongs to no transaction (transaction {tx} is missing)")
    for entry, account_id, currency, expected in session.execute(text("""
SELECT e.id, e.account_id, e.currency, a.currency FROM ledger_entries e
  LEFT JOIN ledger_accounts a ON a.id = e.account_id
 WHERE a.currency IS DISTINCT FROM e.currency ORDER BY e.id""")):
        problems.append(f"entry {entry} is in {currency} but account {account_id} is in "
                        f"{expected or 'no account at all'}")
    for account_id, kind, total in session.execute(text(f"""
SELECT a.id, a.kind, sum(e.amount_cents) FROM ledger_accounts a
  JOIN ledger_entries e ON e.account_id = a.id
 WHERE a.kind IN {sql_in(NEVER_NEGATIVE)}
 GROUP BY a.id, a.kind HAVING sum(e.amount_cents) < 0 ORDER BY a.id""")):
        problems.append(f"{kind} account {account_id} is negative: {total}")
    for job, status, account_id, total in session.execute(text(f"""
SELECT j.id, j.status, a.id, sum(e.amount_cents) FROM jobs j
  JOIN ledger_accounts a ON a.job_id = j.id AND a.kind = '{AccountKind.ESCROW.value}'
  JOIN ledger_entries e ON e.account_id = a.id
 WHERE j.status IN {sql_in(ESCROW_EMPTY_JOB_STATUSES)}
 GROUP BY j.id, j.status, a.id HAVING sum(e.amount_cents) <> 0 ORDER BY j.id""")):
        problems.append(f"job {job} is {status} but its escrow (account {account_id}) "
                        f"still holds {total}")
    return problems
