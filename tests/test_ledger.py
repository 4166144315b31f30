"""The double-entry ledger against the real PostgreSQL: balanced or refused, append-only,
posted once per key even when 20 threads race, never overdrawn, and `flask ledger check`
finding what a corrupted ledger hides."""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from flask import Flask
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from dispatch.db import db
from dispatch.db.models import Role
from dispatch.domain.errors import Conflict, DomainError, InvalidInput
from dispatch.domain.money import (
    AccountKind,
    TransactionKind,
    check_amount,
    check_currency,
    format_cents,
)
from dispatch.services import ledger
from dispatch.services.ledger import Entry, Payer
from tests.conftest import LEDGER_MAINTENANCE
from tests.helpers import Factory, sql

THREADS = 20
_keys = itertools.count(1)


def _job(app: Flask, resident_id: int, status: str = "dispatching") -> int:
    [(job_id,)] = sql(app, """
INSERT INTO jobs (resident_id, category_id, description, location, urgency, status,
                  requested_at, arrive_by, idempotency_key, request_fingerprint)
VALUES (:r, (SELECT id FROM categories WHERE slug = 'leak-repair'), 'ledger test',
        ST_GeogFromText('POINT(-122.42 37.77)'), 'urgent', :s, now(),
        now() + interval '2 hours', gen_random_uuid()::text, 'ledger') RETURNING id""",
        r=resident_id, s=status)
    return job_id


def _key(what: str) -> str:
    return f"{what}-{next(_keys)}"


def _people(app: Flask, make: Factory) -> tuple[int, int, int]:
    """A resident, a worker and a job of the resident's."""
    resident, _ = make.user(Role.RESIDENT)
    worker, _ = make.user(Role.WORKER)
    return resident, worker, _job(app, resident)


def _held(app: Flask, make: Factory, cents: int) -> tuple[int, int, int]:
    resident, worker, job = _people(app, make)
    with app.app_context():
        ledger.hold(db.session, job, Payer(user_id=resident), cents, _key("hold"))
        db.session.commit()
    return resident, worker, job


def _race(app: Flask, work: Callable[[], Any]) -> list[Any]:
    """`work` on THREADS real threads at once, each in its own session; what each returned
    or raised."""
    barrier = threading.Barrier(THREADS)
    outcomes: list[Any] = [None] * THREADS

    def one(i: int) -> None:
        with app.app_context():
            barrier.wait()
            try:
                outcomes[i] = work()
                db.session.commit()
            except Exception as exc:  # the outcome is what the test looks at
                db.session.rollback()
                outcomes[i] = exc
            finally:
                db.session.remove()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def test_amounts_from_outside_are_whole_positive_cents_in_the_one_currency() -> None:
    for bad, kind in ((-1, "amount.not_positive"), (0, "amount.not_positive"),
                      (1.5, "amount.not_whole"), ("5", "amount.not_whole"),
                      (True, "amount.not_whole")):
        with pytest.raises(InvalidInput) as refused:
            check_amount(bad, "amount_cents")
        assert [(f.field, f.kind) for f in refused.value.fields] == [("amount_cents", kind)]
    with pytest.raises(InvalidInput) as refused:
        check_amount(-1, "fee_cents", positive=False)
    assert [(f.field, f.kind) for f in refused.value.fields] == [("fee_cents", "amount.negative")]
    assert check_amount(0, "fee_cents", positive=False) == 0
    with pytest.raises(InvalidInput) as refused:
        check_currency("EUR", "currency", "USD")
    assert refused.value.fields[0].field == "currency"
    assert check_currency("usd", "currency", "USD") == "USD"
    assert format_cents(1250, "USD") == "$12.50"
    assert format_cents(-123456, "USD") == "-$1,234.56"
    assert format_cents(5, "EUR") == "€0.05"
    assert format_cents(1500, "JPY") == "¥1,500"


