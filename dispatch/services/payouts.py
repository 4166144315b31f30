"""Worker payouts: the whole balance weekly, or part of it on demand for a fee, and what the
bank's answer does to it.

How money leaves the books:
- A payout is one ledger `payout` transaction, worker_balance -> payouts_in_transit (an
  instant payout's fee goes to platform_fees in the same transaction), posted in the SAME
  database transaction as the `payouts` row that records it as `requested`.
- Only after that commit is the provider asked (a network call, outside every row lock),
  under the payout's own idempotency key. A crash in between leaves a `requested` row: the
  sweeper asks again with the same key, so the bank sends the money once.
- The provider's `payout.failed` event moves the money back (payouts_in_transit ->
  worker_balance, and the instant fee back from platform_fees: the platform kept no
  promise) and marks it failed; `payout.paid` marks it paid. Paid money stays in
  payouts_in_transit: the ledger has no account for money outside the platform, and the
  account's balance is then "sent to the worker's bank", settled or not (the payouts rows
  say which). A `paid_out` account kind is a later step if statements need it.

The weekly run (PAYOUT_WEEKDAY, PAYOUT_HOUR, service time zone) pays every positive balance
under the key f"payout:weekly:{worker}:{iso week}", so running it twice pays once. An RQ
timer runs it; the sweeper runs a due week that has no `payout_runs` row (the timer was
lost), retries `requested` payouts, and applies a bank answer that arrived before the
provider's reply to us had been recorded (`_answers_overtaken`)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from dispatch.db import clock
from dispatch.db.models import Payout, PayoutRun
from dispatch.domain.errors import Conflict, invalid, refusal
from dispatch.domain.money import (
    AccountKind,
    PayoutKind,
    TransactionKind,
    check_amount,
    format_cents,
)
from dispatch.domain.states import PayoutStatus, payout_from, sql_in
from dispatch.infra import queues
from dispatch.infra.config import Settings
from dispatch.infra.payments.base import (
    PAYOUT_FAILED,
    PAYOUT_PAID,
    PaymentError,
    PaymentProvider,
    PaymentRejected,
    ProviderEvent,
)
from dispatch.services import ledger
from dispatch.services.context import settings
from dispatch.services.ledger import Entry

log = logging.getLogger(__name__)

# Above this an amount is a typo, not a payout (and far below what bigint or JS can hold).
MAX_PAYOUT_CENTS = 100_000_000
MAX_CLIENT_KEY_CHARS = 100
# A `requested` payout younger than this may still be in its first provider call.
RETRY_AFTER = timedelta(seconds=60)
SWEEP_BATCH = 100
# How far back the sweeper looks for a bank answer that came before its payout's reply.
OVERTAKEN_WITHIN = timedelta(days=1)


def destination_of(session: Session, worker_id: int) -> str | None:
    """The worker's payout destination, or None while their account cannot receive payouts
    (Stripe: not onboarded yet; the money waits in the balance). The simulator's account is
    made, enabled, on first use, as `payout_accounts.set_up` would (one statement: two
    first payouts at once agree on it)."""
    if settings().payment_provider != "simulated":
        found = session.execute(text(
            "SELECT payout_destination FROM workers WHERE user_id = :w AND payouts_enabled"),
            {"w": worker_id}).scalar()
        return None if found is None else str(found)
    return str(session.execute(text("""
