"""Ledger benchmark: `ledger.post` of a 3-entry transaction (escrow -> worker balance +
platform fee, committed) against the floor, a bare two-row INSERT transaction, same run.

Seeds J jobs, each with a held escrow, into its own database (`<name>_ledger_bench`), then
posts T releases round-robin over the jobs, interleaved one for one with the floor (two rows
into a plain table and a commit) on the same connection. A post is: the idempotency look-up,
the row lock on the escrow, its balance, the transaction and entries inserts, and the
deferred balance trigger at commit.

    python -m bench.ledger [--transfers 2000] [--jobs 100]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench.match import ensure_database, migrate, percentile
from dispatch import create_app
from dispatch.db import db
from dispatch.domain.money import AccountKind, TransactionKind
from dispatch.infra.config import Settings, _sqlalchemy_url
from dispatch.services import ledger
from dispatch.services.ledger import Entry, Payer

HELD_CENTS = 10**12  # enough that no release is ever refused
RELEASE_CENTS, FEE_CENTS = 10_000, 1_500


def bench_url() -> str:
    base = make_url(_sqlalchemy_url(Settings.from_env().database_url))
    return base.set(database=f"{base.database}_ledger_bench").render_as_string(
        hide_password=False)


def seed(jobs: int, run: str) -> tuple[list[ledger.Account], ledger.Account, ledger.Account]:
    """A resident, a worker and `jobs` jobs with held escrows; returns the escrows, the
    worker's balance and the fee account."""
    s = db.session
    resident, worker = (s.execute(text("""
INSERT INTO users (email, name, phone_e164, role, password_hash)
VALUES (:email, 'Ledger bench', :phone, :role, 'x') RETURNING id"""),
        {"email": f"{role}-{run}@bench.test", "phone": f"+1{uuid.uuid4().int % 10**10:010d}",
         "role": role}).scalar_one() for role in ("resident", "worker"))
    job_ids = s.execute(text("""
INSERT INTO jobs (resident_id, category_id, description, location, urgency, status,
                  requested_at, arrive_by, idempotency_key, request_fingerprint)
SELECT :r, (SELECT min(id) FROM categories WHERE bookable), 'ledger bench',
       ST_GeogFromText('POINT(-122.42 37.77)'), 'urgent', 'in_progress', now(),
       now() + interval '2 hours', :run || '-' || i, 'bench'
  FROM generate_series(1, :n) i RETURNING id"""), {"r": resident, "run": run, "n": jobs})
    escrows = []
    for job in job_ids.scalars().all():
        ledger.hold(s, job, Payer(user_id=resident), HELD_CENTS, f"{run}-hold-{job}")
        escrows.append(ledger.account(s, AccountKind.ESCROW, job_id=job))
    earned = ledger.account(s, AccountKind.WORKER_BALANCE, user_id=worker)
    fees = ledger.account(s, AccountKind.PLATFORM_FEES)
    s.execute(text("CREATE TABLE IF NOT EXISTS ledger_bench_floor "
                   "(id bigserial PRIMARY KEY, account_id bigint, amount_cents bigint)"))
    s.commit()
    return escrows, earned, fees


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transfers", type=int, default=2_000)
    parser.add_argument("--jobs", type=int, default=100)
    args = parser.parse_args()
    url = bench_url()
    ensure_database(url)
    migrate(url)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    run = uuid.uuid4().hex[:12]  # entries are append-only: each run posts under new keys
    with app.app_context():
        escrows, earned, fees = seed(args.jobs, run)
        s = db.session

        def post(i: int) -> None:
            escrow = escrows[i % len(escrows)]
            ledger.post(s, f"{run}-release-{i}", TransactionKind.RELEASE,
                        [Entry(escrow, -RELEASE_CENTS),
                         Entry(earned, RELEASE_CENTS - FEE_CENTS), Entry(fees, FEE_CENTS)],
                        job_id=None)
            s.commit()

        def floor(i: int) -> None:
            s.execute(text("INSERT INTO ledger_bench_floor (account_id, amount_cents) "
                           "VALUES (:a, :m), (:b, :n)"),
                      {"a": earned.id, "m": -i, "b": fees.id, "n": i})
            s.commit()

        for i in range(min(200, args.transfers)):  # warm: plans, caches
            post(-1 - i)
            floor(i)
        post_ms: list[float] = []
        floor_ms: list[float] = []
        started = time.perf_counter()
        for i in range(args.transfers):
            order = [(post, post_ms), (floor, floor_ms)]
            if i % 2:
                order.reverse()
            for fn, sink in order:
                t0 = time.perf_counter()
                fn(i)
                sink.append((time.perf_counter() - t0) * 1000)
        wall = time.perf_counter() - started
        problems = ledger.check(s)
        s.rollback()

    rate = 1000 * len(post_ms) / sum(post_ms)
    floor_rate = 1000 * len(floor_ms) / sum(floor_ms)
    p50, p99 = percentile(post_ms, 50), percentile(post_ms, 99)
    f50, f99 = percentile(floor_ms, 50), percentile(floor_ms, 99)
    print()
    print(f"transfers={args.transfers} jobs={args.jobs} (entries per escrow this run: "
          f"~{args.transfers // args.jobs}) wall={wall:.1f} s, one connection, sequential")
    print(f"{'transaction':<40}{'per s':>10}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
    print(f"{'ledger.post, 3 entries, committed':<40}{rate:>10.0f}{p50:>10.3f}{p99:>10.3f}"
          f"{statistics.fmean(post_ms):>10.3f}")
    print(f"{'floor: bare 2-row INSERT, committed':<40}{floor_rate:>10.0f}{f50:>10.3f}"
          f"{f99:>10.3f}{statistics.fmean(floor_ms):>10.3f}")
    print(f"ratio p50={p50 / f50:.2f}x p99={p99 / f99:.2f}x; ledger check: "
          f"{'ok' if not problems else f'{len(problems)} problems'}")
    print(f"RESULT ledger_transfers_per_s={rate:.0f} ledger_p99_ms={p99:.3f} "
          f"floor_per_s={floor_rate:.0f} floor_p99_ms={f99:.3f} ratio_p99={p99 / f99:.2f} "
          f"ledger_ok={int(not problems)}")


if __name__ == "__main__":
    main()