def test_an_unbalanced_transaction_is_refused_by_post_and_by_the_database(
        app: Flask, make: Factory) -> None:
    resident, _worker, job = _people(app, make)
    with app.app_context():
        funding = ledger.account(db.session, AccountKind.PAYER_FUNDING, user_id=resident)
        escrow = ledger.account(db.session, AccountKind.ESCROW, job_id=job)
        db.session.commit()
        with pytest.raises(InvalidInput) as refused:
            ledger.post(db.session, _key("x"), TransactionKind.HOLD,
                        [Entry(funding, -500), Entry(escrow, 499)])
        assert refused.value.fields[0].field == "entries"
        with pytest.raises(InvalidInput):
            ledger.post(db.session, _key("x"), TransactionKind.HOLD, [])
        db.session.rollback()
        # Past the service, straight in SQL: the deferred trigger refuses it at commit.
        tx = db.session.execute(text("INSERT INTO ledger_transactions (idempotency_key, kind) "
                                     "VALUES ('raw', 'hold') RETURNING id")).scalar_one()
        db.session.execute(text(
            "INSERT INTO ledger_entries (transaction_id, account_id, amount_cents, currency) "
            "VALUES (:t, :f, -500, 'USD'), (:t, :e, 499, 'USD')"),
            {"t": tx, "f": funding.id, "e": escrow.id})
        with pytest.raises(DBAPIError, match="does not sum to zero"):
            db.session.commit()
        db.session.rollback()
        # A transaction without entries is refused at commit too.
        db.session.execute(text("INSERT INTO ledger_transactions (idempotency_key, kind) "
                                "VALUES ('empty', 'hold')"))
        with pytest.raises(DBAPIError, match="has no entries"):
            db.session.commit()
        db.session.rollback()
        assert db.session.execute(text("SELECT count(*) FROM ledger_transactions")).scalar() == 0


def test_an_entry_in_another_currency_than_its_account_is_refused(app: Flask,
                                                                    make: Factory) -> None:
    resident, _worker, job = _people(app, make)
    with app.app_context():
        funding = ledger.account(db.session, AccountKind.PAYER_FUNDING, user_id=resident)
        escrow = ledger.account(db.session, AccountKind.ESCROW, job_id=job)
        in_euros = ledger.Account(escrow.id, escrow.kind, "EUR")
        with pytest.raises(DBAPIError, match="fk_ledger_entries_account_currency"):
            ledger.post(db.session, _key("eur"), TransactionKind.HOLD,
                        [Entry(ledger.Account(funding.id, funding.kind, "EUR"), -100),
                         Entry(in_euros, 100)])
        db.session.rollback()


@pytest.mark.parametrize("statement", [
    "UPDATE ledger_entries SET amount_cents = amount_cents * 2",
    "DELETE FROM ledger_entries",
    "UPDATE ledger_transactions SET memo = 'rewritten'",
    "DELETE FROM ledger_transactions",
    "TRUNCATE ledger_entries",
    "TRUNCATE ledger_transactions CASCADE",
])
def test_posted_rows_cannot_be_changed_or_removed(app: Flask, make: Factory,
                                                  statement: str) -> None:
    _held(app, make, 1000)
    with app.app_context():
        with pytest.raises(DBAPIError, match="append-only"):
            db.session.execute(text(statement))
        db.session.rollback()
        assert db.session.execute(text("SELECT count(*) FROM ledger_entries")).scalar() == 2


def test_the_maintenance_setting_lets_only_truncate_through(app: Flask, make: Factory) -> None:
    """The documented bypass (migration 0031) opens TRUNCATE, never UPDATE or DELETE."""
    _held(app, make, 1000)
    with app.app_context():
        db.session.execute(text(LEDGER_MAINTENANCE))
        with pytest.raises(DBAPIError, match="append-only"):
            db.session.execute(text("DELETE FROM ledger_entries"))
        db.session.rollback()
        db.session.execute(text(LEDGER_MAINTENANCE))
        db.session.execute(text("TRUNCATE ledger_entries, ledger_transactions"))
        db.session.commit()
        assert db.session.execute(text("SELECT count(*) FROM ledger_entries")).scalar() == 0


def test_the_same_key_twice_posts_once_and_other_entries_under_it_are_a_conflict(
        app: Flask, make: Factory) -> None:
    resident, _worker, job = _people(app, make)
    payer = Payer(user_id=resident)
    with app.app_context():
        first = ledger.hold(db.session, job, payer, 2500, "hold-job-once")
        db.session.commit()
        again = ledger.hold(db.session, job, payer, 2500, "hold-job-once")
        db.session.commit()
        assert (first.posted, again.posted) == (True, False)
        assert again.id == first.id and again.entries == first.entries
        with pytest.raises(Conflict) as refused:
            ledger.hold(db.session, job, payer, 2600, "hold-job-once")
        assert refused.value.fields[0].field == "idempotency_key"
        db.session.rollback()
        escrow = ledger.account(db.session, AccountKind.ESCROW, job_id=job)
        assert ledger.balance(db.session, escrow) == 2500
        assert db.session.execute(text("SELECT count(*) FROM ledger_transactions")).scalar() == 1