UPDATE workers SET payout_destination = coalesce(payout_destination, :default),
       payouts_enabled = true
 WHERE user_id = :w RETURNING payout_destination"""),
        {"w": worker_id, "default": f"acct_sim_{worker_id}"}).scalar_one())


def _locked_balance(session: Session, worker_id: int, currency: str) -> int:
    """The worker's balance, its account row locked: the ledger's lock order (one account
    row), so payouts of one balance run one after the other and none overdraws it."""
    account = ledger.account(session, AccountKind.WORKER_BALANCE, user_id=worker_id,
                             currency=currency)
    session.execute(text("SELECT id FROM ledger_accounts WHERE id = :a FOR UPDATE"),
                    {"a": account.id})
    return ledger.balance(session, account)


def _record(session: Session, worker_id: int, kind: PayoutKind, amount: int, fee: int,
            currency: str, key: str) -> Payout | None:
    """The `requested` row, or None when this key is taken (by a concurrent request)."""
    now = clock.now()
    payout_id = session.execute(
        insert(Payout).values(worker_id=worker_id, amount_cents=amount, fee_cents=fee,
                              currency=currency, kind=kind.value,
                              status=PayoutStatus.REQUESTED.value,
                              destination=str(destination_of(session, worker_id)),
                              idempotency_key=key, requested_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=[Payout.idempotency_key])
        .returning(Payout.id)).scalar()
    return None if payout_id is None else session.get(Payout, payout_id)


def _by_key(session: Session, key: str) -> Payout | None:
    return session.execute(select(Payout).where(Payout.idempotency_key == key)).scalar()


# --- on demand -----------------------------------------------------------------------------

def request_instant(session: Session, provider: PaymentProvider, worker_id: int,
                    amount_cents: object, client_key: str | None) -> tuple[Payout, bool]:
    """`amount_cents` out of the worker's balance now, the fee taken from it; the payout and
    whether this call made it (a repeated Idempotency-Key answers the first one)."""
    s = settings()
    amount = check_amount(amount_cents, "amount_cents")
    if amount > MAX_PAYOUT_CENTS:
        raise invalid("amount_cents", "number.too_large",
                      limit=format_cents(MAX_PAYOUT_CENTS, s.currency))
    minimum = max(s.instant_payout_min_cents, s.instant_payout_fee_cents + 1)
    if amount < minimum:
        raise invalid("amount_cents", "payout.below_minimum",
                      minimum=format_cents(minimum, s.currency))
    key = f"payout:instant:{worker_id}:{_client_key(client_key)}"
    existing = _by_key(session, key)
    if existing is not None:
        return _same_or_conflict(existing, amount), False
    if destination_of(session, worker_id) is None:
        raise refusal(Conflict, "payout_account_needed", "payout_account",
                      "payout.account_needed")
    balance = _locked_balance(session, worker_id, s.currency)
    if amount > balance:
        raise refusal(Conflict, "insufficient_funds", "amount_cents", "payout.over_balance",
                      balance=format_cents(balance, s.currency))
    payout = _record(session, worker_id, PayoutKind.INSTANT, amount,
                     s.instant_payout_fee_cents, s.currency, key)
    if payout is None:  # the same key, posted meanwhile by a concurrent retry
        session.rollback()
        found = _by_key(session, key)
        assert found is not None
        return _same_or_conflict(found, amount), False
    _post_payout(session, payout)
    session.commit()
    return send(session, provider, payout.id), True


def _client_key(client_key: str | None) -> str:
    if client_key is None:
        return uuid.uuid4().hex  # no key: every request is a payout of its own
    if not client_key.strip():
        raise invalid("idempotency_key", "required")
    if len(client_key) > MAX_CLIENT_KEY_CHARS:
        raise invalid("idempotency_key", "idempotency_key.too_long",
                      max_length=MAX_CLIENT_KEY_CHARS)
    return client_key


def _same_or_conflict(existing: Payout, amount: int) -> Payout:
    if existing.amount_cents != amount:
        raise refusal(Conflict, "idempotency_conflict", "idempotency_key", "ledger.key_reused")
    return existing


def _post_payout(session: Session, payout: Payout) -> None:
    """The ledger side of a recorded payout: its whole amount out of the balance, the fee to
    the platform, the rest in transit."""
    entries = _entries(session, payout)
    ledger.post(session, payout.idempotency_key, TransactionKind.PAYOUT, entries,
                memo=f"{payout.kind} payout {payout.id}")


def _entries(session: Session, payout: Payout, sign: int = 1) -> list[Entry]:
    def of(kind: AccountKind, owned: bool = True) -> ledger.Account:
        return ledger.account(session, kind, user_id=payout.worker_id if owned else None,
                              currency=payout.currency)

    entries = [Entry(of(AccountKind.WORKER_BALANCE), -sign * payout.amount_cents),
               Entry(of(AccountKind.PAYOUTS_IN_TRANSIT),
                     sign * (payout.amount_cents - payout.fee_cents))]
    if payout.fee_cents:
        entries.append(Entry(of(AccountKind.PLATFORM_FEES, owned=False),
                             sign * payout.fee_cents))
    return entries


# --- the provider call, and its answer -----------------------------------------------------

def send(session: Session, provider: PaymentProvider, payout_id: int) -> Payout:
    """Ask the provider for a recorded payout (again: the key makes a retry pay once). An
    outage leaves it `requested` for the sweeper; a refusal fails it, money back."""
    payout = session.get(Payout, payout_id)
    assert payout is not None
    if payout.status != PayoutStatus.REQUESTED.value:
        return payout
    try:
        answer = provider.payout(payout.destination, payout.amount_cents - payout.fee_cents,
                                 payout.currency, payout.idempotency_key)
    except PaymentError as exc:
        log.warning("payout %s not sent yet (the sweeper retries): %s", payout.id, exc)
        session.rollback()
        return payout
    except PaymentRejected as exc:
        session.rollback()
        _fail(session, payout.id, exc.code)
        session.commit()
        return _fresh(session, payout.id)
    session.execute(text(f"""