def test_twenty_threads_posting_one_key_make_one_transaction(app: Flask, make: Factory) -> None:
    resident, _worker, job = _people(app, make)

    def hold() -> ledger.Transaction:
        return ledger.hold(db.session, job, Payer(user_id=resident), 4000, "raced-hold")

    outcomes = _race(app, hold)
    assert all(isinstance(o, ledger.Transaction) for o in outcomes), outcomes
    assert len({o.id for o in outcomes}) == 1
    assert sum(o.posted for o in outcomes) == 1
    with app.app_context():
        assert db.session.execute(text("SELECT count(*) FROM ledger_transactions")).scalar() == 1
        # The payer's funding and the escrow were created by whichever thread came first.
        assert db.session.execute(text("SELECT count(*) FROM ledger_accounts")).scalar() == 2
        escrow = ledger.account(db.session, AccountKind.ESCROW, job_id=job)
        assert ledger.balance(db.session, escrow) == 4000
        assert ledger.check(db.session) == []


def test_twenty_threads_retrying_one_release_of_the_whole_escrow_all_get_it(
        app: Flask, make: Factory) -> None:
    """Retries wait on the escrow's lock behind the first; they must then find its
    transaction, not refuse for want of the money it moved."""
    _resident, worker, job = _held(app, make, 1000)
    with app.app_context():  # so that only the escrow's lock orders the threads
        ledger.account(db.session, AccountKind.WORKER_BALANCE, user_id=worker)
        ledger.account(db.session, AccountKind.PLATFORM_FEES)
        db.session.commit()

    def release() -> ledger.Transaction:
        return ledger.release(db.session, job, worker, 1000, 100, "release-all")

    outcomes = _race(app, release)
    assert all(isinstance(o, ledger.Transaction) for o in outcomes), outcomes
    assert len({o.id for o in outcomes}) == 1 and sum(o.posted for o in outcomes) == 1
    with app.app_context():
        escrow = ledger.account(db.session, AccountKind.ESCROW, job_id=job)
        assert ledger.balance(db.session, escrow) == 0


def test_twenty_threads_draining_one_escrow_never_overdraw_it(app: Flask,
                                                              make: Factory) -> None:
    resident, worker, job = _held(app, make, 1000)

    def release() -> ledger.Transaction:
        return ledger.release(db.session, job, worker, 150, 30, _key("release"))

    outcomes = _race(app, release)
    posted = [o for o in outcomes if isinstance(o, ledger.Transaction)]
    refused = [o for o in outcomes if isinstance(o, DomainError)]
    assert len(posted) == 6 and len(refused) == THREADS - 6, outcomes
    assert {(o.code, o.fields[0].field) for o in refused} == {("insufficient_funds",
                                                               "amount_cents")}
    with app.app_context():
        s = db.session
        escrow = ledger.account(s, AccountKind.ESCROW, job_id=job)
        earned = ledger.account(s, AccountKind.WORKER_BALANCE, user_id=worker)
        fees = ledger.account(s, AccountKind.PLATFORM_FEES)
        funding = ledger.account(s, AccountKind.PAYER_FUNDING, user_id=resident)
        assert ledger.balance(s, escrow) == 100
        assert ledger.balance(s, earned) == 6 * 120 and ledger.balance(s, fees) == 6 * 30
        assert -ledger.balance(s, funding) == 100 + 6 * 150  # nothing made, nothing lost
        assert ledger.check(s) == []


def test_a_failed_payout_returns_to_the_balance_and_a_payout_cannot_exceed_it(
        app: Flask, make: Factory) -> None:
    _resident, worker, job = _held(app, make, 1000)
    with app.app_context():
        s = db.session
        ledger.release(s, job, worker, 1000, 100, _key("release"))
        ledger.payout(s, worker, 900, _key("payout"))
        with pytest.raises(Conflict):
            ledger.payout(s, worker, 1, _key("payout"))
        s.rollback()
        ledger.release(s, job, worker, 1000, 100, "release-a")
        ledger.payout(s, worker, 900, "payout-a")
        ledger.payout_failed(s, worker, 900, "payout-a-failed")
        s.commit()
        earned = ledger.account(s, AccountKind.WORKER_BALANCE, user_id=worker)
        transit = ledger.account(s, AccountKind.PAYOUTS_IN_TRANSIT, user_id=worker)
        assert (ledger.balance(s, earned), ledger.balance(s, transit)) == (900, 0)


def _corrupt(app: Flask, statements: list[str], **params: Any) -> None:
    """Write past every trigger and foreign key, as a superuser can."""
    url = app.config["SQLALCHEMY_DATABASE_URI"].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        for statement in statements:
            conn.execute(statement, params)


def test_ledger_check_passes_a_good_ledger_and_names_each_corruption(
        app: Flask, make: Factory) -> None:
    _resident, worker, job = _held(app, make, 1000)
    with app.app_context():
        ledger.release(db.session, job, worker, 400, 40, _key("release"))
        db.session.commit()
    runner = app.test_cli_runner()
    result = runner.invoke(args=["ledger", "check"])
    assert result.exit_code == 0, result.output
    assert "ledger ok" in result.output

    with app.app_context():
        escrow = ledger.account(db.session, AccountKind.ESCROW, job_id=job)
        earned = ledger.account(db.session, AccountKind.WORKER_BALANCE, user_id=worker)
        db.session.commit()
    _corrupt(app, [
        # An unbalanced transaction that overdraws the worker's balance.
        "INSERT INTO ledger_transactions (id, idempotency_key, kind) "
        "VALUES (9001, 'bad', 'adjustment')",
        "INSERT INTO ledger_entries (transaction_id, account_id, amount_cents, currency) "
        "VALUES (9001, %(earned)s, -5000, 'USD')",
        # An entry whose transaction is gone, in another currency than its account.
        "INSERT INTO ledger_entries (id, transaction_id, account_id, amount_cents, currency) "
        "VALUES (9002, 424242, %(escrow)s, 7, 'EUR')",
        # The job ended with money still in its escrow.
        "UPDATE jobs SET status = 'cancelled' WHERE id = %(job)s",
    ], earned=earned.id, escrow=escrow.id, job=job)
    result = runner.invoke(args=["ledger", "check"])
    assert result.exit_code == 1
    out = result.output
    assert "transaction 9001 sums to -5000 USD, not zero" in out
    assert "entry 9002 belongs to no transaction" in out
    assert f"entry 9002 is in EUR but account {escrow.id} is in USD" in out
    assert f"worker_balance account {earned.id} is negative" in out
    assert f"job {job} is cancelled but its escrow (account {escrow.id}) still holds" in out
    assert "ledger ok" not in out


# --- a Hypothesis stateful test over the money primitives -----------------------------------

CENTS = st.integers(min_value=1, max_value=5000)