UPDATE payouts SET status = :status, provider_payout_id = :pid, updated_at = :now
 WHERE id = :id AND status IN {_sql(payout_from(PayoutStatus.IN_TRANSIT))}"""),
        {"status": PayoutStatus.IN_TRANSIT.value, "pid": answer.id, "now": clock.now(),
         "id": payout.id})
    session.commit()
    return _fresh(session, payout.id)


def _fresh(session: Session, payout_id: int) -> Payout:
    session.expire_all()
    found = session.get(Payout, payout_id)
    assert found is not None
    return found


def _sql(values: list[str]) -> str:
    return sql_in(tuple(PayoutStatus(v) for v in values))


def _fail(session: Session, payout_id: int, reason: str) -> bool:
    """Failed, and its money back in the balance (fee included), once: the guarded UPDATE
    decides which of two deliveries of the answer moves the money."""
    row = session.execute(text(f"""
UPDATE payouts SET status = :failed, failure = :why, updated_at = :now
 WHERE id = :id AND status IN {_sql(payout_from(PayoutStatus.FAILED))} RETURNING id"""),
        {"failed": PayoutStatus.FAILED.value, "why": reason[:200], "now": clock.now(),
         "id": payout_id}).first()
    if row is None:
        return False
    payout = session.get(Payout, payout_id)
    assert payout is not None
    session.refresh(payout)
    ledger.post(session, f"payout_failed:{payout.idempotency_key}",
                TransactionKind.PAYOUT_FAILED, _entries(session, payout, sign=-1),
                memo=f"payout {payout.id} failed: {reason[:100]}")
    return True


def provider_payout_event(session: Session, event: ProviderEvent) -> None:
    """The bank's answer to a payout (`payout.paid` / `payout.failed`), in the caller's
    transaction. An answer to a payout we do not know changes nothing."""
    if event.type not in (PAYOUT_PAID, PAYOUT_FAILED):
        return
    payout_id = session.execute(text(
        "SELECT id FROM payouts WHERE provider_payout_id = :pid FOR UPDATE"),
        {"pid": event.object_id}).scalar()
    if payout_id is None:
        log.warning("payout event %s for unknown payout %s", event.id, event.object_id)
        return
    if event.type == PAYOUT_FAILED:
        _fail(session, payout_id, str(event.data.get("failure_code") or "payout.failed"))
        return
    session.execute(text(f"""