def test_random_sequences_of_money_movements_keep_every_invariant(app: Flask,
                                                                  make: Factory) -> None:
    residents = [make.user(Role.RESIDENT)[0] for _ in range(2)]
    workers = [make.user(Role.WORKER)[0] for _ in range(2)]

    class Books(RuleBasedStateMachine):
        """The model keeps every account's expected balance; the database must agree after
        every step, and refuse exactly the movements the model says would overdraw."""

        def __init__(self) -> None:
            super().__init__()
            self.ctx = app.app_context()
            self.ctx.push()
            db.session.execute(text(LEDGER_MAINTENANCE))
            db.session.execute(text("TRUNCATE ledger_entries, ledger_transactions, "
                                    "ledger_accounts"))
            db.session.commit()
            self.jobs = {_job(app, residents[i % 2]): residents[i % 2] for i in range(3)}
            self.ended: set[int] = set()
            self.model: Counter[tuple[str, int | None]] = Counter()
            self.done: list[tuple[Callable[[], ledger.Transaction], int]] = []

        def teardown(self) -> None:
            db.session.remove()
            self.ctx.pop()

        def _move(self, movement: Callable[[], ledger.Transaction],
                  changes: dict[tuple[str, int | None], int]) -> None:
            """Post, expecting a refusal exactly when a never-negative account would dip."""
            overdraws = any(kind != AccountKind.PAYER_FUNDING and self.model[(kind, owner)]
                            + delta < 0 for (kind, owner), delta in changes.items())
            try:
                tx = movement()
                db.session.commit()
            except Conflict as exc:
                db.session.rollback()
                assert overdraws and exc.code == "insufficient_funds", exc
                return
            assert not overdraws and tx.posted
            self.model.update(changes)
            self.done.append((movement, tx.id))

        @rule(job_index=st.integers(0, 2), cents=CENTS)
        def hold(self, job_index: int, cents: int) -> None:
            job = list(self.jobs)[job_index]
            payer, key = self.jobs[job], _key("hold")
            if job in self.ended:
                return
            self._move(lambda: ledger.hold(db.session, job, Payer(user_id=payer), cents, key),
                       {(AccountKind.PAYER_FUNDING, payer): -cents,
                        (AccountKind.ESCROW, job): cents})

        @rule(job_index=st.integers(0, 2), worker_index=st.integers(0, 1), cents=CENTS,
              fee_share=st.integers(0, 30))
        def release(self, job_index: int, worker_index: int, cents: int,
                    fee_share: int) -> None:
            job, worker = list(self.jobs)[job_index], workers[worker_index]
            fee, key = cents * fee_share // 100, _key("release")
            self._move(lambda: ledger.release(db.session, job, worker, cents, fee, key),
                       {(AccountKind.ESCROW, job): -cents,
                        (AccountKind.WORKER_BALANCE, worker): cents - fee,
                        (AccountKind.PLATFORM_FEES, None): fee})

        @rule(job_index=st.integers(0, 2), cents=CENTS)
        def refund(self, job_index: int, cents: int) -> None:
            job = list(self.jobs)[job_index]
            payer, key = self.jobs[job], _key("refund")
            self._move(lambda: ledger.refund(db.session, job, Payer(user_id=payer), cents,
                                             key),
                       {(AccountKind.ESCROW, job): -cents,
                        (AccountKind.REFUNDS, payer): cents})

        @rule(worker_index=st.integers(0, 1), cents=CENTS)
        def payout(self, worker_index: int, cents: int) -> None:
            worker, key = workers[worker_index], _key("payout")
            self._move(lambda: ledger.payout(db.session, worker, cents, key),
                       {(AccountKind.WORKER_BALANCE, worker): -cents,
                        (AccountKind.PAYOUTS_IN_TRANSIT, worker): cents})

        @rule(worker_index=st.integers(0, 1), cents=CENTS)
        def payout_failed(self, worker_index: int, cents: int) -> None:
            worker, key = workers[worker_index], _key("payout-failed")
            self._move(lambda: ledger.payout_failed(db.session, worker, cents, key),
                       {(AccountKind.PAYOUTS_IN_TRANSIT, worker): -cents,
                        (AccountKind.WORKER_BALANCE, worker): cents})

        @precondition(lambda self: bool(self.done))
        @rule(pick=st.integers(min_value=0))
        def retry(self, pick: int) -> None:
            """A movement sent again under its key changes nothing."""
            movement, tx_id = self.done[pick % len(self.done)]
            tx = movement()
            db.session.commit()
            assert tx.id == tx_id and not tx.posted

        @rule(job_index=st.integers(0, 2))
        def end_job(self, job_index: int) -> None:
            """Cancel a job: the rest of its escrow goes back to its payer first."""
            job = list(self.jobs)[job_index]
            rest = self.model[(AccountKind.ESCROW, job)]
            payer, key = self.jobs[job], _key("refund-rest")
            if rest:
                self._move(lambda: ledger.refund(db.session, job, Payer(user_id=payer), rest,
                                                 key),
                           {(AccountKind.ESCROW, job): -rest,
                            (AccountKind.REFUNDS, payer): rest})
            db.session.execute(text("UPDATE jobs SET status = 'cancelled' WHERE id = :j"),
                               {"j": job})
            db.session.commit()
            self.ended.add(job)

        @invariant()
        def books_agree_with_the_model(self) -> None:
            rows = db.session.execute(text("""
SELECT a.kind, coalesce(a.job_id, a.user_id), coalesce(sum(e.amount_cents), 0)
  FROM ledger_accounts a LEFT JOIN ledger_entries e ON e.account_id = a.id
 GROUP BY a.id""")).all()
            actual = {(kind, owner if kind != AccountKind.PLATFORM_FEES else None): int(total)
                      for kind, owner, total in rows if total}
            assert actual == {k: v for k, v in self.model.items() if v}
            # Conserved: what payers put in is exactly what the other accounts hold.
            assert sum(actual.values()) == 0
            assert ledger.check(db.session) == []
            db.session.rollback()

    run_state_machine_as_test(Books, settings=hypothesis_settings(
        max_examples=25, stateful_step_count=25, deadline=None))