UPDATE payouts SET status = :paid, updated_at = :now
 WHERE id = :id AND status IN {_sql(payout_from(PayoutStatus.PAID))}"""),
        {"paid": PayoutStatus.PAID.value, "now": clock.now(), "id": payout_id})


# --- weekly --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Week:
    label: str  # ISO week of the run's local date, "2026-W49"
    due_at: datetime  # when its run is due (aware)


def due_week(now: datetime, s: Settings) -> Week:
    """The latest weekly run due at or before `now` (service time zone)."""
    zone = ZoneInfo(s.service_timezone)
    local = now.astimezone(zone)
    day = local.date() - timedelta(days=(local.weekday() - s.payout_weekday) % 7)
    due = datetime(day.year, day.month, day.day, s.payout_hour, tzinfo=zone)
    if due > local:
        due -= timedelta(days=7)
        due = datetime(due.year, due.month, due.day, s.payout_hour, tzinfo=zone)
    year, week, _ = due.isocalendar()
    return Week(f"{year}-W{week:02d}", due)


def run_weekly(session: Session, provider: PaymentProvider) -> int:
    """Pay every positive balance for the week now due; how many payouts this run made.
    Safe to run again (RQ timer, sweeper, twice at once): one payout per worker and week."""
    s = settings()
    week = due_week(clock.now(), s)
    workers = session.execute(text(f"""
SELECT a.user_id FROM ledger_accounts a JOIN ledger_entries e ON e.account_id = a.id
 WHERE a.kind = '{AccountKind.WORKER_BALANCE.value}' AND a.currency = :currency
 GROUP BY a.user_id HAVING sum(e.amount_cents) > 0 ORDER BY a.user_id"""),
        {"currency": s.currency}).scalars().all()
    session.rollback()
    made = 0
    for worker_id in workers:
        payout_id = _weekly_payout(session, worker_id, week, s.currency)
        if payout_id is not None:
            made += 1
            send(session, provider, payout_id)
    session.execute(insert(PayoutRun).values(week=week.label, finished_at=clock.now())
                    .on_conflict_do_nothing(index_elements=[PayoutRun.week]))
    session.commit()
    _schedule_next(week)
    return made


def _weekly_payout(session: Session, worker_id: int, week: Week, currency: str) -> int | None:
    """Record and post this worker's payout of the week (committed), or None when it was
    made already or there is nothing to pay."""
    key = f"payout:weekly:{worker_id}:{week.label}"
    if _by_key(session, key) is not None:
        session.rollback()
        return None
    balance = _locked_balance(session, worker_id, currency)
    if balance <= 0 or destination_of(session, worker_id) is None:  # no account: it waits
        session.rollback()
        return None
    payout = _record(session, worker_id, PayoutKind.WEEKLY, balance, 0, currency, key)
    if payout is None:
        session.rollback()
        return None
    _post_payout(session, payout)
    session.commit()
    return payout.id


def _schedule_next(week: Week) -> None:
    """The RQ timer of the next week's run (a lost one is the sweeper's to make up)."""
    following = due_week(week.due_at + timedelta(days=7, hours=1), settings())
    try:
        queues.schedule_weekly_payouts(following.due_at, following.label)
    except Exception:
        log.exception("could not schedule the weekly payouts of %s", following.label)


def sweep(session: Session, provider: PaymentProvider) -> int:
    """The backstop: this week's run if it has not happened, and payouts left `requested`
    by a crash or an outage, asked again under their keys. How many it moved."""
    week = due_week(clock.now(), settings())
    done = session.get(PayoutRun, week.label)
    moved = 0 if done is not None else run_weekly(session, provider)
    stuck = session.execute(text(f"""
SELECT id FROM payouts WHERE status = '{PayoutStatus.REQUESTED.value}' AND requested_at < :before
 ORDER BY requested_at LIMIT {SWEEP_BATCH}"""),
        {"before": clock.now() - RETRY_AFTER}).scalars().all()
    session.rollback()
    for payout_id in stuck:
        if send(session, provider, payout_id).status != PayoutStatus.REQUESTED.value:
            moved += 1
    return moved + _answers_overtaken(session)


def _answers_overtaken(session: Session) -> int:
    """Bank answers recorded before their payout had its provider id (the answer overtook
    the provider's reply to us): applied now, so no payout stays in transit for ever."""
    events = session.execute(text(f"""
SELECT e.id, e.type, e.object_id, e.data FROM payment_events e
  JOIN payouts p ON p.provider_payout_id = e.object_id
 WHERE e.type IN ('{PAYOUT_PAID}', '{PAYOUT_FAILED}') AND e.received_at > :since
   AND p.status = '{PayoutStatus.IN_TRANSIT.value}' AND p.updated_at < :before
 ORDER BY e.received_at LIMIT {SWEEP_BATCH}"""),
        {"since": clock.now() - OVERTAKEN_WITHIN, "before": clock.now() - RETRY_AFTER}).all()
    for row in events:
        provider_payout_event(session, ProviderEvent(row.id, row.type, row.object_id,
                                                     dict(row.data)))
        session.commit()
    session.rollback()
    return len(events)


# --- what the worker sees ------------------------------------------------------------------

def payouts_of(session: Session, worker_id: int, limit: int = 20) -> list[Payout]:
    return list(session.execute(
        select(Payout).where(Payout.worker_id == worker_id)
        .order_by(Payout.requested_at.desc(), Payout.id.desc()).limit(limit)).scalars())


@dataclass(frozen=True)
class Totals:
    jobs_paid: int
    gross_cents: int
    platform_fees_cents: int
    net_cents: int


@dataclass(frozen=True)
class Earnings:
    currency: str
    time_zone: str
    today: Totals
    week: Totals
    balance_cents: int
    instant_min_cents: int
    instant_fee_cents: int
    payouts: list[Payout]


def earnings(session: Session, worker_id: int) -> Earnings:
    """Today's and this week's releases to the worker (jobs paid, what the payer's escrow
    gave, the platform's fee out of it, what the worker got), from the ledger's entries, in
    the service time zone; the balance; the latest payouts."""
    s = settings()
    zone = ZoneInfo(s.service_timezone)
    local = clock.now().astimezone(zone)
    today = datetime(local.year, local.month, local.day, tzinfo=zone)
    monday = today - timedelta(days=today.weekday())
    monday = datetime(monday.year, monday.month, monday.day, tzinfo=zone)
    balance = ledger.account(session, AccountKind.WORKER_BALANCE, user_id=worker_id,
                             currency=s.currency)
    found = Earnings(s.currency, s.service_timezone, _totals(session, balance.id, today),
                     _totals(session, balance.id, monday), ledger.balance(session, balance),
                     max(s.instant_payout_min_cents, s.instant_payout_fee_cents + 1),
                     s.instant_payout_fee_cents, payouts_of(session, worker_id))
    session.rollback()  # the account may have been created: nothing to keep
    return found


def _totals(session: Session, balance_account: int, since: datetime) -> Totals:
    row = session.execute(text(f"""
WITH paid AS (
  SELECT t.id FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id
   WHERE e.account_id = :account AND t.kind = '{TransactionKind.RELEASE.value}'
     AND t.created_at >= :since AND e.amount_cents > 0)
SELECT count(DISTINCT p.id) AS jobs,
       coalesce(sum(-e.amount_cents) FILTER (WHERE a.kind = '{AccountKind.ESCROW.value}'), 0)
         AS gross,
       coalesce(sum(e.amount_cents) FILTER (WHERE a.kind = '{AccountKind.PLATFORM_FEES.value}'),
                0) AS fees,
       coalesce(sum(e.amount_cents) FILTER (WHERE e.account_id = :account), 0) AS net
  FROM paid p JOIN ledger_entries e ON e.transaction_id = p.id
  JOIN ledger_accounts a ON a.id = e.account_id"""),
        {"account": balance_account, "since": since}).one()
    return Totals(int(row.jobs), int(row.gross), int(row.fees), int(row.net))
